"""JobStore: counting rules, tracking, window gauges, memory bounds (SPEC "Counter rules")."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.jobs.model import Job
from exporter.jobs.snapshot import Exemplar, HistogramSnapshot, StoreSnapshot
from exporter.jobs.store import JobStore, dedupe
from exporter.wire import FAILED, PROCESSING, SUCCEEDED

T0 = 1_700_000_000.0
LOOKBACK = 3600.0


def job(
    job_id: str,
    status: str = SUCCEEDED,
    *,
    create: float = T0 - 100,
    modify: float | None = None,
    rt: str = "listener",
    api: str = "CreateListener",
    op: str = "Create",
    code: str = "",
    resource_id: str = "lsn-1",
) -> Job:
    return Job(
        id=job_id,
        api_name=api,
        operate_type=op,
        resource_type=rt,
        resource_id=resource_id,
        status=status,
        error_code=code,
        error_message="boom" if status == FAILED else "",
        create_time=create,
        modify_time=create if modify is None else modify,
    )


def store(recent_failures: int = 10, buckets: tuple[float, ...] = (10.0, 60.0)) -> JobStore:
    return JobStore(LOOKBACK, recent_failures, duration_buckets=buckets)


def primed(recent_failures: int = 10) -> JobStore:
    s = store(recent_failures)
    s.update([], (), T0 - 10)
    return s


def finished(snap: StoreSnapshot, status: str, rt: str = "listener", api: str = "CreateListener",
             op: str = "Create") -> int:  # fmt: skip
    return snap.finished_total[(status, rt, api, op)]


def total_finished(snap: StoreSnapshot) -> int:
    return sum(snap.finished_total.values())


# --- initial state and priming -------------------------------------------------------


def test_initial_snapshot_is_empty_and_unprimed() -> None:
    snap = store().snapshot()
    assert snap == StoreSnapshot()
    assert snap.updated_at is None
    assert not snap.primed
    assert snap.jobs_tracked == 0
    assert dict(snap.finished_total) == {}
    assert store().processing_ids() == set()


def test_priming_remembers_terminal_jobs_without_counting() -> None:
    s = store()
    jobs = [
        job("ok", SUCCEEDED, modify=T0 - 90),
        job("bad", FAILED, modify=T0 - 80, code="QuotaExceeded"),
    ]
    s.update(jobs, (), T0)
    snap = s.snapshot()
    assert snap.primed and snap.updated_at == T0
    assert total_finished(snap) == 0
    assert dict(snap.failures_total) == {("listener", "CreateListener", "QuotaExceeded"): 0}
    assert all(h.count == 0 for h in snap.durations.values())
    assert snap.jobs_tracked == 2
    # The same terminal jobs on later refreshes are still not counted.
    s.update(jobs, (), T0 + 60)
    assert total_finished(s.snapshot()) == 0


def test_first_update_primes_even_when_empty() -> None:
    s = primed()
    s.update([job("new", SUCCEEDED, create=T0, modify=T0 + 3)], (), T0 + 10)
    assert finished(s.snapshot(), SUCCEEDED) == 1


# --- counting -------------------------------------------------------------------------


def test_processing_then_failed_is_counted_once() -> None:
    s = store()
    s.update([job("j", PROCESSING, create=T0)], (), T0 + 5)  # priming
    assert s.processing_ids() == {"j"}
    failed = job("j", FAILED, create=T0, modify=T0 + 70, code="Conflict.Lock")
    s.update([failed], (), T0 + 80)
    snap = s.snapshot()
    assert finished(snap, FAILED) == 1
    assert finished(snap, SUCCEEDED) == 0
    assert snap.failures_total[("listener", "CreateListener", "Conflict.Lock")] == 1
    latest = Exemplar("j", 70.0, T0 + 70)  # the duration, and when the job failed
    assert snap.durations[(FAILED, "listener", "CreateListener")] == HistogramSnapshot(
        ((10.0, 0), (60.0, 0), (float("inf"), 1)), 70.0, 1, (None, None, latest)
    )
    counted = Exemplar("j", 1.0, T0 + 70)
    assert dict(snap.failures_exemplars) == {
        ("listener", "CreateListener", "Conflict.Lock"): counted
    }
    assert dict(snap.finished_exemplars) == {
        (FAILED, "listener", "CreateListener", "Create"): counted
    }
    assert s.processing_ids() == set()
    for now in (T0 + 140, T0 + 200):
        s.update([failed], (), now)
    assert finished(s.snapshot(), FAILED) == 1
    assert s.snapshot().failures_total[("listener", "CreateListener", "Conflict.Lock")] == 1


def test_first_seen_terminal_after_priming_is_counted() -> None:
    s = primed()
    s.update([job("j", SUCCEEDED, create=T0, modify=T0 + 4)], (), T0 + 10)
    snap = s.snapshot()
    assert finished(snap, SUCCEEDED) == 1
    assert snap.durations[(SUCCEEDED, "listener", "CreateListener")] == HistogramSnapshot(
        ((10.0, 1), (60.0, 1), (float("inf"), 1)), 4.0, 1, (Exemplar("j", 4.0, T0 + 4), None, None)
    )


def test_reappearing_terminal_job_is_not_recounted() -> None:
    s = primed()
    done = job("j", FAILED, create=T0, modify=T0 + 4, code="E")
    s.update([done], (), T0 + 10)
    s.update([], (), T0 + 20)  # a page the API skipped
    s.update([done], (), T0 + 30)
    snap = s.snapshot()
    assert finished(snap, FAILED) == 1
    assert snap.failures_total[("listener", "CreateListener", "E")] == 1
    assert snap.durations[(FAILED, "listener", "CreateListener")].count == 1


def test_duration_is_clamped_at_zero_and_bucket_bounds_are_inclusive() -> None:
    s = primed()
    s.update(
        [
            job("skewed", SUCCEEDED, create=T0, modify=T0 - 3),
            job("exact", SUCCEEDED, create=T0, modify=T0 + 10),
        ],
        (),
        T0 + 20,
    )
    hist = s.snapshot().durations[(SUCCEEDED, "listener", "CreateListener")]
    # Both in the first bucket; its exemplar is the job that finished last.
    newest = (Exemplar("exact", 10.0, T0 + 10), None, None)
    assert hist == HistogramSnapshot(((10.0, 2), (60.0, 2), (float("inf"), 2)), 10.0, 2, newest)


def _two_durations(buckets: tuple[float, ...]) -> JobStore:
    """A store that counted two CreateListener jobs: 5 s and 40 s."""
    s = store(buckets=buckets)
    s.update([job("a", PROCESSING, create=T0), job("b", PROCESSING, create=T0)], (), T0)
    s.update([job("a", create=T0, modify=T0 + 5), job("b", create=T0, modify=T0 + 40)], (), T0 + 60)
    return s


KEY = (SUCCEEDED, "listener", "CreateListener")


def test_new_duration_buckets_keep_count_and_sum_and_are_exact_on_old_bounds() -> None:
    s = _two_durations((2.0, 10.0, 30.0, 60.0))
    s.set_duration_buckets((10.0, 60.0, 120.0))
    # 10 and 60 were bounds: exact. 120 was not: it starts from the count at 60.
    # The exemplars move by their values: exact.
    a, b = Exemplar("a", 5.0, T0 + 5), Exemplar("b", 40.0, T0 + 40)
    assert s.snapshot().durations[KEY] == HistogramSnapshot(
        ((10.0, 1), (60.0, 2), (120.0, 2), (float("inf"), 2)), 45.0, 2, (a, b, None, None)
    )
    s.update([job("c", PROCESSING, create=T0 + 60)], (), T0 + 70)
    s.update([job("c", create=T0 + 60, modify=T0 + 160)], (), T0 + 170)  # 100 s: lands exactly
    c = Exemplar("c", 100.0, T0 + 160)
    assert s.snapshot().durations[KEY] == HistogramSnapshot(
        ((10.0, 1), (60.0, 2), (120.0, 3), (float("inf"), 3)), 145.0, 3, (a, b, c, None)
    )


def test_a_bound_below_every_old_one_starts_at_zero_and_never_exceeds_the_next() -> None:
    s = _two_durations((30.0,))
    s.set_duration_buckets((1.0, 5.0, 30.0))
    # Not known how many of the 30 s bucket were <= 5 s: 0, so nothing goes down later.
    assert s.snapshot().durations[KEY].buckets == (
        (1.0, 0),
        (5.0, 0),
        (30.0, 1),
        (float("inf"), 2),
    )


def test_restore_re_buckets_a_state_saved_under_other_buckets() -> None:
    old = _two_durations((2.0, 10.0, 30.0, 60.0))
    saved = old.export()
    new = store(buckets=(10.0, 60.0))
    new.restore(saved, T0 + 60)
    snap = new.snapshot()
    a, b = Exemplar("a", 5.0, T0 + 5), Exemplar("b", 40.0, T0 + 40)
    assert snap.durations[KEY] == HistogramSnapshot(
        ((10.0, 1), (60.0, 2), (float("inf"), 2)), 45.0, 2, (a, b, None)
    )
    assert snap.finished_exemplars == old.snapshot().finished_exemplars
    assert finished(snap, SUCCEEDED) == 2  # the counters came along, not dropped


# --- exemplars (SPEC "Exemplars") ---------------------------------------------------------

FAILURE = ("listener", "CreateListener", "E")


@pytest.mark.parametrize("first", ["job-a", "job-b"])
def test_exemplar_ties_on_modify_time_go_to_the_greater_id_whatever_the_order(first: str) -> None:
    s = primed()
    both = [job(i, FAILED, create=T0, modify=T0 + 5, code="E") for i in ("job-a", "job-b")]
    s.update(both if first == "job-a" else both[::-1], (), T0 + 10)
    assert s.snapshot().failures_exemplars[FAILURE] == Exemplar("job-b", 1.0, T0 + 5)


def test_a_job_counted_later_but_finished_earlier_does_not_replace_the_exemplar() -> None:
    # Prometheus drops an exemplar older than the last one it stored for a series: the
    # newest by ModifyTime is the one that can still be stored.
    s = primed()
    s.update([job("new", FAILED, create=T0, modify=T0 + 50, code="E")], (), T0 + 60)
    s.update([job("late", FAILED, create=T0, modify=T0 + 20, code="E")], (), T0 + 70)
    snap = s.snapshot()
    assert snap.failures_total[FAILURE] == 2
    assert snap.failures_exemplars[FAILURE] == Exemplar("new", 1.0, T0 + 50)
    hist = snap.durations[(FAILED, "listener", "CreateListener")]
    assert hist.exemplars == (None, Exemplar("new", 50.0, T0 + 50), None)  # late: 20 s, le=60


def test_no_exemplar_for_history_or_a_series_that_counted_nothing() -> None:
    s = store()
    s.update([job("old", FAILED, create=T0, modify=T0 + 1, code="E")], (), T0 + 5)  # priming
    snap = s.snapshot()
    assert snap.failures_total[FAILURE] == 0
    assert dict(snap.failures_exemplars) == {}
    assert dict(snap.finished_exemplars) == {}
    assert all(h.exemplars == () for h in snap.durations.values())


# --- zero series ----------------------------------------------------------------------


def test_zero_series_exist_as_soon_as_a_label_set_is_known() -> None:
    s = store()
    s.update([job("p", PROCESSING, rt="servergroup", api="AddServers", op="Update")], (), T0)
    snap = s.snapshot()
    assert dict(snap.finished_total) == {
        (SUCCEEDED, "servergroup", "AddServers", "Update"): 0,
        (FAILED, "servergroup", "AddServers", "Update"): 0,
    }
    empty = HistogramSnapshot(((10.0, 0), (60.0, 0), (float("inf"), 0)), 0.0, 0)
    assert dict(snap.durations) == {
        (SUCCEEDED, "servergroup", "AddServers"): empty,
        (FAILED, "servergroup", "AddServers"): empty,
    }
    assert dict(snap.vanished_total) == {("servergroup", "AddServers"): 0}
    assert dict(snap.failures_total) == {}  # no error code known yet


def test_failed_job_during_priming_creates_failure_series_with_empty_code() -> None:
    s = store()
    s.update([job("f", FAILED, code="")], (), T0)
    assert dict(s.snapshot().failures_total) == {("listener", "CreateListener", ""): 0}
    assert dict(s.snapshot().failed) == {("listener", "CreateListener", ""): 1}


# --- Processing tracking and vanished jobs -----------------------------------------------


def test_processing_job_is_tracked_beyond_the_window() -> None:
    s = store()
    old = job("old", PROCESSING, create=T0 - 100, rt="loadbalancer", api="CreateLoadBalancer")
    s.update([old], (), T0)
    later = T0 + 2 * LOOKBACK
    # The window no longer returns it; the target looks it up by id.
    s.update([old], ["old"], later)
    snap = s.snapshot()
    assert dict(snap.oldest_processing) == {("loadbalancer", "CreateLoadBalancer"): T0 - 100}
    assert dict(snap.jobs_by_status) == {}  # outside the window
    assert s.processing_ids() == {"old"}
    s.update([replace(old, status=SUCCEEDED, modify_time=later)], ["old"], later + 30)
    snap = s.snapshot()
    assert dict(snap.oldest_processing) == {}
    assert finished(snap, SUCCEEDED, "loadbalancer", "CreateLoadBalancer") == 1


def test_processing_job_neither_returned_nor_looked_up_stays_tracked() -> None:
    s = store()
    s.update([job("p", PROCESSING, create=T0 - 50)], (), T0)
    s.update([], (), T0 + 60)
    assert s.processing_ids() == {"p"}
    assert dict(s.snapshot().oldest_processing) == {("listener", "CreateListener"): T0 - 50}
    assert s.snapshot().vanished_total[("listener", "CreateListener")] == 0


def test_oldest_processing_is_the_minimum_per_api() -> None:
    s = store()
    s.update(
        [
            job("a", PROCESSING, create=T0 - 50),
            job("b", PROCESSING, create=T0 - 70),
            job("c", SUCCEEDED, create=T0 - 90),
            job("d", PROCESSING, create=T0 - 10, api="DeleteListener"),
        ],
        (),
        T0,
    )
    assert dict(s.snapshot().oldest_processing) == {
        ("listener", "CreateListener"): T0 - 70,
        ("listener", "DeleteListener"): T0 - 10,
    }


def test_vanished_job_is_counted_and_no_longer_tracked() -> None:
    s = store()
    s.update([job("p", PROCESSING, create=T0)], (), T0)
    s.update([], ["p"], T0 + 60)
    snap = s.snapshot()
    assert snap.vanished_total[("listener", "CreateListener")] == 1
    assert s.processing_ids() == set()
    assert dict(snap.oldest_processing) == {}
    assert snap.jobs_tracked == 0
    # Documented choice: if it comes back terminal it is a job never seen before.
    s.update([job("p", FAILED, create=T0, modify=T0 + 90, code="E")], (), T0 + 120)
    assert finished(s.snapshot(), FAILED) == 1
    assert s.snapshot().vanished_total[("listener", "CreateListener")] == 1


def test_looked_up_ids_that_were_returned_or_unknown_do_not_vanish() -> None:
    s = store()
    s.update([job("p", PROCESSING, create=T0), job("t", SUCCEEDED)], (), T0)
    s.update([job("p", PROCESSING, create=T0)], ["p", "t", "unknown"], T0 + 60)
    assert s.snapshot().vanished_total[("listener", "CreateListener")] == 0
    assert s.processing_ids() == {"p"}


def test_known_terminal_job_stays_terminal_when_a_stale_processing_version_appears() -> None:
    s = primed()
    done = job("j", SUCCEEDED, create=T0, modify=T0 + 5)
    s.update([done], (), T0 + 10)
    s.update([replace(done, status=PROCESSING, modify_time=T0)], (), T0 + 20)
    snap = s.snapshot()
    assert dict(snap.jobs_by_status) == {(SUCCEEDED, "listener", "CreateListener", "Create"): 1}
    assert s.processing_ids() == set()
    assert finished(snap, SUCCEEDED) == 1


def test_undocumented_status_is_shown_and_rechecked_but_not_counted_or_stuck() -> None:
    s = primed()
    s.update([job("x", "Cancelled", create=T0)], (), T0 + 10)
    snap = s.snapshot()
    assert dict(snap.jobs_by_status) == {("Cancelled", "listener", "CreateListener", "Create"): 1}
    assert s.processing_ids() == set()
    assert dict(snap.oldest_processing) == {}
    assert total_finished(snap) == 0
    # Held (an incremental refresh must keep showing it) and re-checked until terminal.
    assert snap.jobs_tracked == 1
    assert dict(s.open_jobs()) == {"x": T0}
    s.update([], ["x"], T0 + 20)
    assert s.snapshot().jobs_tracked == 0
    assert sum(s.snapshot().vanished_total.values()) == 0


# --- window gauges --------------------------------------------------------------------


def test_gauges_cover_jobs_created_within_the_lookback_by_create_time() -> None:
    s = primed()
    now = T0 + 100
    s.update(
        [
            job("in", SUCCEEDED, create=now - LOOKBACK, modify=now - LOOKBACK + 1),
            job("in-f", FAILED, create=now - 10, code="E1"),
            # An API whose BeginTime filters by something else may return older jobs.
            job("old", FAILED, create=now - LOOKBACK - 1, modify=now - 5, code="E2"),
        ],
        (),
        now,
    )
    snap = s.snapshot()
    assert dict(snap.jobs_by_status) == {
        (SUCCEEDED, "listener", "CreateListener", "Create"): 1,
        (FAILED, "listener", "CreateListener", "Create"): 1,
    }
    assert dict(snap.failed) == {("listener", "CreateListener", "E1"): 1}
    assert [j.id for j in snap.recent_failures] == ["in-f"]
    # "old" is new to us and created before the window: ignored, not counted, not held.
    assert finished(snap, FAILED) == 1
    assert snap.jobs_tracked == 2


@pytest.mark.parametrize("modify_offset", [-2 * LOOKBACK, -5.0])
def test_never_seen_job_created_before_the_window_is_ignored(modify_offset: float) -> None:
    # Whether the API returns it depends on what BeginTime filters on (unconfirmed), and
    # it may be a job counted long ago and forgotten since: counting it would break
    # "once ever" and make the counters depend on the API's window semantics.
    s = primed()
    now = T0 + 100
    ancient = job("ancient", FAILED, create=now - 3 * LOOKBACK, modify=now + modify_offset)
    s.update([ancient], (), now)
    assert total_finished(s.snapshot()) == 0
    assert s.snapshot().jobs_tracked == 0


def test_gauges_drop_jobs_the_refresh_no_longer_returns() -> None:
    s = store()
    s.update([job("a", SUCCEEDED), job("b", PROCESSING, create=T0)], (), T0)
    s.update([job("b", PROCESSING, create=T0)], (), T0 + 30)
    assert dict(s.snapshot().jobs_by_status) == {
        (PROCESSING, "listener", "CreateListener", "Create"): 1
    }


def test_recent_failures_newest_first_ties_by_id_and_capped() -> None:
    s = store(recent_failures=3)
    jobs = [
        job("a", FAILED, create=T0 - 50, modify=T0 - 10, code="E"),
        job("b", FAILED, create=T0 - 50, modify=T0 - 5, code="E"),
        job("c", FAILED, create=T0 - 50, modify=T0 - 5, code="E"),
        job("d", FAILED, create=T0 - 50, modify=T0 - 20, code="E"),
        job("e", SUCCEEDED, create=T0 - 50, modify=T0 - 1),
    ]
    s.update(jobs, (), T0)
    assert [j.id for j in s.snapshot().recent_failures] == ["c", "b", "a"]


def test_recent_failures_zero_means_none() -> None:
    s = store(recent_failures=0)
    s.update([job("a", FAILED, code="E")], (), T0)
    assert s.snapshot().recent_failures == ()


# --- duplicates, memory, snapshots -------------------------------------------------------


def test_duplicates_keep_the_newest_version_and_terminal_wins_ties() -> None:
    p = job("j", PROCESSING, create=T0, modify=T0)
    f = job("j", FAILED, create=T0, modify=T0 + 5, code="E")
    assert dedupe([p, f]) == {"j": f}
    assert dedupe([f, p]) == {"j": f}
    tie = replace(f, modify_time=T0)
    assert dedupe([p, tie]) == {"j": tie}
    assert dedupe([tie, p]) == {"j": tie}


def test_duplicates_in_one_update_count_once() -> None:
    s = store()
    s.update([job("j", PROCESSING, create=T0)], (), T0)
    f = job("j", FAILED, create=T0, modify=T0 + 5, code="E")
    s.update([f, job("j", PROCESSING, create=T0), f], (), T0 + 10)
    snap = s.snapshot()
    assert finished(snap, FAILED) == 1
    assert dict(snap.jobs_by_status) == {(FAILED, "listener", "CreateListener", "Create"): 1}


def test_pruning_keeps_memory_bounded_over_many_updates() -> None:
    s = store()
    step = 600.0
    all_jobs: list[Job] = []
    for i in range(200):
        now = T0 + i * step
        all_jobs += [job(f"j{i}-{k}", SUCCEEDED, create=now - 5, modify=now - 1) for k in range(5)]
        # The API returns what was created within the last hour.
        window = [j for j in all_jobs if j.create_time >= now - LOOKBACK]
        s.update(window, (), now)
    snap = s.snapshot()
    # 7 refreshes (one hour / ten minutes, plus the boundary) of 5 jobs each.
    assert snap.jobs_tracked <= 7 * 5
    assert total_finished(snap) == 199 * 5  # all but the priming batch
    # A forgotten job returned again (API glitch) is not counted a second time.
    s.update([all_jobs[10]], (), now + step)
    assert total_finished(s.snapshot()) == 199 * 5


def test_snapshots_are_immutable_and_not_changed_by_later_updates() -> None:
    s = store()
    s.update([job("a", SUCCEEDED)], (), T0)
    first = s.snapshot()
    with pytest.raises(TypeError):
        first.jobs_by_status[("x", "y", "z", "w")] = 1  # type: ignore[index]
    s.update([job("b", PROCESSING, create=T0)], (), T0 + 10)
    assert dict(first.jobs_by_status) == {(SUCCEEDED, "listener", "CreateListener", "Create"): 1}
    assert first.processing_ids == frozenset()
    assert s.snapshot() is not first


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError):
        JobStore(0, 10)
    with pytest.raises(ValueError):
        JobStore(60, -1)


@pytest.mark.slow  # a second of CPU in reader and writer threads; no real-time bound
def test_concurrent_readers_never_see_half_an_update() -> None:
    s = primed()
    stop = threading.Event()
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            snap = s.snapshot()
            counted = sum(h.count for h in snap.durations.values())
            if counted != total_finished(snap):
                problems.append(f"{counted} != {total_finished(snap)}")

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for i in range(300):
            now = T0 + i
            s.update(
                [job(f"j{i}-{k}", SUCCEEDED, create=now, modify=now) for k in range(20)], (), now
            )
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert problems == []
    assert total_finished(s.snapshot()) == 300 * 20


# --- property: random job histories, arbitrary sampling ----------------------------------

PROP_LOOKBACK = 100.0
LABELS = [("listener", "CreateListener", "Create"), ("acl", "UpdateAcl", "Update")]


@dataclass(frozen=True)
class History:
    """One job's truth: Processing from `create`, terminal from `finish` (if ever)."""

    id: str
    create: int
    finish: int | None
    outcome: str
    code: str
    labels: tuple[str, str, str]

    def at(self, t: int) -> Job:
        done = self.finish is not None and t >= self.finish
        rt, api, op = self.labels
        return Job(
            id=self.id,
            api_name=api,
            operate_type=op,
            resource_type=rt,
            resource_id="r-" + self.id,
            status=self.outcome if done else PROCESSING,
            error_code=self.code if done and self.outcome == FAILED else "",
            error_message="",
            create_time=float(self.create),
            modify_time=float(self.finish if done and self.finish is not None else self.create),
        )


