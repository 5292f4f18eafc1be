"""Target refresh policy (incremental listing, re-check back-off and batching) and the
single-flight refresher. The job source is a small in-memory ALB: the `JobSource` seam."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator

from exporter.errors import ServerError
from exporter.jobs.model import Job, JobQuery
from exporter.jobs.refresher import Refresher
from exporter.jobs.store import JobStore
from exporter.jobs.target import JOB_IDS_PER_CALL, RefreshPolicy, Target, TargetKey
from exporter.wire import PROCESSING, SUCCEEDED

T0 = 1_700_000_000.0
LOOKBACK = 3600.0


def job(job_id: str, create: float, status: str = PROCESSING) -> Job:
    return Job(
        id=job_id,
        api_name="CreateListener",
        operate_type="Create",
        resource_type="listener",
        resource_id="lsn-" + job_id,
        status=status,
        error_code="",
        error_message="",
        create_time=create,
        modify_time=create,
    )


class FakeAlb:
    """Jobs by id; BeginTime filters on CreateTime; calls counted as the client makes them
    (one per 100 jobs listed, one per 20 ids looked up)."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.calls = 0
        self.looked_up: list[tuple[str, ...]] = []
        self.fail = False

    def list_jobs(self, query: JobQuery) -> list[Job]:
        if self.fail:
            raise ServerError("ServiceUnavailable", "down")
        if query.job_ids:
            self.looked_up.append(query.job_ids)
            self.calls += math.ceil(len(query.job_ids) / JOB_IDS_PER_CALL)
            return [self.jobs[i] for i in query.job_ids if i in self.jobs]
        begin = (query.begin_time_ms or 0) / 1000
        found = [j for j in self.jobs.values() if j.create_time >= begin]
        self.calls += max(1, math.ceil(len(found) / 100))
        return found


