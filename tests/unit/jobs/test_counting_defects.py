"""One regression test per way the counters went wrong on 3e9e04c (issue "Counters you can
page on"); each failed there. The property test in test_counting.py covers their
interleavings; these pin each defect down on its own, with numbers a reader can follow.

The job source is a small in-memory ALB (the `JobSource` seam) whose BeginTime filters on
CreateTime, except for defect 5, which needs the real client and a real (mocked-transport)
HTTP answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import httpx

from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.signing import Credential, make_signer
from exporter.jobs import state
from exporter.jobs.model import Job, JobQuery
from exporter.jobs.store import JobStore
from exporter.jobs.target import JobSource, RefreshPolicy, Target
from exporter.wire import ACTION, API_VERSION, FAILED, PROCESSING, SUCCEEDED
from tests.support.clock import T0, FakeClock
from tests.support.jobs import job as make_job

LOOKBACK = 600.0
POLICY = RefreshPolicy(overlap=60.0, full_resync_interval=300.0, recheck_age_fraction=0.0)


def job(job_id: str, status: str, create: float, modify: float | None = None) -> Job:
    return make_job(job_id, status, create, modify, api_name="CreateRule", resource_type="rule")


class Alb:
    """Jobs as ALB lists them: `listed_from[id]` is when a job first shows in listings (its
    CreateTime unless the API indexes it late); lookups by id see every job."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock  # ALB's clock: the truth the exporter's clock may step away from
        self.jobs: dict[str, Job] = {}
        self.listed_from: dict[str, float] = {}
        self.hook: Callable[[], None] | None = None  # runs after the next listing
        self.listed: list[int] = []  # how many jobs each listing (not look-up) returned

    def put(self, *jobs: Job, listed_at: float | None = None) -> None:
        for j in jobs:
            self.jobs[j.id] = j
            self.listed_from[j.id] = j.create_time if listed_at is None else listed_at

    def list_jobs(self, query: JobQuery) -> list[Job]:
        if query.job_ids:
            found = [self.jobs[i] for i in query.job_ids if i in self.jobs]
        else:
            begin = (query.begin_time_ms or 0) / 1000
            now = self.clock()
            found = [
                j
                for j in self.jobs.values()
                if j.create_time >= begin and self.listed_from[j.id] <= now
            ]
            self.listed.append(len(found))
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return found


def target(source: JobSource, clock: Callable[[], float], store: JobStore | None = None) -> Target:
    return Target(
        "acct",
        "cn-hangzhou",
        source,
        store or JobStore(LOOKBACK, 5),
        lookback=LOOKBACK,
        policy=POLICY,
        clock=clock,
    )


def finished(t: Target) -> int:
    return sum(t.snapshot().finished_total.values())


def durations(t: Target) -> int:
    return sum(h.count for h in t.snapshot().durations.values())


def test_1_a_restart_counts_the_jobs_born_and_finished_while_down() -> None:
    clock = FakeClock()
    alb = Alb(clock)
    alb.put(job("before-start", SUCCEEDED, T0 - 100, T0 - 50))  # history: never counted
    first = target(alb, clock)
    first.refresh()
    for i in range(5):
        alb.put(job(f"seen-{i}", SUCCEEDED, T0 + i, T0 + 10))
    clock.advance(30)
    first.refresh()
    assert finished(first) == 5
    saved = state.encode({first.key: first.export_state()}, clock())  # SIGTERM flushes

    # 25 s down: 25 short jobs are created and finish, 5 of them failed.
    for i in range(25):
        alb.put(job(f"down-{i}", FAILED if i % 5 == 0 else SUCCEEDED, T0 + 31 + i, T0 + 40 + i))
    clock.advance(25)
    second = target(alb, clock)
    second.restore_state(*state.decode(saved)[second.key])
    second.refresh()
    assert finished(second) == 30
    assert sum(second.snapshot().failures_total.values()) == 5
    assert durations(second) == 30


def test_2_a_wall_clock_step_backwards_does_not_count_pruned_jobs_again() -> None:
    alb_time = FakeClock()
    ours = FakeClock()
    alb = Alb(alb_time)
    t = target(alb, ours)
    t.refresh()
    for i in range(60):
        alb.put(job(f"j{i}", SUCCEEDED, T0 + 1 + i, T0 + 1 + i))
    for clock in (alb_time, ours):
        clock.advance(61)
    t.refresh()
    assert finished(t) == 60
    # 30 s later the 28 oldest have left the 10 min window and are forgotten...
    for clock in (alb_time, ours):
        clock.advance(LOOKBACK - 61 + 29)
    t.refresh()
    assert finished(t) == 60 and t.snapshot().jobs_tracked == 60 - 28
    # ...then NTP steps our clock back 30 s: the complete listing that follows returns them.
    ours.advance(-30)
    t.refresh()
    assert t.status().up
    assert finished(t) == 60
    assert durations(t) == 60


def test_2b_a_step_forward_past_the_window_and_back_loses_no_new_job() -> None:
    alb_time, ours = FakeClock(), FakeClock()
    alb = Alb(alb_time)
    t = target(alb, ours)
    alb.put(job("before", SUCCEEDED, T0 - 5, T0 - 1))
    t.refresh()
    ours.advance(2 * LOOKBACK)  # our clock runs 20 min ahead for a while...
    t.refresh()
    ours.advance(-2 * LOOKBACK)  # ...and is corrected
    for clock in (alb_time, ours):
        clock.advance(30)
    alb.put(job("after", FAILED, T0 + 20, T0 + 25))
    t.refresh()
    assert finished(t) == 1  # "after" is counted; the window start did not stay 20 min ahead
    assert t.snapshot().failed == {("rule", "CreateRule", "Conflict.Lock"): 1}