@st.composite
def histories(draw: st.DrawFn) -> list[History]:
    result = []
    for i in range(draw(st.integers(1, 10))):
        create = draw(st.integers(0, 400))
        duration = draw(st.none() | st.integers(0, 150))
        result.append(
            History(
                id=f"j{i}",
                create=create,
                finish=None if duration is None else create + duration,
                outcome=draw(st.sampled_from([SUCCEEDED, FAILED])),
                code=draw(st.sampled_from(["", "E1", "E2"])),
                labels=draw(st.sampled_from(LABELS)),
            )
        )
    return result


def _recount(window: list[Job], recent: int) -> tuple[Counter[object], Counter[object], list[str]]:
    by_status: Counter[object] = Counter(
        (j.status, j.resource_type, j.api_name, j.operate_type) for j in window
    )
    failed: Counter[object] = Counter(
        (j.resource_type, j.api_name, j.error_code) for j in window if j.status == FAILED
    )
    failures = sorted(
        (j for j in window if j.status == FAILED), key=lambda j: (j.modify_time, j.id), reverse=True
    )
    return by_status, failed, [j.id for j in failures[:recent]]


def _assert_exemplars_are_the_newest_counted(
    snap: StoreSnapshot, counted: list[Job], bounds: tuple[float, ...]
) -> None:
    """Each counter series' exemplar is the newest (ModifyTime, then id) job it counted,
    each bucket's the newest job observed into it (value: its duration)."""
    finished: dict[object, Exemplar] = {}
    failures: dict[object, Exemplar] = {}
    buckets: dict[object, list[Exemplar | None]] = {}

    def keep(held: dict[object, Exemplar], key: object, exemplar: Exemplar) -> None:
        if key not in held or (exemplar.timestamp, exemplar.job_id) > (
            held[key].timestamp,
            held[key].job_id,
        ):
            held[key] = exemplar

    for j in counted:
        one = Exemplar(j.id, 1.0, j.modify_time)
        keep(finished, (j.status, j.resource_type, j.api_name, j.operate_type), one)
        if j.status == FAILED:
            keep(failures, (j.resource_type, j.api_name, j.error_code), one)
        duration = max(0.0, j.modify_time - j.create_time)
        slot = next(i for i, le in enumerate((*bounds, float("inf"))) if duration <= le)
        per_bucket = buckets.setdefault(
            (j.status, j.resource_type, j.api_name), [None] * (len(bounds) + 1)
        )
        held = per_bucket[slot]
        if held is None or (j.modify_time, j.id) > (held.timestamp, held.job_id):
            per_bucket[slot] = Exemplar(j.id, duration, j.modify_time)
    assert dict(snap.finished_exemplars) == finished
    assert dict(snap.failures_exemplars) == failures
    assert {k: list(h.exemplars) for k, h in snap.durations.items() if h.exemplars} == buckets


