"""Incremental refresh against the simulator: the exported job metrics of an incremental
target equal those of a target that re-pages the whole window, at the same instant.

Both targets use the real client over loopback HTTP against one in-process simulator whose
jobs evolve (arrivals, late-indexed arrivals, completions, failures, stuck and vanishing
jobs, duplicates and stale versions across pages), under both readings of what BeginTime
filters on (the real API's is unconfirmed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.signing import Credential, make_signer
from exporter.jobs.model import Job, JobQuery
from exporter.jobs.snapshot import StoreSnapshot
from exporter.jobs.store import JobStore
from exporter.jobs.target import CLOCK_TOLERANCE, RefreshPolicy, Target
from exporter.simulator import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    Simulator,
    SimulatorServer,
)
from exporter.wire import ACTION, API_VERSION, FAILED, PROCESSING, SUCCEEDED

REGION = "cn-hangzhou"
LOOKBACK = 3600.0
OVERLAP = 60.0
MAX_RECHECK = 600.0
MAX_AGE = 3 * 3600.0
FIELDS = (
    "jobs_by_status",
    "failed",
    "finished_total",
    "failures_total",
    "vanished_total",
    "durations",
    "oldest_processing",
    "recent_failures",
    "processing_ids",
    "jobs_tracked",
)


class CountingSource:
    """The real client, with the number of listings and HTTP calls made through it."""

    def __init__(self, client: ListAsynJobsClient, sim: Simulator) -> None:
        self.client = client
        self.sim = sim
        self.queries: list[JobQuery] = []
        self.listed: list[list[Job]] = []  # what each query returned

    def list_jobs(self, query: JobQuery) -> list[Job]:
        self.queries.append(query)
        self.listed.append(self.client.list_jobs(query))
        return self.listed[-1]


@dataclass
class Pair:
    sim: Simulator
    incremental: Target
    full: Target
    inc_source: CountingSource
    full_source: CountingSource
    times: list[float]

    def refresh(self) -> None:
        self.times.append(self.sim.now())
        self.incremental.refresh()
        self.full.refresh()
        assert self.incremental.status().up, self.incremental.status().last_error
        assert self.full.status().up, self.full.status().last_error


def exported(snap: StoreSnapshot) -> dict[str, Any]:
    return {name: _plain(getattr(snap, name)) for name in FIELDS}


def _plain(value: Any) -> Any:
    if hasattr(value, "items"):
        return dict(value.items())
    return value


def _client(url: str, page_size: int) -> ListAsynJobsClient:
    signer = make_signer(
        "v3",
        lambda: Credential(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET),
        action=ACTION,
        version=API_VERSION,
    )
    return ListAsynJobsClient(
        f"{url}/{REGION}/", signer, page_size=page_size, max_pages=10_000, timeout=10
    )


@contextmanager
def pair(
    seed: int, field: str, policy: RefreshPolicy, page_size: int = 10, rate: float = 0.5
) -> Iterator[Pair]:
    sim = Simulator(
        regions=(REGION,), seed=seed, jobs_per_minute=rate, history_seconds=2 * LOOKBACK
    )
    sim.freeze()
    sim.set_faults(begin_time_field=field)
    with SimulatorServer(sim) as server:
        inc_client = _client(server.url, page_size)
        full_client = _client(server.url, page_size)
        sources = CountingSource(inc_client, sim), CountingSource(full_client, sim)
        targets = [
            Target(
                "acct",
                REGION,
                source,
                JobStore(LOOKBACK, 5, processing_max_age=MAX_AGE),
                lookback=LOOKBACK,
                policy=p,
                clock=sim.now,
            )
            for source, p in zip(sources, (policy, RefreshPolicy(incremental=False)), strict=True)
        ]
        try:
            yield Pair(sim, targets[0], targets[1], *sources, times=[])
        finally:
            inc_client.close()
            full_client.close()


# --- the evolution ---------------------------------------------------------------------

Op = tuple[Any, ...]

ops = st.one_of(
    st.tuples(st.just("advance"), st.integers(1, 900)),
    # Listed up to `overlap` after its CreateTime (a late-indexed job).
    st.tuples(st.just("arrive"), st.integers(0, int(OVERLAP)), st.booleans()),
    # Created before the window: never seen, whatever BeginTime filters on.
    st.tuples(st.just("arrive_old"), st.sampled_from([PROCESSING, SUCCEEDED, FAILED])),
    st.tuples(st.just("finish"), st.integers(0, 1000), st.sampled_from([SUCCEEDED, FAILED])),
    st.tuples(st.just("vanish"), st.integers(0, 1000)),
    st.tuples(
        st.just("pages"),
        st.sampled_from(["", "duplicate_across_pages", "status_flip_between_pages"]),
    ),
)


def apply(sim: Simulator, op: Op) -> None:
    now_ms = int(sim.now() * 1000)
    kind = op[0]
    if kind == "advance":
        sim.advance(op[1])
    elif kind == "arrive":
        fields: dict[str, Any] = {"CreateTime": now_ms - op[1] * 1000}
        if op[2]:
            fields.update(Status=FAILED, ErrorCode="Conflict.Lock", ModifyTime=now_ms)
        sim.upsert_job(REGION, **fields)
    elif kind == "arrive_old":
        create = now_ms - int((LOOKBACK + 300) * 1000)
        sim.upsert_job(REGION, CreateTime=create, Status=op[1], ModifyTime=now_ms)
    elif kind in ("finish", "vanish"):
        processing = [j["Id"] for j in sim.jobs(REGION) if j["Status"] == PROCESSING]
        if not processing:
            return
        job_id = processing[op[1] % len(processing)]
        if kind == "vanish":
            sim.remove_job(REGION, job_id)
        else:
            code = "ResourceNotFound.Listener" if op[2] == FAILED else None
            sim.set_status(REGION, job_id, op[2], error_code=code)
    elif kind == "pages":
        sim.set_faults(
            duplicate_across_pages=op[1] == "duplicate_across_pages",
            status_flip_between_pages=op[1] == "status_flip_between_pages",
        )


def assert_not_ahead(inc: StoreSnapshot, full: StoreSnapshot) -> None:
    """While re-checks lag, the incremental target may count a job later, never twice."""
    for name in ("finished_total", "failures_total", "vanished_total"):
        for key, value in getattr(inc, name).items():
            assert value <= getattr(full, name).get(key, 0), (name, key)


def over_op_sequences(test: Callable[[str, int, list[Op]], None]) -> Callable[..., None]:
    """`test(field, seed, steps)` for both fields, each over 25 random sequences of ops
    (slow): how every property of this module is run."""
    sequences = given(seed=st.integers(0, 1000), steps=st.lists(ops, min_size=1, max_size=12))
    budget = settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    fields = pytest.mark.parametrize("field", ["CreateTime", "ModifyTime"])
    return pytest.mark.slow(fields(budget(sequences(test))))


@over_op_sequences
def test_incremental_equals_full_repage_after_every_refresh(
    field: str, seed: int, steps: list[Op]
) -> None:
    # Re-checks on every refresh (no back-off): equal at every instant.
    policy = RefreshPolicy(overlap=OVERLAP, full_resync_interval=1e9, recheck_age_fraction=0.0)
    with pair(seed, field, policy) as p:
        p.refresh()
        for op in steps:
            apply(p.sim, op)
            p.refresh()
            assert exported(p.incremental.snapshot()) == exported(p.full.snapshot()), op
        # The incremental target really listed only what it had not listed yet: from the
        # newest CreateTime its listings returned (ALB's clock, not ours), less the overlap,
        # never later than its previous refresh less the overlap.
        begins = begin_times(p)
        assert begins[0] == ms(p.times[0] - LOOKBACK)
        covered = p.times[0] - LOOKBACK
        for begin, listed, previous in zip(begins[1:], window_results(p), p.times, strict=False):
            # ...or, in a quiet spell, from its previous refresh less the clock tolerance.
            newest = [job.create_time for job in listed]
            covered = max([covered, *newest, previous - CLOCK_TOLERANCE])
            assert begin == ms(covered - OVERLAP)
            assert begin <= ms(previous - OVERLAP)


def begin_times(p: Pair) -> list[int]:
    return [q.begin_time_ms for q in p.inc_source.queries if q.begin_time_ms is not None]


def window_results(p: Pair) -> list[list[Job]]:
    source = p.inc_source
    return [r for q, r in zip(source.queries, source.listed, strict=True) if not q.job_ids]


def ms(seconds: float) -> int:
    return int(seconds * 1000)


@over_op_sequences
def test_backed_off_rechecks_lag_but_settle_to_the_full_repage(
    field: str, seed: int, steps: list[Op]
) -> None:
    policy = RefreshPolicy(
        overlap=OVERLAP,
        full_resync_interval=1e9,
        recheck_age_fraction=0.1,
        recheck_max_interval=MAX_RECHECK,
    )
    with pair(seed, field, policy) as p:
        p.refresh()
        for op in steps:
            apply(p.sim, op)
            p.refresh()
            assert_not_ahead(p.incremental.snapshot(), p.full.snapshot())
        # Once every held job was due, nothing is missing and nothing counted twice.
        p.sim.advance(MAX_RECHECK + 1)
        p.refresh()
        assert exported(p.incremental.snapshot()) == exported(p.full.snapshot())


def test_full_resync_runs_on_its_interval() -> None:
    policy = RefreshPolicy(overlap=OVERLAP, full_resync_interval=900.0)
    with pair(1, "CreateTime", policy) as p:
        for _ in range(7):
            p.refresh()
            p.sim.advance(300)
        # Refreshes at 0, 300, ..., 1800 s: complete at 0, 900 and 1800.
        complete = [i for i, b in enumerate(begin_times(p)) if b == ms(p.times[i] - LOOKBACK)]
        assert complete == [0, 3, 6]