def target(alb: FakeAlb, clock: Callable[[], float], policy: RefreshPolicy) -> Target:
    return Target(
        "a", "r", alb, JobStore(LOOKBACK, 5), lookback=LOOKBACK, policy=policy, clock=clock
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_steady_state_stays_near_one_call_per_refresh_with_many_stuck_jobs() -> None:
    alb, clock = FakeAlb(), Clock()
    for i in range(150):  # stuck jobs of every age within the window
        alb.jobs[f"stuck{i}"] = job(f"stuck{i}", T0 - 20 - i * 20)
    for i in range(2000):
        alb.jobs[f"done{i}"] = job(f"done{i}", T0 - 1 - i, SUCCEEDED)
    t = target(alb, clock, RefreshPolicy(overlap=60, full_resync_interval=1e9))
    t.refresh()
    last_seen = {f"stuck{i}": T0 for i in range(150)}
    longest_gap = 0.0
    calls: list[int] = []
    for step in range(1, 481):  # four hours of refreshes every 30 s, 2 new jobs each
        clock.now = T0 + 30 * step
        for k in range(2):
            alb.jobs[f"new{step}-{k}"] = job(f"new{step}-{k}", clock.now - 1, SUCCEEDED)
        alb.looked_up.clear()
        before = alb.calls
        t.refresh()
        calls.append(alb.calls - before)
        for batch in alb.looked_up:
            for job_id in batch:
                longest_gap = max(longest_gap, clock.now - last_seen[job_id])
                last_seen[job_id] = clock.now
    # Once the stuck jobs are older than the back-off cap (10 min x 10), one listing per
    # refresh plus well under one look-up call: 150 jobs / 20 per call / 20 refreshes.
    steady = sum(calls[240:]) / len(calls[240:])
    assert steady < 1.5, steady
    # Yet no stuck job goes unchecked for longer than the back-off cap (plus a refresh).
    assert longest_gap <= 600 + 30
    assert max(clock.now - seen for seen in last_seen.values()) <= 600 + 30
    assert t.store.processing_ids() == set(last_seen)


def test_young_jobs_are_rechecked_more_often_than_old_ones() -> None:
    alb, clock = FakeAlb(), Clock()
    for i in range(5):
        alb.jobs[f"young{i}"] = job(f"young{i}", T0 - 10)
    for i in range(100):
        alb.jobs[f"old{i}"] = job(f"old{i}", T0 - 3000)
    # Incremental listings start at the newest CreateTime listed (less the overlap): this
    # one keeps the open jobs out of them, so they are re-checked by id.
    alb.jobs["newest"] = job("newest", T0, SUCCEEDED)
    t = target(alb, clock, RefreshPolicy(overlap=0, full_resync_interval=1e9))
    t.refresh()
    checks = {"young": 0, "old": 0}
    for step in range(1, 11):
        clock.now = T0 + 30 * step
        alb.looked_up.clear()
        t.refresh()
        for batch in alb.looked_up:
            for job_id in batch:
                checks[job_id.rstrip("0123456789")] += 1
    # Young ones every refresh; old ones every 5 min (age / 10), topped up in between.
    assert checks["young"] == 5 * 10
    assert checks["old"] / 100 < 5


def test_due_lookups_are_topped_up_to_a_full_batch() -> None:
    alb, clock = FakeAlb(), Clock()
    for i in range(30):
        alb.jobs[f"p{i:02}"] = job(f"p{i:02}", T0 - 60 - 100 * i)
    t = target(alb, clock, RefreshPolicy(overlap=0, full_resync_interval=1e9))
    t.refresh()
    clock.now = T0 + 30
    alb.looked_up.clear()
    t.refresh()
    sizes = sorted(len(b) for b in alb.looked_up)
    # Some jobs were due; the call carries 20 ids (client batches are of 20).
    assert sizes and sizes[0] % JOB_IDS_PER_CALL == 0


def test_completion_of_an_old_job_is_seen_through_its_recheck() -> None:
    alb, clock = FakeAlb(), Clock()
    alb.jobs["p"] = job("p", T0 - 100)
    t = target(alb, clock, RefreshPolicy(overlap=60, full_resync_interval=1e9))
    t.refresh()
    alb.jobs["p"] = job("p", T0 - 100, SUCCEEDED)
    for step in range(1, 40):
        clock.now = T0 + 30 * step
        t.refresh()
    assert sum(t.snapshot().finished_total.values()) == 1
    assert t.store.processing_ids() == set()


def test_failed_refresh_keeps_the_position_so_nothing_is_skipped() -> None:
    alb, clock = FakeAlb(), Clock()
    t = target(alb, clock, RefreshPolicy(overlap=0, full_resync_interval=1e9))
    t.refresh()
    clock.now = T0 + 30
    alb.jobs["x"] = job("x", T0 + 5, SUCCEEDED)
    alb.fail = True
    t.refresh()
    assert not t.status().up
    alb.fail = False
    clock.now = T0 + 60
    t.refresh()
    assert t.status().up
    assert sum(t.snapshot().finished_total.values()) == 1


def test_gap_longer_than_the_window_pages_the_whole_window() -> None:
    alb, clock = FakeAlb(), Clock()
    t = target(alb, clock, RefreshPolicy(overlap=60, full_resync_interval=1e9))
    t.refresh()
    alb.jobs["x"] = job("x", T0 + 100, SUCCEEDED)
    clock.now = T0 + 2 * LOOKBACK
    t.refresh()
    alb.jobs["x2"] = job("x2", clock.now - 5, SUCCEEDED)
    clock.now += 30
    t.refresh()
    # "x" was created before the new window (never seen): ignored; "x2" is new and counted.
    assert sum(t.snapshot().finished_total.values()) == 1


# --- refresher ---------------------------------------------------------------------------


class Gate:
    """A source whose listings block until released; counts listings started."""

    def __init__(self) -> None:
        self.started = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def list_jobs(self, query: JobQuery) -> list[Job]:
        with self._lock:
            self.started += 1
        self.entered.set()
        self.release.wait(10)
        return []


def test_concurrent_scrapes_share_one_refresh_per_target_and_deadline_is_kept() -> None:
    gates = {("a", r): Gate() for r in ("r1", "r2", "r3")}
    targets = {
        key: Target(key[0], key[1], gate, JobStore(LOOKBACK, 5), lookback=LOOKBACK)
        for key, gate in gates.items()
    }
    done: list[str] = []
    refresher = Refresher(
        targets,
        cache_ttl=60,
        max_workers=3,
        after_refresh=lambda t: done.append(t.region),
    )
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(refresher.ensure_fresh(None, timeout=0.05)))
        for _ in range(50)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # Every scrape gave up at its deadline; the refreshes still run, one per target. (The
    # pool's threads may not have reached the source within the deadline on a busy machine.)
    assert results == [False] * 50
    assert all(g.entered.wait(10) for g in gates.values())
    assert [g.started for g in gates.values()] == [1, 1, 1]
    for g in gates.values():
        g.release.set()
    assert refresher.ensure_fresh(None, timeout=10)
    assert sorted(done) == ["r1", "r2", "r3"]
    # Cached now: no new listing.
    assert refresher.ensure_fresh(None, timeout=10)
    assert [g.started for g in gates.values()] == [1, 1, 1]
    refresher.shutdown()


