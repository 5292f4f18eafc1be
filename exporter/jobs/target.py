"""A target (one account x region): turns API listings into store updates.

`exporter.jobs.refresher` decides *when* a target refreshes. Knows nothing of httpx or
Prometheus: the API is reached through the `JobSource` protocol.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from exporter.config import Config, Filters
from exporter.errors import ExporterError
from exporter.jobs.failure_log import FailureLog
from exporter.jobs.model import Job, JobQuery
from exporter.jobs.snapshot import StoreSnapshot, StoreState
from exporter.jobs.store import JobStore
from exporter.wire import MAX_IDS_PER_CALL

log = logging.getLogger(__name__)

TargetKey = tuple[str, str]  # (account, region)

# A filter list longer than this is applied locally instead of on the wire.
_MAX_WIRE_RESOURCE_IDS = MAX_IDS_PER_CALL
# Ids per look-up call: the client splits JobIds.N lists into batches of this size.
JOB_IDS_PER_CALL = MAX_IDS_PER_CALL
# The config's defaults (written once, in exporter.config.model, with why).
DEFAULT_OVERLAP = Config.overlap
DEFAULT_FULL_RESYNC_INTERVAL = Config.full_resync_interval
# How far our wall clock may be off ALB's (a skew, or before an NTP step) without an
# incremental listing skipping jobs: the bar is steps of up to 10 minutes.
CLOCK_TOLERANCE = 600.0


# Told the jobs a refresh counted (the job events): account, region, jobs, refresh time.
CountedHook = Callable[[str, str, Sequence[Job], float], None]


class JobSource(Protocol):
    def list_jobs(self, query: JobQuery) -> list[Job]: ...


@dataclass(frozen=True)
class TargetStatus:
    tried: bool = False  # at least one refresh finished (well or badly)
    up: bool = False  # the last refresh succeeded
    last_success: float | None = None  # Unix time the data now served was fetched
    refresh_duration: float | None = None  # wall seconds of the last refresh
    last_error: str | None = None


def window_query(filters: Filters, begin_time_ms: int) -> JobQuery:
    """The listing for one refresh. Single-valued filters go on the wire; the rest are
    applied locally by `matches`, because the API takes one ResourceType / ApiName."""
    ids = filters.resource_ids
    return JobQuery(
        begin_time_ms=begin_time_ms,
        resource_type=filters.resource_types[0] if len(filters.resource_types) == 1 else None,
        api_name=filters.api_names[0] if len(filters.api_names) == 1 else None,
        resource_ids=ids if 0 < len(ids) <= _MAX_WIRE_RESOURCE_IDS else (),
    )


def matches(filters: Filters, job: Job) -> bool:
    return (
        (not filters.resource_types or job.resource_type in filters.resource_types)
        and (not filters.api_names or job.api_name in filters.api_names)
        and (not filters.resource_ids or job.resource_id in filters.resource_ids)
    )


@dataclass(frozen=True)
class RefreshPolicy:
    """How a target spends API calls (README "How it works").

    After one complete page-through of the window, a refresh lists only jobs since the
    previous refresh minus `overlap` (clock skew between us and ALB, jobs indexed late) and
    re-checks the jobs it holds as not terminal by id, each on a cadence that backs off
    with the job's age: every `recheck_age_fraction` of its age, at most every
    `recheck_max_interval` (0 fraction: every refresh). Every `full_resync_interval` a
    complete page-through heals whatever an incremental refresh could miss (jobs indexed
    later than `overlap`, terminal jobs dropped by the API). `incremental=False` pages the
    whole window every time.
    """

    incremental: bool = True
    overlap: float = DEFAULT_OVERLAP
    full_resync_interval: float = DEFAULT_FULL_RESYNC_INTERVAL
    recheck_age_fraction: float = 0.1
    recheck_max_interval: float = 600.0

    def recheck_interval(self, age: float) -> float:
        return min(self.recheck_max_interval, max(0.0, age) * self.recheck_age_fraction)


@dataclass(frozen=True)
class TargetState:
    """A target's refresh position, as persisted by `exporter.jobs.state`."""

    position: float | None  # the clock time of the last successful refresh
    last_full: float | None  # the clock time of the last complete page-through
    # The newest CreateTime (ALB's clock) the listings have covered; None in a file
    # written before it was kept (`position` stands in for it then).
    listed_to: float | None = None


