"""Counters you can page on: a stateful property test of the real store and target against
the simulator, over real HTTP with real signatures.

Hypothesis interleaves job arrivals (some listed up to `overlap` after their CreateTime),
completions, failures and jobs that vanish, refreshes, restarts through the state file
(with jobs born and finished while down), wall-clock steps of the exporter's clock,
reloads that hand the store to a new target while the old target's refresh is in flight,
and malformed 2xx answers.
After every step the counters equal the simulator's truth of the jobs that finished since
the first refresh, no more and no less, and the window gauges equal what the simulator
lists, both as of the last refresh that was applied.

`make test` runs the same 200 sequences every time; `HYPOTHESIS_PROFILE=long` runs 4,000
new ones of up to 50 steps (README, "Two commands").
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.signing import Credential, make_signer
from exporter.config.model import DEFAULT_DURATION_BUCKETS
from exporter.jobs import state
from exporter.jobs.model import Job, JobQuery
from exporter.jobs.snapshot import Exemplar
from exporter.jobs.store import JobStore
from exporter.jobs.target import RefreshPolicy, Target
from exporter.simulator import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    Simulator,
    SimulatorServer,
)
from exporter.wire import ACTION, API_VERSION, FAILED, PROCESSING, SUCCEEDED

REGION = "cn-hangzhou"
LOOKBACK = 1200.0
OVERLAP = 60.0
POLICY = RefreshPolicy(
    overlap=OVERLAP,
    full_resync_interval=600.0,  # < lookback - overlap, as the config requires
    recheck_age_fraction=0.0,  # every open job re-checked on every refresh: no lag to model
)
# (api_name, resource_type, operate_type, error code when it fails)
KINDS = (
    ("CreateListener", "listener", "Create", "Conflict.Lock"),
    ("DeleteRule", "rule", "Delete", "ResourceNotFound.Rule"),
    ("AddServersToServerGroup", "servergroup", "Update", ""),
)
# Answers that are never a ListAsynJobs answer, whatever the jobs (see simulator.listing).
MALFORMED = ("no_jobs", "not_json", "truncated", "html502")
BOUNDS = (*DEFAULT_DURATION_BUCKETS, float("inf"))  # the stores' duration buckets


@dataclass
class Truth:
    """What the simulator listed at one applied refresh."""

    sim_time: float
    floor: float  # the window start the exporter had reached by then
    jobs: list[dict[str, Any]]


class Gate:
    """A JobSource that can run something (a reload's new refresh) between the old target's
    listing and its store update, the race of a reload overlapping a refresh in flight."""

    def __init__(self, client: ListAsynJobsClient) -> None:
        self.client = client
        self.after_listing: Callable[[], None] | None = None

    def list_jobs(self, query: JobQuery) -> list[Job]:
        jobs = self.client.list_jobs(query)
        hook, self.after_listing = self.after_listing, None
        if hook is not None:
            hook()
        return jobs


class Counting(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = Simulator(regions=(REGION,), seed=1, jobs_per_minute=0, history_seconds=0)
        self.sim.freeze()
        self.server = SimulatorServer(self.sim).start()
        signer = make_signer(
            "v3",
            lambda: Credential(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET),
            action=ACTION,
            version=API_VERSION,
        )
        self.client = ListAsynJobsClient(
            f"{self.server.url}/{REGION}/", signer, page_size=7, max_pages=1000, timeout=10,
            max_attempts=1,
        )  # fmt: skip
        self.source = Gate(self.client)
        self.offset = 0.0  # the exporter's wall clock minus ALB's
        self.serial = 0
        self.first_refresh: float | None = None
        self.history: set[str] = set()  # jobs already terminal when first listed
        self.last_refresh = 0.0  # ALB time of the last refresh applied
        self.floor: float | None = None
        self.truth: Truth | None = None
        self.target = self._new_target(JobStore(LOOKBACK, 5))

    def teardown(self) -> None:
        self.client.close()
        self.server.shutdown()

    # --- the exporter side -----------------------------------------------------------------

    def _clock(self) -> float:
        return self.sim.now() + self.offset

    def _new_target(self, store: JobStore) -> Target:
        return Target(
            "acct", REGION, self.source, store, lookback=LOOKBACK, policy=POLICY, clock=self._clock
        )

    def _refresh(self, target: Target) -> None:
        before = target.store.snapshot()
        target.refresh()
        assert target.status().up, target.status().last_error
        if target.store.snapshot() is not before:
            self._applied(target)

    def _applied(self, target: Target) -> None:
        """Record the truth the store now has to match."""
        now = target.store.snapshot().updated_at
        assert now is not None
        jobs = self.sim.jobs(REGION)
        if self.first_refresh is None:
            self.first_refresh = self.sim.now()
            self.history = {j["Id"] for j in jobs if j["Status"] != PROCESSING}
        self.last_refresh = self.sim.now()
        start = now - LOOKBACK
        self.floor = start if self.floor is None else max(self.floor, start)
        self.truth = Truth(self.sim.now(), self.floor, jobs)

    # --- the ALB side ----------------------------------------------------------------------

    @rule(kind=st.sampled_from(KINDS), lag=st.integers(0, int(OVERLAP)), count=st.integers(1, 3))
    def arrive(self, kind: tuple[str, str, str, str], lag: int, count: int) -> None:
        """New jobs, listed `lag` seconds after their CreateTime (ALB's index lag)."""
        api, resource_type, operate, _ = kind
        for _ in range(count):
            self.serial += 1
            self.sim.upsert_job(
                REGION,
                Id=f"job-{self.serial:05d}",
                ApiName=api,
                ResourceType=resource_type,
                OperateType=operate,
                CreateTime=int((self.sim.now() - lag) * 1000),
            )

    @rule(pick=st.integers(0, 10_000), failed=st.booleans())
    def finish(self, pick: int, failed: bool) -> None:
        processing = [j for j in self.sim.jobs(REGION) if j["Status"] == PROCESSING]
        if not processing:
            return
        job = processing[pick % len(processing)]
        code = next(k[3] for k in KINDS if k[0] == job["ApiName"])
        if failed:
            self.sim.set_status(REGION, job["Id"], FAILED, error_code=code, error_message="x")
        else:
            self.sim.set_status(REGION, job["Id"], SUCCEEDED)

    @rule(pick=st.integers(0, 10_000))
    def vanish(self, pick: int) -> None:
        """A Processing job drops out of the results without finishing."""
        processing = [j for j in self.sim.jobs(REGION) if j["Status"] == PROCESSING]
        if processing:
            self.sim.remove_job(REGION, processing[pick % len(processing)]["Id"])

    # Gaps stay well inside the window (with the clock offset): a job that leaves the
    # window before any refresh saw it is lost to every exporter, and that is not what
    # this test is about.
    @precondition(lambda self: self.sim.now() - self.last_refresh < 300)
    @rule(seconds=st.integers(1, 300))
    def advance(self, seconds: int) -> None:
        self.sim.advance(seconds)

    # --- the exporter's life ---------------------------------------------------------------

    @rule()
    def refresh(self) -> None:
        self._refresh(self.target)

    @precondition(lambda self: self.first_refresh is not None)
    @rule(step=st.integers(-600, 600))
    def clock_step(self, step: int) -> None:
        """An NTP step of the exporter's clock (after the first refresh: before it, a skew
        decides which jobs count as history, see README "Counting rules")."""
        self.offset = max(-300.0, min(300.0, self.offset + step))
        self._refresh(self.target)

    @precondition(lambda self: self.first_refresh is not None)
    @rule(
        down=st.lists(
            st.tuples(st.sampled_from(KINDS), st.integers(0, 60), st.booleans()), max_size=6
        )
    )
    def restart(self, down: list[tuple[tuple[str, str, str, str], int, bool]]) -> None:
        """Stop (state saved), jobs born and finished while down, start from the state."""
        raw = state.encode({self.target.key: self.target.export_state()}, self._clock())
        for kind, seconds, failed in down:
            self.arrive(kind, 0, 1)
            self.sim.advance(seconds)
            self.finish(10_000, failed)
        restored = state.decode(raw)
        self.target = self._new_target(JobStore(LOOKBACK, 5))
        self.target.restore_state(*restored[self.target.key])
        self._refresh(self.target)

    @precondition(lambda self: self.first_refresh is not None)
    @rule(seconds=st.integers(0, 240), newer_lands_first=st.booleans())
    def reload_during_refresh(self, seconds: int, newer_lands_first: bool) -> None:
        """A reload keeps the store and builds a new target while the old one's refresh is
        in flight; time passes and jobs finish in between."""
        old = self.target
        new = self._new_target(old.store)

        def meanwhile() -> None:
            self.finish(0, False)
            self.vanish(1)
            self.sim.advance(seconds)
            if newer_lands_first:
                self._refresh(new)

        self.source.after_listing = meanwhile
        before = old.store.snapshot().updated_at
        old.refresh()
        if old.store.snapshot().updated_at != before and not newer_lands_first:
            self._applied(old)
        self.target = new
        if not newer_lands_first:
            self._refresh(new)

    @rule(kind=st.sampled_from(MALFORMED))
    def malformed_answer(self, kind: str) -> None:
        before = self.target.store.snapshot()
        self.sim.set_faults(REGION, malformed=kind)
        try:
            self.target.refresh()
        finally:
            self.sim.clear_faults(REGION)
        assert not self.target.status().up
        assert self.target.store.snapshot() is before  # nothing vanished, nothing moved

    # --- the invariants --------------------------------------------------------------------

    @invariant()
    def counters_equal_the_jobs_finished_since_the_first_refresh(self) -> None:
        truth = self.truth
        snap = self.target.store.snapshot()
        if truth is None:
            assert not _nonzero(snap.finished_total)
            return
        done = [j for j in truth.jobs if j["Status"] != PROCESSING and j["Id"] not in self.history]
        assert _nonzero(snap.finished_total) == Counter(_status_key(j) for j in done)
        failed = [j for j in done if j["Status"] == FAILED]
        assert _nonzero(snap.failures_total) == Counter(
            (j["ResourceType"], j["ApiName"], j["ErrorCode"]) for j in failed
        )
        observed = {k: h.count for k, h in snap.durations.items() if h.count}
        assert observed == Counter((j["Status"], j["ResourceType"], j["ApiName"]) for j in done)

    @invariant()
    def exemplars_are_the_newest_jobs_counted(self) -> None:
        """SPEC "Exemplars": per counter series the newest job it counted, per duration
        bucket the newest job observed into it; through restarts with the state file."""
        truth = self.truth
        snap = self.target.store.snapshot()
        done = [] if truth is None else [
            j for j in truth.jobs if j["Status"] != PROCESSING and j["Id"] not in self.history
        ]  # fmt: skip
        finished: dict[Any, Exemplar] = {}
        failures: dict[Any, Exemplar] = {}
        buckets: dict[Any, dict[int, Exemplar]] = {}
        # Newest by ModifyTime, then id: sorting makes the last one written the newest.
        for j in sorted(done, key=lambda j: (j["ModifyTime"], j["Id"])):
            finished_at = j["ModifyTime"] / 1000
            one = Exemplar(j["Id"], 1.0, finished_at)
            finished[_status_key(j)] = one
            if j["Status"] == FAILED:
                failures[(j["ResourceType"], j["ApiName"], j["ErrorCode"])] = one
            duration = max(0.0, finished_at - j["CreateTime"] / 1000)
            slot = next(i for i, le in enumerate(BOUNDS) if duration <= le)
            hist = buckets.setdefault((j["Status"], j["ResourceType"], j["ApiName"]), {})
            hist[slot] = Exemplar(j["Id"], duration, finished_at)
        assert dict(snap.finished_exemplars) == finished
        assert dict(snap.failures_exemplars) == failures
        held = {
            key: {i: e for i, e in enumerate(h.exemplars) if e is not None}
            for key, h in snap.durations.items()
            if h.exemplars
        }
        assert held == buckets

    @invariant()
    def window_gauges_equal_what_the_simulator_listed(self) -> None:
        truth = self.truth
        if truth is None:
            return
        snap = self.target.store.snapshot()
        window = [j for j in truth.jobs if j["CreateTime"] >= truth.floor * 1000]
        assert dict(snap.jobs_by_status) == Counter(_status_key(j) for j in window)
        assert dict(snap.failed) == Counter(
            (j["ResourceType"], j["ApiName"], j["ErrorCode"])
            for j in window
            if j["Status"] == FAILED
        )
        oldest: dict[tuple[str, str], float] = {}
        for j in truth.jobs:
            if j["Status"] == PROCESSING:
                key = (j["ResourceType"], j["ApiName"])
                oldest[key] = min(oldest.get(key, float("inf")), j["CreateTime"] / 1000)
        assert dict(snap.oldest_processing) == oldest


def _status_key(job: dict[str, Any]) -> tuple[str, str, str, str]:
    return (job["Status"], job["ResourceType"], job["ApiName"], job["OperateType"])


def _nonzero(counts: Any) -> Counter[Any]:
    return Counter({k: v for k, v in counts.items() if v})


# 200 examples in `make test`; HYPOTHESIS_PROFILE=long runs 20 times as many, and longer.
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
Counting.TestCase.settings = settings(
    max_examples=4000 if LONG else 200,
    stateful_step_count=50 if LONG else 25,
    deadline=None,
    # The same 200 sequences on every run of `make test` (no flaky CI); the long run
    # explores new ones each time.
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCounting = pytest.mark.slow(Counting.TestCase)