def test_3_a_reload_overlapping_a_refresh_in_flight_does_not_count_twice() -> None:
    clock = FakeClock()
    alb = Alb(clock)
    old = target(alb, clock)
    old.refresh()
    alb.put(job("j", SUCCEEDED, T0 + 1, T0 + 2))
    clock.advance(5)
    # The reload keeps the store and builds a new target while the old one's refresh is
    # stuck between its listing (which returned "j") and its store update. Meanwhile the
    # new target refreshes, counts "j", and later, once "j" left the window, prunes it.
    new = target(alb, clock, store=old.store)

    def reload_meanwhile() -> None:
        new.refresh()
        assert finished(new) == 1
        clock.advance(LOOKBACK + 10)
        new.refresh()
        assert new.snapshot().jobs_tracked == 0

    alb.hook = reload_meanwhile
    old.refresh()
    assert new.status().up
    assert finished(new) == 1
    assert durations(new) == 1
    new.refresh()
    assert finished(new) == 1


def test_4_a_job_listed_later_than_overlap_is_recovered_by_the_resync_and_said_so() -> None:
    clock = FakeClock()
    alb = Alb(clock)
    t = target(alb, clock)
    t.refresh()
    # Created at T0+10 but listed only 90 s later, past the 60 s overlap.
    alb.put(job("late", FAILED, T0 + 10, T0 + 20), listed_at=T0 + 100)
    alb.put(job("on-time", SUCCEEDED, T0 + 80, T0 + 81))
    for _ in range(4):
        clock.advance(30)
        t.refresh()
    assert finished(t) == 1  # the incremental listings missed "late"
    assert t.snapshot().recovered_total == 0
    clock.advance(POLICY.full_resync_interval)  # well within the window
    t.refresh()
    assert finished(t) == 2
    assert t.snapshot().failures_total[("rule", "CreateRule", "Conflict.Lock")] == 1
    assert t.snapshot().recovered_total == 1  # tells the operator to raise `overlap`


def _client(answers: Iterable[dict[str, object]]) -> ListAsynJobsClient:
    bodies = iter(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(next(bodies)).encode())

    signer = make_signer(
        "v3", lambda: Credential("id", "secret"), action=ACTION, version=API_VERSION
    )
    return ListAsynJobsClient(
        "https://alb.cn-hangzhou.aliyuncs.com/",
        signer,
        page_size=100,
        max_pages=10,
        timeout=5,
        transport=httpx.MockTransport(answer),
        max_attempts=1,
    )


def test_5_a_2xx_answer_that_is_not_a_listing_is_down_and_loses_no_job() -> None:
    clock = FakeClock()
    stuck = {
        "Id": "stuck",
        "ApiName": "CreateRule",
        "OperateType": "Create",
        "ResourceType": "rule",
        "ResourceId": "rule-1",
        "Status": PROCESSING,
        "CreateTime": int((T0 - 300) * 1000),
    }
    # The listing, then what a proxy answers to the listing and to the look-up by id.
    client = _client([{"TotalCount": 1, "Jobs": [stuck]}, {"RequestId": "r"}, {"RequestId": "r"}])
    t = target(client, clock)
    t.refresh()
    before = t.snapshot()
    assert t.status().up and before.processing_ids == {"stuck"}
    clock.advance(30)
    t.refresh()
    assert not t.status().up
    assert "neither Jobs nor TotalCount" in (t.status().last_error or "")
    assert t.snapshot() is before  # the stuck job is still tracked, nothing vanished
    assert t.snapshot().oldest_processing == {("rule", "CreateRule"): T0 - 300}
    assert sum(t.snapshot().vanished_total.values()) == 0
    client.close()


def test_review_a_burst_then_a_quiet_spell_is_not_re_read_for_long() -> None:
    # Incremental listings start from the newest CreateTime listed; in a quiet spell that
    # position also follows our clock (less 10 min), so a burst is not re-read until the
    # next full resync (or a new job).
    clock = FakeClock()
    alb = Alb(clock)
    t = target(alb, clock)
    t.refresh()
    alb.put(*(job(f"b{i}", SUCCEEDED, T0 + 1 + i / 10) for i in range(300)))
    clock.advance(60)
    t.refresh()
    assert finished(t) == 300
    for _ in range(24):  # 12 quiet minutes, a refresh every 30 s, no full resync
        clock.advance(30)
        t.refresh()
    assert alb.listed[-1] == 0


def test_review_a_createtime_far_in_the_future_does_not_make_listings_skip_jobs() -> None:
    clock = FakeClock()
    alb = Alb(clock)
    t = target(alb, clock)
    t.refresh()
    alb.put(job("bogus", SUCCEEDED, T0 + 3600, T0 + 3600), listed_at=T0)
    clock.advance(30)
    t.refresh()
    alb.put(job("normal", FAILED, T0 + 40, T0 + 45))
    clock.advance(30)
    t.refresh()
    assert t.snapshot().failures_total == {("rule", "CreateRule", "Conflict.Lock"): 1}