def test_a_scrape_just_after_a_refresh_finished_reuses_it() -> None:
    # Issue 24: 50 concurrent scrapes now and then caused two upstream refreshes on a busy
    # machine. A refresh's future was done before its done-callback marked the target fresh;
    # a scrape in between saw a finished refresh that was not fresh and started another.
    gate = Gate()
    t = Target("a", "r1", gate, JobStore(LOOKBACK, 5), lookback=LOOKBACK)
    refresher = Refresher({t.key: t}, cache_ttl=60, max_workers=2)
    first = threading.Thread(target=refresher.ensure_fresh, kwargs={"timeout": 10})
    first.start()
    assert gate.entered.wait(10)

    def keys() -> Iterator[TargetKey]:
        # `ensure_fresh` reads its keys under the refresher's lock: while this runs, the
        # refresher can do nothing that needs it. The refresh finishes meanwhile and the
        # scrape waiting on it returns; only then does this scrape ask for the target.
        gate.release.set()
        first.join(10)
        assert not first.is_alive()
        yield t.key

    assert refresher.ensure_fresh(keys(), timeout=10)
    assert gate.started == 1
    refresher.shutdown()


def test_a_few_open_jobs_are_looked_up_on_every_refresh() -> None:
    # Three old Processing jobs fit in one look-up call: their status changes must show
    # on the very next refresh instead of waiting for the age-based cadence (minutes).
    alb, clock = FakeAlb(), Clock()
    for i in range(3):
        alb.jobs[f"old{i}"] = job(f"old{i}", T0 - 3000 - i)
    alb.jobs["newest"] = job("newest", T0, SUCCEEDED)  # see the test above
    t = target(alb, clock, RefreshPolicy())
    t.refresh()
    for step in range(1, 6):
        clock.now += 30
        t.refresh()
        assert alb.looked_up[-1] == ("old0", "old1", "old2"), step
    finished = job("old1", T0 - 3001, SUCCEEDED)
    alb.jobs["old1"] = finished
    clock.now += 30
    t.refresh()
    assert t.snapshot().finished_total[(SUCCEEDED, "listener", "CreateListener", "Create")] == 1
    assert "old1" not in t.store.open_jobs()


def test_a_target_replaced_by_reload_is_refreshed_itself_not_through_the_old_one() -> None:
    old_gate, new_gate = Gate(), Gate()
    key = ("a", "r1")
    old = Target("a", "r1", old_gate, JobStore(LOOKBACK, 5), lookback=LOOKBACK)
    new = Target("a", "r1", new_gate, JobStore(LOOKBACK, 5), lookback=LOOKBACK)
    refresher = Refresher({key: old}, cache_ttl=60, max_workers=2)
    assert not refresher.ensure_fresh(None, timeout=0.05)  # the old refresh is in flight
    refresher.set_targets({key: new}, cache_ttl=60)
    new_gate.release.set()
    old_gate.release.set()
    assert refresher.ensure_fresh(None, timeout=10)
    assert new_gate.started == 1
    assert new.status().tried
    refresher.shutdown()


