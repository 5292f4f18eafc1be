"""The window gauges kept job by job (exporter.jobs.window) equal a recount of the store's
jobs after every update: the way `JobStore` computed them before, applied here to what
the store exports, through random updates, clock steps back and forth, complete and
incremental listings, vanishing and pruned jobs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.jobs.model import Job
from exporter.jobs.snapshot import StoreSnapshot
from exporter.jobs.store import JobStore
from exporter.wire import FAILED, PROCESSING, SUCCEEDED, TERMINAL

T0 = 1_700_000_000.0
LOOKBACK = 600.0
IDS = [f"job-{i}" for i in range(12)]


def recount(store: JobStore, now: float) -> dict[str, object]:
    """The gauges as the store computed them before, from everything it holds."""
    state = store.export()
    start = now - LOOKBACK if state.floor is None else max(now - LOOKBACK, state.floor)
    window = [j for j in state.jobs if j.id in state.visible and j.create_time >= start]
    failed = [j for j in window if j.status == FAILED]
    unfinished = [j for j in state.jobs if j.status not in TERMINAL]
    processing = [j for j in unfinished if j.status == PROCESSING]
    oldest: dict[tuple[str, str], float] = {}
    for job in processing:
        key = (job.resource_type, job.api_name)
        oldest[key] = min(job.create_time, oldest.get(key, job.create_time))
    return {
        "jobs_by_status": Counter(
            (j.status, j.resource_type, j.api_name, j.operate_type) for j in window
        ),
        "failed": Counter((j.resource_type, j.api_name, j.error_code) for j in failed),
        "recent_failures": tuple(
            sorted(failed, key=lambda j: (j.modify_time, j.id), reverse=True)[:3]
        ),
        "processing_ids": frozenset(j.id for j in processing),
        "oldest_processing": oldest,
        "open": {j.id: j.create_time for j in unfinished},
    }


def gauges(snap: StoreSnapshot, open_jobs: Mapping[str, float]) -> dict[str, object]:
    return {
        "jobs_by_status": dict(snap.jobs_by_status),
        "failed": dict(snap.failed),
        "recent_failures": snap.recent_failures,
        "processing_ids": snap.processing_ids,
        "oldest_processing": dict(snap.oldest_processing),
        "open": dict(open_jobs),
    }


@st.composite
def jobs(draw: st.DrawFn, now: float) -> Job:
    created = now - draw(st.sampled_from([0.0, 5.0, 100.0, LOOKBACK - 1, LOOKBACK, 900.0, 5000.0]))
    status = draw(st.sampled_from([PROCESSING, SUCCEEDED, FAILED, "Rollbacked"]))
    return Job(
        id=draw(st.sampled_from(IDS)),
        api_name=draw(st.sampled_from(["CreateListener", "DeleteAcl"])),
        operate_type="Create",
        resource_type="listener",
        resource_id="lsn-1",
        status=status,
        error_code=draw(st.sampled_from(["", "E1", "E2"])) if status == FAILED else "",
        error_message="",
        create_time=created,
        modify_time=created + draw(st.sampled_from([0.0, 1.0, 30.0])),
    )


@st.composite
def updates(draw: st.DrawFn) -> list[tuple[float, list[Job], list[str], bool]]:
    steps = []
    now = T0
    for _ in range(draw(st.integers(1, 12))):
        # Forward mostly, sometimes far, sometimes a clock step back.
        now += draw(st.sampled_from([1.0, 30.0, 400.0, 2000.0, -50.0, -700.0]))
        observed = draw(st.lists(jobs(now), max_size=6))
        looked_up = draw(st.lists(st.sampled_from(IDS), max_size=4, unique=True))
        steps.append((now, observed, looked_up, draw(st.booleans())))
    return steps


@pytest.mark.slow  # seconds of CPU: left out of `make check`, run by `make test`
@settings(max_examples=300, deadline=None)
@given(steps=updates())
def test_window_gauges_equal_a_recount_after_every_update(
    steps: list[tuple[float, list[Job], list[str], bool]],
) -> None:
    store = JobStore(LOOKBACK, recent_failures=3, processing_max_age=LOOKBACK * 2)
    for now, observed, looked_up, complete in steps:
        store.update(observed, looked_up, now, complete=complete)
        assert gauges(store.snapshot(), store.open_jobs()) == recount(store, now)


def test_a_restored_store_counts_its_window_again() -> None:
    store = JobStore(LOOKBACK, recent_failures=3)
    job = Job("j1", "CreateListener", "Create", "listener", "l", FAILED, "E", "", T0, T0 + 1)
    store.update([job], [], T0 + 2)
    again = JobStore(LOOKBACK, recent_failures=3)
    again.restore(store.export(), T0 + 3)
    assert gauges(again.snapshot(), again.open_jobs()) == recount(again, T0 + 3)
    assert dict(again.snapshot().failed) == {("listener", "CreateListener", "E"): 1}


def test_a_job_listed_again_with_an_earlier_create_time_leaves_the_window_by_it() -> None:
    # CreateTime never changes at ALB, but the gauges must not depend on it.
    store = JobStore(LOOKBACK, recent_failures=3)
    # Processing: held (and re-checked) after it leaves the window, not pruned.
    first = Job(
        "j1", "CreateListener", "Create", "listener", "l", PROCESSING, "", "", T0 + 100, T0 + 101
    )
    store.update([first], [], T0 + 102)
    store.update([replace(first, create_time=T0 + 10)], [], T0 + 103, complete=False)
    now = T0 + 50 + LOOKBACK  # the window starts between the two CreateTimes
    store.update([], [], now, complete=False)
    assert gauges(store.snapshot(), store.open_jobs()) == recount(store, now)
    assert dict(store.snapshot().jobs_by_status) == {}
