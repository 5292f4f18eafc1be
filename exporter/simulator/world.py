"""Simulated time and the regions' job sets: arrivals, retention, the listing order, and the
explicit job control tests use (upsert, update, remove)."""

from __future__ import annotations

import bisect
import math
import random
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from exporter.simulator.jobs import (
    API_FIELDS,
    Region,
    SimJob,
    generate,
    listing_order,
    new_job_id,
    new_resource_id,
)
from exporter.simulator.messages import REGION_RE
from exporter.wire import FAILED, PROCESSING, SUCCEEDED

_PRUNE_INTERVAL_MS = 60_000


class SimClock:
    """The simulated time: the injected clock plus an offset, or a frozen instant."""

    def __init__(self, lock: threading.RLock, clock: Callable[[], float]) -> None:
        self.lock = lock  # the simulator's one lock, which the world shares
        self._clock = clock
        self._offset = 0.0
        self._frozen_at: float | None = None

    def now(self) -> float:
        """The simulated time in Unix seconds (what the jobs' status is computed at)."""
        with self.lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return self._clock() + self._offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def freeze(self) -> None:
        """Stop simulated time where it is now (until `unfreeze()`)."""
        with self.lock:
            self._frozen_at = self.now()

    def unfreeze(self) -> None:
        """Let simulated time run again, continuing from the frozen instant."""
        with self.lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - self._clock()
                self._frozen_at = None

    @property
    def frozen(self) -> bool:
        with self.lock:
            return self._frozen_at is not None

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (jobs arrive and finish as if that time had passed)."""
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError("advance() takes a finite number of seconds >= 0")
        with self.lock:
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds


class World:
    """Every region's jobs, created on first use and brought up to the simulated now
    whenever looked at. The caller holds the lock (the clock's) around `state` and `listing`."""

    def __init__(
        self,
        time: SimClock,
        regions: Sequence[str],
        *,
        seed: int,
        jobs_per_minute: float,
        history_ms: int,
        retention_ms: int,
    ) -> None:
        self._time = time
        self._lock = time.lock
        self._seed = seed
        self.jobs_per_minute = jobs_per_minute
        self._history_ms = history_ms
        # Generated jobs older than this are forgotten (the real retention is unknown).
        self._retention_ms = retention_ms
        self._explicit_rng = random.Random(f"{seed}/explicit")
        self.regions: dict[str, Region] = {}
        self.default_region = self.check_region(regions[0])
        # The regions it was built with: where ALB is "offered" (DescribeRegions).
        self.configured = tuple(regions)
        for region in regions:
            self.state(self.check_region(region))

    @staticmethod
    def check_region(region: str) -> str:
        if not isinstance(region, str) or not REGION_RE.match(region):
            raise ValueError(f"not a region id: {region!r}")
        return region

    def state(self, region: str) -> Region:
        """The region's state, created on first use and brought up to the simulated now."""
        now_ms = self._time.now_ms()
        state = self.regions.get(region)
        if state is None:
            # Seeded by seed and name: a region's jobs do not depend on which others exist.
            rng = random.Random(f"{self._seed}/{region}")
            state = Region(region, rng, now_ms - self._history_ms)
            state.next_arrival_ms += self._gap_ms(rng)
            self.regions[region] = state
        self._evolve(state, now_ms)
        return state

    def _gap_ms(self, rng: random.Random) -> int:
        if self.jobs_per_minute <= 0:
            return sys.maxsize
        # Arrivals are a Poisson process: exponential gaps with the configured mean rate.
        return max(1, int(rng.expovariate(self.jobs_per_minute / 60_000.0)))

    def _evolve(self, state: Region, now_ms: int) -> None:
        # Arrivals are drawn in order from the region's own RNG, so the job set at a given
        # simulated time is the same however often (or rarely) it was looked at.
        while state.next_arrival_ms <= now_ms:
            job = generate(state, state.next_arrival_ms)
            state.jobs[job.id] = job
            state.listing = None
            state.next_arrival_ms += self._gap_ms(state.rng)
        if now_ms - state.last_prune_ms >= _PRUNE_INTERVAL_MS:
            state.last_prune_ms = now_ms
            horizon = now_ms - self._retention_ms
            for job_id in [j.id for j in state.jobs.values() if j.create_ms < horizon]:
                if not state.jobs[job_id].explicit:
                    del state.jobs[job_id]
                    state.listing = None

    def listing(self, state: Region) -> tuple[list[SimJob], list[int]]:
        """The region's jobs in listing order (future ones included) and their negated
        CreateTimes. Sorted once per change of the job set, not per page: the order does not
        depend on the simulated time, only a job's status does, and that is rendered per
        page (a 100k-job page-through would otherwise sort 100k jobs a thousand times)."""
        if state.listing is None:
            state.listing = sorted(state.jobs.values(), key=listing_order)
            state.listing_keys = [-j.create_ms for j in state.listing]
        return state.listing, state.listing_keys

    def jobs(self, region: str | None = None) -> list[dict[str, Any]]:
        """Every job of the region as the API would show it now, in listing order."""
        with self._lock:
            state = self.state(self.check_region(region or self.default_region))
            now_ms = self._time.now_ms()
            listing, keys = self.listing(state)
            # Newest first: the jobs created by now are a suffix.
            return [j.view(now_ms) for j in listing[bisect.bisect_left(keys, -now_ms) :]]

    def upsert_job(self, region: str, **fields: Any) -> dict[str, Any]:
        """See `Simulator.upsert_job`."""
        unknown = sorted(set(fields) - set(API_FIELDS))
        if unknown:
            raise ValueError(f"unknown job field(s) {unknown}; known: {list(API_FIELDS)}")
        for name in ("CreateTime", "ModifyTime"):
            if name in fields and (
                not isinstance(fields[name], int) or isinstance(fields[name], bool)
            ):
                raise ValueError(f"{name} must be an int (epoch milliseconds)")
        for name in ("Id", "ApiName", "OperateType", "ResourceType", "ResourceId", "Status"):
            if name in fields and not (isinstance(fields[name], str) and fields[name]):
                raise ValueError(f"{name} must be a non-empty string")
        for name in ("ErrorCode", "ErrorMessage"):
            if fields.get(name) is not None and not isinstance(fields[name], str):
                raise ValueError(f"{name} must be a string")
        status = fields.get("Status")
        if status is not None and status not in (PROCESSING, SUCCEEDED, FAILED):
            raise ValueError(f"Status must be {PROCESSING}, {SUCCEEDED} or {FAILED}")
        with self._lock:
            state = self.state(self.check_region(region))
            now_ms = self._time.now_ms()
            job_id = fields.get("Id") or new_job_id(self._explicit_rng)
            old = state.jobs.get(job_id)
            if old is None:
                resource_type = fields.get("ResourceType", "loadbalancer")
                job = SimJob(
                    id=job_id,
                    api_name="CreateLoadBalancer",
                    operate_type="Create",
                    resource_type=resource_type,
                    resource_id=new_resource_id(self._explicit_rng, resource_type),
                    create_ms=now_ms,
                    finish_ms=None,
                    explicit=True,
                )
            else:
                job = replace(old, explicit=True)
            job.api_name = fields.get("ApiName", job.api_name)
            job.operate_type = fields.get("OperateType", job.operate_type)
            job.resource_type = fields.get("ResourceType", job.resource_type)
            job.resource_id = fields.get("ResourceId", job.resource_id)
            job.create_ms = fields.get("CreateTime", job.create_ms)
            if "ErrorCode" in fields:
                job.error_code = fields["ErrorCode"]
            if "ErrorMessage" in fields:
                job.error_message = fields["ErrorMessage"]
            if status == PROCESSING:
                job.finish_ms = None
            elif status is not None:
                finished = old is not None and old.status(now_ms) != PROCESSING
                job.outcome = status
                job.finish_ms = fields.get(
                    "ModifyTime", job.finish_ms if finished and job.finish_ms else now_ms
                )
            elif "ModifyTime" in fields:
                job.finish_ms = fields["ModifyTime"]
            if job.finish_ms is not None and job.finish_ms < job.create_ms:
                raise ValueError("ModifyTime must not be before CreateTime")
            state.jobs[job.id] = job
            state.listing = None
            return job.view(now_ms)

    def update_job(self, region: str, job_id: str, **fields: Any) -> dict[str, Any]:
        """`upsert_job` of a job that must exist already (KeyError if unknown)."""
        with self._lock:
            if job_id not in self.state(self.check_region(region)).jobs:
                raise KeyError(job_id)
            return self.upsert_job(region, Id=job_id, **fields)

    def remove_job(self, region: str, job_id: str) -> None:
        """Forget a job (as if retention dropped it); KeyError if unknown."""
        with self._lock:
            state = self.state(self.check_region(region))
            del state.jobs[job_id]
            state.listing = None