class Ticker:
    """A monotonic timer the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counted_target(region: str) -> tuple[Target, FakeAlb]:
    alb = FakeAlb()
    return Target("a", region, alb, JobStore(LOOKBACK, 5), lookback=LOOKBACK), alb


def test_a_reload_keeps_unchanged_targets_fresh_and_applies_a_new_ttl() -> None:
    (kept, kept_alb), (old, _) = counted_target("r1"), counted_target("r2")
    new, new_alb = counted_target("r2")
    ticker = Ticker()
    refresher = Refresher({kept.key: kept, old.key: old}, cache_ttl=60, max_workers=2, timer=ticker)
    assert refresher.ensure_fresh(None, timeout=10)
    refresher.set_targets({kept.key: kept, new.key: new}, cache_ttl=60)
    ticker.now = 10
    assert refresher.ensure_fresh(None, timeout=10)
    assert (kept_alb.calls, new_alb.calls) == (1, 1)  # only the replaced target is refreshed
    # A shorter TTL applies to what was refreshed before the reload, too: at 12 s, the
    # refresh at 0 is stale under 5 s, the one at 10 s is not.
    refresher.set_targets({kept.key: kept, new.key: new}, cache_ttl=5)
    ticker.now = 12
    assert refresher.ensure_fresh(None, timeout=10)
    assert (kept_alb.calls, new_alb.calls) == (2, 1)
    refresher.shutdown()


def test_a_replaced_target_is_retired_only_after_its_refresh_in_flight() -> None:
    busy_gate, idle_gate = Gate(), Gate()
    busy = Target("a", "r1", busy_gate, JobStore(LOOKBACK, 5), lookback=LOOKBACK)
    idle = Target("a", "r2", idle_gate, JobStore(LOOKBACK, 5), lookback=LOOKBACK)
    idle_gate.release.set()
    refresher = Refresher({idle.key: idle}, cache_ttl=60, max_workers=2)
    assert refresher.ensure_fresh(None, timeout=10)
    refresher.set_targets({busy.key: busy, idle.key: idle}, cache_ttl=60)
    assert not refresher.ensure_fresh([busy.key], timeout=0.05)  # busy's refresh in flight
    retired: list[tuple[str, bool]] = []
    all_retired = threading.Event()

    def retire(t: Target) -> None:
        retired.append((t.region, t.status().tried))
        if len(retired) == 2:
            all_retired.set()

    replacement = Target("a", "r1", Gate(), JobStore(LOOKBACK, 5), lookback=LOOKBACK)
    refresher.set_targets({busy.key: replacement}, cache_ttl=60, retired=retire)
    assert retired == [("r2", True)]  # nothing in flight: at once
    busy_gate.release.set()
    assert all_retired.wait(10)
    # Retired once its refresh had finished (and so was done with its client).
    assert retired == [("r2", True), ("r1", True)]
    refresher.shutdown()


def test_a_reload_can_resize_the_pool_and_the_old_one_finishes_its_work() -> None:
    gates = {("a", r): Gate() for r in ("r1", "r2", "r3")}
    targets = {
        key: Target(key[0], key[1], gate, JobStore(LOOKBACK, 5), lookback=LOOKBACK)
        for key, gate in gates.items()
    }
    refresher = Refresher(targets, cache_ttl=0, max_workers=1)
    assert not refresher.ensure_fresh([("a", "r1")], timeout=0.05)  # on the old pool
    refresher.set_targets(targets, cache_ttl=0, max_workers=3)
    assert not refresher.ensure_fresh(None, timeout=0.05)
    # r1 is still in flight on the old pool; r2 and r3 run side by side on the new one:
    # all three are in their listings at once (none is released yet).
    assert all(g.entered.wait(10) for g in gates.values())
    assert [g.started for g in gates.values()] == [1, 1, 1]
    for g in gates.values():
        g.release.set()
    assert refresher.ensure_fresh(None, timeout=10)
    assert all(t.status().tried for t in targets.values())
    refresher.shutdown()


def test_after_shutdown_a_scrape_gets_the_data_there_is_and_a_reload_starts_no_pool() -> None:
    # SIGTERM closes the App while the HTTP drain lets in-flight scrapes finish: one that
    # needed a refresh then hit the shut-down pool ("cannot schedule new futures after
    # shutdown") and answered 500 instead of the last data.
    target, alb = counted_target("r1")
    refresher = Refresher({target.key: target}, cache_ttl=0, max_workers=1)
    assert refresher.ensure_fresh(None, timeout=10)
    calls = alb.calls
    refresher.shutdown()
    assert refresher.ensure_fresh(None, timeout=10)
    refresher.set_targets({target.key: target}, cache_ttl=0, max_workers=3)
    assert refresher.ensure_fresh([target.key], timeout=10)
    assert alb.calls == calls  # nothing refreshed after the shutdown, in no new pool
