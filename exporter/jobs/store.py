"""The per-target job store.

The store turns successive ListAsynJobs refreshes into the state the metrics are built
from: window gauges, counters that count each job once ever, Processing-job tracking,
and an immutable snapshot that scrapes read without locking.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TypeVar

from exporter.config import Config
from exporter.config.model import DEFAULT_DURATION_BUCKETS
from exporter.jobs.model import ApiKey, DurationKey, ErrorKey, Job, StatusKey
from exporter.jobs.snapshot import (
    Exemplar,
    Histogram,
    StoreSnapshot,
    StoreState,
    empty,
    frozen,
    newest,
)
from exporter.jobs.window import Window
from exporter.wire import FAILED, PROCESSING, TERMINAL

# The config's default (written once, in exporter.config.model, with why).
DEFAULT_PROCESSING_MAX_AGE = Config.processing_max_age

K = TypeVar("K")
V = TypeVar("V")


def dedupe(observed: Iterable[Job]) -> dict[str, Job]:
    """One version per id: the newest ModifyTime; on a tie a terminal version beats
    Processing (paging over a changing list can return a job twice)."""
    by_id: dict[str, Job] = {}
    for job in observed:
        current = by_id.get(job.id)
        if current is None or _newer(job, current):
            by_id[job.id] = job
    return by_id


def _newer(candidate: Job, current: Job) -> bool:
    if candidate.modify_time != current.modify_time:
        return candidate.modify_time > current.modify_time
    return candidate.terminal and not current.terminal


def _duration(job: Job) -> float:
    # Clock skew between ALB hosts can put ModifyTime before CreateTime.
    return max(0.0, job.modify_time - job.create_time)


class JobStore:
    """The job state of one account x region.

    `update` is called by one thread at a time (the refresher's single flight; a lock
    makes a violation harmless). `snapshot`, `processing_ids` and `open_jobs` may be called
    from any thread: they read the last published snapshot, which is replaced in one
    reference assignment, so a reader never sees half an update.

    An update is either *complete* (a full listing of the lookback window plus lookups by
    id: jobs of the window it does not return leave the gauges) or *incremental* (only
    what changed: jobs held from earlier updates stay in the gauges while they are within
    the window). The window itself is applied here, by CreateTime, whatever the API's
    BeginTime filters on.

    Counting rules (SPEC "Counter rules") hold by construction, through two horizons that
    only ever move forward and one writer at a time:

    * `floor`, the newest window start seen (`now - lookback` of the newest update, but
      never past the newest CreateTime held): a job never seen before that was created
      before it is ignored, because it may be one the store counted and forgot (see
      pruning). It never moves back, so a wall-clock step backwards cannot re-admit
      pruned jobs as new.
    * `counting_since`, the time of the first update ever (kept in the state file): what
      that first update finds terminal is history, and later a job never seen before and
      already terminal is counted if it finished (ModifyTime) at or after it. So a start
      never fakes a burst, a job the API lists late is counted or not by when it
      finished, and a restart with the state file is just a long gap: the jobs created
      and finished while down are counted.
    * A job is counted once, when it is first seen terminal: held as not terminal before,
      or never seen (by the rule above).
    * Updates carry a ticket from `begin()`, taken when the refresh started; an update
      whose ticket is older than the last one applied is discarded whole. A reload that
      hands the store to a new target while the old one's refresh is in flight cannot
      apply an older view over a newer one.
    * A job seen Processing is tracked by id until it is seen terminal, vanishes (it was
      looked up by id and not returned: counted in vanished_total) or was created more
      than `processing_max_age` ago (given up, not counted as vanished).
    * Once known terminal, a job stays terminal: a later stale Processing version from
      an eventually consistent API is ignored, also for the gauges.
    * A terminal job is forgotten once its CreateTime leaves the window (it can no
      longer change anything: see the third rule), so memory is bounded by the window's
      jobs plus the Processing jobs tracked.
    """

    def __init__(
        self,
        lookback: float,
        recent_failures: int,
        duration_buckets: Iterable[float] = DEFAULT_DURATION_BUCKETS,
        processing_max_age: float = DEFAULT_PROCESSING_MAX_AGE,
    ) -> None:
        if lookback <= 0:
            raise ValueError("lookback must be positive")
        if recent_failures < 0:
            raise ValueError("recent_failures must not be negative")
        if processing_max_age <= 0:
            raise ValueError("processing_max_age must be positive")
        bounds = _bounds(duration_buckets)
        self._lookback = float(lookback)
        self._recent_failures = recent_failures
        self._max_age = max(float(processing_max_age), self._lookback)
        self._bounds = bounds
        self._update_lock = threading.Lock()
        self._floor: float | None = None
        self._newest: float | None = None  # the newest CreateTime ever held
        self._counting_since: float | None = None
        self._priming = False  # within the first update ever
        self._tickets = 0  # the last ticket handed out by begin()
        self._applied = 0  # the ticket of the last update applied
        self._recovered = 0
        self._counted: list[Job] = []  # what the update under way counted
        self._jobs: dict[str, Job] = {}  # the latest version of every id held in memory
        self._visible: set[str] = set()  # ids shown in the gauges while within the window
        self._unfinished: dict[str, Job] = {}  # the held jobs not terminal
        self._window = Window()  # what the gauges count (visible, within the window)
        self._touched: set[str] = set()  # ids changed (version, visibility) since a publish
        self._finished: dict[StatusKey, int] = {}
        self._failures: dict[ErrorKey, int] = {}
        self._finished_exemplars: dict[StatusKey, Exemplar] = {}
        self._failures_exemplars: dict[ErrorKey, Exemplar] = {}
        self._vanished: dict[ApiKey, int] = {}
        self._durations: dict[DurationKey, Histogram] = {}
        self._snapshot = StoreSnapshot()
        self._open: Mapping[str, float] = empty()

    @property
    def lookback(self) -> float:
        return self._lookback

    def set_processing_max_age(self, seconds: float) -> None:
        """Apply a reloaded `processing_max_age` to a store kept across the reload; the
        next update prunes by it."""
        if seconds <= 0:
            raise ValueError("processing_max_age must be positive")
        self._max_age = max(float(seconds), self._lookback)

    def set_duration_buckets(self, buckets: Iterable[float]) -> None:
        """Apply reloaded `metrics.duration_buckets` to a store kept across the reload: the
        histograms are re-bucketed (`Histogram.rebucket`), counts and sums kept."""
        bounds = _bounds(buckets)
        with self._update_lock:
            if bounds == self._bounds:
                return
            self._bounds = bounds
            self._durations = {k: h.rebucket(bounds) for k, h in self._durations.items()}
            self._snapshot = replace(
                self._snapshot,
                durations=frozen({k: h.snapshot() for k, h in self._durations.items()}),
            )

    def snapshot(self) -> StoreSnapshot:
        return self._snapshot

    def processing_ids(self) -> set[str]:
        """Ids of the jobs tracked as Processing."""
        return set(self._snapshot.processing_ids)

    def open_jobs(self) -> Mapping[str, float]:
        """Id -> CreateTime of every job held that is not terminal: the ones to re-check."""
        return self._open

    def begin(self) -> int:
        """A ticket for a refresh that starts now; pass it to `update`."""
        with self._update_lock:
            self._tickets += 1
            return self._tickets

    def update(
        self,
        observed: Iterable[Job],
        looked_up: Collection[str],
        now: float,
        *,
        complete: bool = True,
        ticket: int | None = None,
        resync_before: float | None = None,
    ) -> tuple[Job, ...] | None:
        """Apply one successful refresh taken at `now`: the jobs it counted (for the job
        events), or None if it was superseded and changed nothing.

        `observed` is every job the refresh returned (listing plus lookups by id);
        `looked_up` the ids that were looked up by id; `complete` whether the listing
        covered the whole window (see the class docstring); `ticket` from `begin()` when
        the refresh started (None: a ticket taken now). On a complete resync,
        `resync_before` is the CreateTime the incremental listings had covered: jobs
        never seen that were created before it were missed by them (`recovered_total`).
        """
        with self._update_lock:
            if ticket is None:
                self._tickets += 1
                ticket = self._tickets
            if ticket < self._applied:
                return None
            self._applied = ticket
            self._counted = []
            # The first update ever primes: what it finds terminal was so before we looked.
            self._priming = self._counting_since is None
            floor = self._advance(now)
            returned = self._effective(self._relevant(dedupe(observed), floor))
            self._note_newest(returned.values())
            for job in returned.values():
                if complete and resync_before is not None and job.create_time < resync_before:
                    self._recovered += job.id not in self._jobs
                self._ensure_series(job)
                self._apply(job)
            self._vanish(looked_up, returned)
            self._touched.update(returned)
            if complete:
                self._touched.update(self._visible - returned.keys())
                self._visible = set(returned)
            else:
                self._visible.update(returned)
            self._prune(now)
            self._publish(now)
            counted, self._counted = tuple(self._counted), []
            return counted

    def _advance(self, now: float) -> float:
        """Move the horizons forward for an update at `now`; the floor to apply."""
        floor = self._advance_floor(now)
        if self._counting_since is None:
            # At the API's resolution (ms): a job that finished in the same millisecond as
            # the first listing was not "already terminal" when that listing began.
            self._counting_since = math.floor(now * 1000) / 1000
        return floor

    def _relevant(self, returned: dict[str, Job], floor: float) -> dict[str, Job]:
        return {
            job_id: job
            for job_id, job in returned.items()
            if job.create_time >= floor or job_id in self._jobs
        }

    def _effective(self, returned: dict[str, Job]) -> dict[str, Job]:
        """Known terminal versions override a stale Processing one."""
        effective = dict(returned)
        for job_id, job in returned.items():
            known = self._jobs.get(job_id)
            if known is not None and known.terminal and not job.terminal:
                effective[job_id] = known
        return effective

    def _ensure_series(self, job: Job) -> None:
        # Label sets get their zero series as soon as they are known, so that
        # increase() in PromQL sees the first failure.
        rt, api, op = job.resource_type, job.api_name, job.operate_type
        for status in TERMINAL:
            self._finished.setdefault((status, rt, api, op), 0)
            if (status, rt, api) not in self._durations:
                self._durations[(status, rt, api)] = Histogram(self._bounds)
        self._vanished.setdefault((rt, api), 0)
        if job.status == FAILED:
            self._failures.setdefault((rt, api, job.error_code), 0)

    def _apply(self, job: Job) -> None:
        previous = self._jobs.get(job.id)
        if job.terminal and (
            not previous.terminal if previous is not None else self._finished_while_counting(job)
        ):
            self._count(job)
        # `job` is never an older status than `previous` here (see _effective), so
        # overwriting keeps terminal jobs terminal. Undocumented statuses are shown in the
        # gauges and re-checked like Processing, but neither counted nor reported stuck.
        self._jobs[job.id] = job
        if job.status in TERMINAL:
            self._unfinished.pop(job.id, None)
        else:
            self._unfinished[job.id] = job

    def _finished_while_counting(self, job: Job) -> bool:
        since = self._counting_since
        return not self._priming and since is not None and job.modify_time >= since

    def _count(self, job: Job) -> None:
        self._counted.append(job)
        rt, api = job.resource_type, job.api_name
        # The exemplars are kept here, where a job is counted, so each one is a job its
        # series counted (SPEC "Exemplars").
        one = Exemplar(job.id, 1.0, job.modify_time)
        finished = (job.status, rt, api, job.operate_type)
        self._finished[finished] += 1
        self._finished_exemplars[finished] = newest(self._finished_exemplars.get(finished), one)
        if job.status == FAILED:
            failure = (rt, api, job.error_code)
            self._failures[failure] += 1
            self._failures_exemplars[failure] = newest(self._failures_exemplars.get(failure), one)
        duration = _duration(job)
        self._durations[(job.status, rt, api)].observe(
            duration, Exemplar(job.id, duration, job.modify_time)
        )

    def _vanish(self, looked_up: Collection[str], returned: Mapping[str, Job]) -> None:
        for job_id in looked_up:
            known = self._jobs.get(job_id)
            if job_id in returned or known is None or known.terminal:
                continue
            if known.status == PROCESSING:
                self._vanished[(known.resource_type, known.api_name)] += 1
            self._forget(job_id)

    def _forget(self, job_id: str) -> None:
        del self._jobs[job_id]
        self._visible.discard(job_id)
        self._unfinished.pop(job_id, None)
        self._touched.add(job_id)

    def _window_start(self, now: float) -> float:
        # The window by our clock, but never reaching back before the floor: after a clock
        # step back, jobs that left the window stay out.
        start = now - self._lookback
        return start if self._floor is None else max(start, self._floor)

    def _prune(self, now: float) -> None:
        start = self._window_start(now)
        give_up = start + self._lookback - self._max_age
        stale = [
            job
            for job in self._jobs.values()
            if job.create_time < (start if job.terminal else give_up)
        ]
        for job in stale:
            self._forget(job.id)
        forgotten = max((job.create_time for job in stale if job.terminal), default=None)
        if forgotten is not None:
            # Never admit a forgotten job again, even if a listing returns it: it may have
            # been counted. (Forgotten jobs were held, so this stays below `_newest`.)
            barrier = math.nextafter(forgotten, math.inf)
            self._floor = barrier if self._floor is None else max(barrier, self._floor)

    def _publish(self, now: float) -> None:
        self._update_window(self._window_start(now))
        window = self._window
        jobs = self._jobs
        unfinished = list(self._unfinished.values())
        processing = [job for job in unfinished if job.status == PROCESSING]
        self._open = MappingProxyType({job.id: job.create_time for job in unfinished})
        last = self._snapshot
        # A mapping equal to the last snapshot's is that one again: renders of unchanged
        # families can then be told by identity (and nothing is copied).
        self._snapshot = StoreSnapshot(
            jobs_by_status=_same(last.jobs_by_status, window.by_status),
            failed=_same(last.failed, window.by_error),
            finished_total=_same(last.finished_total, self._finished),
            failures_total=_same(last.failures_total, self._failures),
            finished_exemplars=_same(last.finished_exemplars, self._finished_exemplars),
            failures_exemplars=_same(last.failures_exemplars, self._failures_exemplars),
            vanished_total=_same(last.vanished_total, self._vanished),
            durations=_same(last.durations, {k: h.snapshot() for k, h in self._durations.items()}),
            oldest_processing=_same(last.oldest_processing, _oldest(processing)),
            recent_failures=_same_tuple(
                last.recent_failures, window.newest_failures(self._recent_failures)
            ),
            processing_ids=frozenset(job.id for job in processing),
            jobs_tracked=len(jobs),
            recovered_total=self._recovered,
            updated_at=now,
            primed=self._counting_since is not None,
        )

    def _update_window(self, start: float) -> None:
        """Bring the window gauges' jobs to (visible jobs created at or after `start`):
        by the jobs this update touched, or from scratch after the start moved back."""
        jobs, visible, touched = self._jobs, self._visible, self._touched
        self._touched = set()
        if not self._window.advance(start):
            held = (jobs[i] for i in visible)
            self._window.rebuild((job for job in held if job.create_time >= start), start)
            return
        for job_id in touched:
            job = jobs.get(job_id)
            if job is not None and job_id in visible and job.create_time >= start:
                self._window.put(job)
            else:
                self._window.drop(job_id)

    # --- persistence -----------------------------------------------------------------------

    def export(self) -> StoreState:
        """A consistent copy of what `restore` needs (taken between updates)."""
        with self._update_lock:
            return StoreState(
                jobs=tuple(self._jobs.values()),
                visible=frozenset(self._visible),
                finished_total=dict(self._finished),
                failures_total=dict(self._failures),
                vanished_total=dict(self._vanished),
                bounds=self._bounds,
                durations={k: h.raw() for k, h in self._durations.items()},
                floor=self._floor,
                counting_since=self._counting_since,
                recovered_total=self._recovered,
                finished_exemplars=dict(self._finished_exemplars),
                failures_exemplars=dict(self._failures_exemplars),
                duration_exemplars={
                    k: held for k, h in self._durations.items() if (held := h.exemplars())
                },
            )

    def restore(
        self, state: StoreState, now: float, *, counting_since: float | None = None
    ) -> None:
        """Continue from `state` (before the first update), as after a long gap between
        two refreshes: the horizons continue from the saved ones. `counting_since` stands
        in for a state written before it was kept (the time that state was saved).

        Histograms saved under other buckets (an older version's defaults, a changed
        `metrics.duration_buckets`) are re-bucketed, so counters are never dropped for it.
        """
        with self._update_lock:
            if self._counting_since is not None:
                raise ValueError("restore() must come before the first update")
            self._floor = state.floor
            self._counting_since = (
                state.counting_since if state.counting_since is not None else counting_since
            )
            self._recovered = state.recovered_total
            self._jobs = {job.id: job for job in state.jobs}
            self._visible = {job_id for job_id in state.visible if job_id in self._jobs}
            self._unfinished = {i: job for i, job in self._jobs.items() if not job.terminal}
            self._window = Window()  # built from scratch by the publish below
            self._finished = dict(state.finished_total)
            self._failures = dict(state.failures_total)
            self._finished_exemplars = dict(state.finished_exemplars)
            self._failures_exemplars = dict(state.failures_exemplars)
            self._vanished = dict(state.vanished_total)
            self._durations = {
                key: Histogram.from_raw(
                    state.bounds, counts, total, state.duration_exemplars.get(key, ())
                ).rebucket(self._bounds)
                for key, (counts, total) in state.durations.items()
            }
            self._note_newest(self._jobs.values())
            self._advance_floor(now)
            self._prune(now)
            self._publish(now)

    def _note_newest(self, held: Iterable[Job]) -> None:
        newest = max((job.create_time for job in held), default=None)
        if newest is not None:
            self._newest = newest if self._newest is None else max(newest, self._newest)

    def _advance_floor(self, now: float) -> float:
        # The window start never moves back, whatever the wall clock does; and it never
        # moves past the newest CreateTime ever held (ALB's clock), so that a step of our
        # clock far forward and back cannot leave it in the future, dropping new jobs.
        # Before anything was held there is nothing to protect: it does not move at all.
        candidate = now - self._lookback
        if self._newest is None:
            return candidate if self._floor is None else self._floor  # nothing held yet
        candidate = min(candidate, self._newest)
        self._floor = candidate if self._floor is None else max(candidate, self._floor)
        return self._floor


def _bounds(buckets: Iterable[float]) -> tuple[float, ...]:
    return tuple(sorted({float(b) for b in buckets if b != float("inf")}))


def _same(last: Mapping[K, V], now: Mapping[K, V]) -> Mapping[K, V]:
    """`last` if `now` equals it, else a frozen copy of `now`."""
    return last if last == now else frozen(now)


def _same_tuple(last: tuple[Job, ...], now: tuple[Job, ...]) -> tuple[Job, ...]:
    return last if last == now else now


def _oldest(processing: Iterable[Job]) -> dict[ApiKey, float]:
    oldest: dict[ApiKey, float] = {}
    for job in processing:
        key = (job.resource_type, job.api_name)
        if key not in oldest or job.create_time < oldest[key]:
            oldest[key] = job.create_time
    return oldest