def _assert_monotonic(before: StoreSnapshot, after: StoreSnapshot) -> None:
    for name in ("finished_total", "failures_total", "vanished_total"):
        old, new = getattr(before, name), getattr(after, name)
        for key, value in old.items():
            assert new[key] >= value, (name, key)
    for key, hist in before.durations.items():
        assert after.durations[key].count >= hist.count


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(jobs=histories(), data=st.data())
def test_property_counted_at_most_once_monotonic_and_gauges_recount(
    jobs: list[History], data: st.DataObject
) -> None:
    s = JobStore(PROP_LOOKBACK, 3, duration_buckets=(10.0, 60.0))
    times = sorted(data.draw(st.sets(st.integers(0, 700), min_size=1, max_size=12)))
    ever_terminal: dict[tuple[str, str, str, str], set[str]] = {}
    last_status: dict[str, str] = {}
    counted: list[Job] = []
    before = s.snapshot()
    for n, now in enumerate(times):
        existing = [h for h in jobs if h.create <= now]
        listed = data.draw(
            st.lists(st.sampled_from(existing), unique=True) if existing else st.just([])
        )
        returned = {h.id for h in listed}
        looked_up = s.processing_ids() - returned
        found = [h for h in jobs if h.id in looked_up and data.draw(st.booleans())]
        observed = [h.at(now) for h in [*listed, *found]]
        counted.extend(s.update(observed, looked_up, now) or ())
        after = s.snapshot()
        _assert_exemplars_are_the_newest_counted(after, counted, (10.0, 60.0))

        if n == 0:
            assert total_finished(after) == 0, "priming must not count"
        _assert_monotonic(before, after)
        for j in observed:
            if j.status != PROCESSING:
                key = (j.status, j.resource_type, j.api_name, j.operate_type)
                ever_terminal.setdefault(key, set()).add(j.id)
        # At most once: a label set never counts more jobs than ever ended with it.
        for key, value in after.finished_total.items():
            assert value <= len(ever_terminal.get(key, set())), key
        assert sum(after.failures_total.values()) == sum(
            v for k, v in after.finished_total.items() if k[0] == FAILED
        )
        assert sum(h.count for h in after.durations.values()) == total_finished(after)
        # Tracked as Processing, terminal now: each such job is counted in this update.
        finishing: Counter[tuple[str, str, str, str]] = Counter(
            (j.status, j.resource_type, j.api_name, j.operate_type)
            for j in observed
            if j.status != PROCESSING and last_status.get(j.id) == PROCESSING
        )
        for key, n_finishing in finishing.items():
            assert after.finished_total[key] - before.finished_total.get(key, 0) >= n_finishing

        window = [j for j in observed if j.create_time >= now - PROP_LOOKBACK]
        by_status, failed, recent = _recount(window, 3)
        assert dict(after.jobs_by_status) == dict(by_status)
        assert dict(after.failed) == dict(failed)
        assert [j.id for j in after.recent_failures] == recent

        # Jobs never held and created before the window are ignored (see JobStore).
        relevant = [
            j for j in observed if j.create_time >= now - PROP_LOOKBACK or j.id in last_status
        ]
        processing_now = {j.id for j in relevant if j.status == PROCESSING}
        assert processing_now <= s.processing_ids()
        oldest: dict[tuple[str, str], float] = {}
        for h in jobs:
            if h.id in s.processing_ids():
                key2 = (h.labels[0], h.labels[1])
                oldest[key2] = min(oldest.get(key2, float("inf")), float(h.create))
        assert dict(after.oldest_processing) == oldest

        # Memory holds only what is returned, tracked, or recent enough to come back.
        recent_enough = {
            h.id
            for h in jobs
            if h.create <= now and max(h.create, h.finish or 0) >= now - PROP_LOOKBACK
        }
        assert after.jobs_tracked <= len(
            {j.id for j in observed} | s.processing_ids() | recent_enough
        )

        last_status.update({j.id: j.status for j in relevant})
        for job_id in looked_up - {j.id for j in observed}:
            last_status.pop(job_id, None)  # vanished: the store forgot it
        for h in jobs:  # terminal and created before the window: forgotten
            if last_status.get(h.id, PROCESSING) != PROCESSING and h.create < now - PROP_LOOKBACK:
                del last_status[h.id]
        before = after