class Target:
    """One account x region. `refresh()` never raises: failures become `status().up == False`."""

    def __init__(
        self,
        account: str,
        region: str,
        source: JobSource,
        store: JobStore,
        *,
        lookback: float,
        filters: Filters | None = None,
        policy: RefreshPolicy | None = None,
        clock: Callable[[], float] = time.time,
        status: TargetStatus | None = None,
        on_counted: CountedHook | None = None,
    ) -> None:
        """`status` carries over the status of the target this one replaces on a reload
        that keeps its store: readiness and `up` do not drop while the data is the same.
        `on_counted(account, region, jobs, now)` is told the jobs each refresh counted."""
        self.account = account
        self.region = region
        self.source = source
        self.store = store
        self._lookback = lookback
        self._filters = filters or Filters()
        self._policy = policy or RefreshPolicy()
        self._clock = clock
        self._status = status or TargetStatus()
        self._on_counted = on_counted
        self._failure_log = FailureLog(f"account={self.account} region={self.region}")
        # Held while the store and the position change together, so an export for the
        # state file never pairs a new position with old store content.
        self._state_lock = threading.Lock()
        self._position: float | None = None
        self._last_full: float | None = None
        # Incremental listings start from here minus `overlap`. It is in ALB's clock (the
        # newest CreateTime listed), not ours: a step or skew of our clock must not make
        # a listing start after jobs it has not seen yet.
        self._listed_to: float | None = None
        self._next_check: dict[str, float] = {}  # job id -> when to look it up again

    @property
    def key(self) -> TargetKey:
        return (self.account, self.region)

    def status(self) -> TargetStatus:
        return self._status

    def snapshot(self) -> StoreSnapshot:
        return self.store.snapshot()

    def export_state(self) -> tuple[TargetState, StoreState]:
        with self._state_lock:
            state = TargetState(self._position, self._last_full, self._listed_to)
            return state, self.store.export()

    def restore_state(self, target: TargetState, store: StoreState) -> None:
        """Continue from persisted state (before the first refresh); ValueError if unusable."""
        now = self._clock()
        with self._state_lock:
            self.store.restore(store, now, counting_since=target.position)
            self._position = target.position
            self._last_full = target.last_full
            self._listed_to = target.listed_to if target.listed_to is not None else target.position

    def refresh(self) -> None:
        started = time.monotonic()
        ticket = self.store.begin()
        now = self._clock()
        try:
            observed = self._fetch(now)
        except ExporterError as exc:
            self._failed(str(exc), f"{type(exc).__name__}:{getattr(exc, 'code', '')}", started)
            return
        except Exception as exc:  # a bug must not take the other targets or the scrape down
            log.exception("refresh of account=%s region=%s crashed", self.account, self.region)
            self._failed(f"internal error: {type(exc).__name__}", type(exc).__name__, started)
            return
        with self._state_lock:
            counted = self.store.update(
                observed.jobs,
                observed.looked_up,
                now,
                complete=observed.complete,
                ticket=ticket,
                resync_before=observed.resync_before,
            )
            if counted is None:
                # A newer refresh of the same store (a reload's new target) landed first:
                # this older view is dropped whole, and this target is being retired.
                log.debug("account=%s region=%s: superseded refresh dropped", *self.key)
                return
            self._position = now
            self._listed_to = observed.listed_to
            if observed.complete:
                self._last_full = now
        self._schedule(observed, now)
        if counted and self._on_counted is not None:
            try:
                self._on_counted(self.account, self.region, counted, now)
            except Exception:  # the events are a side output: the refresh itself succeeded
                log.exception("job events of account=%s region=%s failed", *self.key)
        self._failure_log.succeeded()
        self._status = TargetStatus(
            tried=True,
            up=True,
            last_success=now,
            refresh_duration=time.monotonic() - started,
        )

    def _complete_needed(self, now: float) -> bool:
        policy = self._policy
        return (
            not policy.incremental
            or self._position is None
            or self._last_full is None
            or now - self._last_full >= policy.full_resync_interval
            # A gap longer than the window: the delta would be the whole window anyway.
            or self._position - policy.overlap <= now - self._lookback
            # The clock went backwards: the position says nothing about what is new.
            or self._position > now
        )

    def _fetch(self, now: float) -> _Observed:
        complete = self._complete_needed(now)
        covered = self._listed_to
        begin = now - self._lookback
        if not complete:
            assert covered is not None
            begin = covered - self._policy.overlap
        listed = self.source.list_jobs(window_query(self._filters, int(begin * 1000)))
        listed_to = self._covered(now, begin, listed, None if complete else covered)
        jobs = [job for job in listed if matches(self._filters, job)]
        # Jobs held as not terminal that the listing did not return (older than the
        # listing, or dropped by the API) are looked up by id: all of them on a complete
        # refresh, the ones due on an incremental one.
        returned = {job.id for job in jobs}
        open_jobs = self.store.open_jobs()
        candidates = [job_id for job_id in open_jobs if job_id not in returned]
        recheck = sorted(candidates) if complete else self._due(candidates, now)
        if recheck:
            jobs.extend(self.source.list_jobs(JobQuery(job_ids=tuple(recheck))))
        # A complete resync after earlier listings: what it finds that was created before
        # they reached (less the overlap they re-read) is what they missed.
        resync_before = None
        if complete and covered is not None:
            resync_before = covered - self._policy.overlap
        return _Observed(jobs, recheck, complete, listed_to, resync_before)

    @staticmethod
    def _covered(now: float, begin: float, listed: list[Job], covered: float | None) -> float:
        """What a listing covered, by ALB's clock: its newest CreateTime, never behind what
        earlier listings covered. Two guards, both `CLOCK_TOLERANCE` wide: a CreateTime
        that far ahead of our clock is bogus and ignored (it would make later listings
        skip jobs); and the position follows our clock less that much, so a burst followed
        by a quiet spell is not re-read on every refresh until the next one."""
        newest = [job.create_time for job in listed if job.create_time <= now + CLOCK_TOLERANCE]
        earlier = [] if covered is None else [covered]
        return max([begin, *newest, now - CLOCK_TOLERANCE, *earlier])

    def _due(self, candidates: list[str], now: float) -> list[str]:
        """The candidates due for a look-up, topped up with the soonest-due others to fill
        the last batch: a call costs the same for 1 id as for 20. When every open job fits
        in one call they are all looked up on every refresh, so a small estate sees each
        status change on the next refresh for one call; only estates with more open jobs
        than that wait for the age-based cadence."""
        if len(candidates) <= JOB_IDS_PER_CALL:
            return sorted(candidates)
        due_at = {job_id: self._next_check.get(job_id, now) for job_id in candidates}
        due = [job_id for job_id, when in due_at.items() if when <= now]
        if not due:
            return []
        room = -len(due) % JOB_IDS_PER_CALL
        later = sorted((when, job_id) for job_id, when in due_at.items() if when > now)
        return sorted(due + [job_id for _, job_id in later[:room]])

    def _schedule(self, observed: _Observed, now: float) -> None:
        open_jobs = self.store.open_jobs()
        seen = {job.id for job in observed.jobs}
        seen.update(observed.looked_up)
        schedule = {}
        for job_id, created in open_jobs.items():
            when = self._next_check.get(job_id)
            if when is None or job_id in seen:
                when = now + self._policy.recheck_interval(now - created)
            schedule[job_id] = when
        self._next_check = schedule

    def _failed(self, error: str, kind: str, started: float) -> None:
        # kind: class and API code (messages differ per request); see FailureLog.
        self._failure_log.failed(error, kind)
        self._status = replace(
            self._status,
            tried=True,
            up=False,
            refresh_duration=time.monotonic() - started,
            last_error=error,
        )


@dataclass(frozen=True)
class _Observed:
    jobs: list[Job]
    looked_up: Collection[str]
    complete: bool
    listed_to: float  # see Target._listed_to
    resync_before: float | None
