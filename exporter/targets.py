"""Targets (one account x region each) and the single-flight, TTL-cached refresher.

A target turns API listings into store updates; the refresher decides *when*: a scrape
asks for fresh data, concurrent scrapes share one in-flight refresh per target, and a
refresh younger than `cache_ttl` is reused. Knows nothing of httpx or Prometheus: the
API is reached through the `JobSource` protocol.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Protocol

from cachetools import TTLCache

from exporter.config import Filters
from exporter.errors import ExporterError
from exporter.jobs import Job, JobQuery, JobStore, StoreSnapshot

log = logging.getLogger(__name__)

TargetKey = tuple[str, str]  # (account, region)

# A filter list longer than this is applied locally instead of on the wire.
_MAX_WIRE_RESOURCE_IDS = 20


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self.region = region
        self.source = source
        self.store = store
        self._lookback = lookback
        self._filters = filters or Filters()
        self._clock = clock
        self._status = TargetStatus()
        self._last_error_logged: str | None = None

    @property
    def key(self) -> TargetKey:
        return (self.account, self.region)

    def status(self) -> TargetStatus:
        return self._status

    def snapshot(self) -> StoreSnapshot:
        return self.store.snapshot()

    def refresh(self) -> None:
        started = time.monotonic()
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
        self.store.update(observed.jobs, observed.looked_up, now)
        if self._last_error_logged is not None:
            log.info("account=%s region=%s recovered", self.account, self.region)
            self._last_error_logged = None
        self._status = TargetStatus(
            tried=True,
            up=True,
            last_success=now,
            refresh_duration=time.monotonic() - started,
        )

    def _fetch(self, now: float) -> _Observed:
        begin_ms = int((now - self._lookback) * 1000)
        jobs = [
            job
            for job in self.source.list_jobs(window_query(self._filters, begin_ms))
            if matches(self._filters, job)
        ]
        # Jobs still Processing that the window no longer returns (older than lookback,
        # or dropped by the API) are looked up by id so they stay tracked until they end.
        returned = {job.id for job in jobs}
        missing = tuple(sorted(self.store.processing_ids() - returned))
        if missing:
            jobs.extend(self.source.list_jobs(JobQuery(job_ids=missing)))
        return _Observed(jobs, missing)

    def _failed(self, error: str, kind: str, started: float) -> None:
        # The same kind of error (class and API code: messages differ per request) is
        # logged once at warning, then at debug while it repeats, so a wrong secret does
        # not flood the log; a different error is logged again.
        level = logging.DEBUG if kind == self._last_error_logged else logging.WARNING
        log.log(
            level, "refresh of account=%s region=%s failed: %s", self.account, self.region, error
        )
        self._last_error_logged = kind
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


class Refresher:
    """Single-flight, TTL-cached refreshes of many targets on a bounded thread pool.

    cachetools caches are not thread-safe: every access is under `_lock`.
    """

    def __init__(
        self,
        targets: Mapping[TargetKey, Target],
        *,
        cache_ttl: float,
        max_workers: int = 4,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._targets = dict(targets)
        self._inflight: dict[TargetKey, Future[None]] = {}
        self._timer = timer
        self._cache_ttl = cache_ttl
        self._fresh: TTLCache[TargetKey, bool] = self._new_cache()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="refresh")

    def _new_cache(self) -> TTLCache[TargetKey, bool]:
        size = max(1, len(self._targets))
        return TTLCache(maxsize=size, ttl=max(self._cache_ttl, 1e-9), timer=self._timer)

    def targets(self) -> list[Target]:
        with self._lock:
            return list(self._targets.values())

    def target(self, key: TargetKey) -> Target | None:
        with self._lock:
            return self._targets.get(key)

    def set_targets(self, targets: Mapping[TargetKey, Target], cache_ttl: float) -> None:
        """Swap the target set (config reload); in-flight refreshes of removed targets finish."""
        with self._lock:
            self._targets = dict(targets)
            self._cache_ttl = cache_ttl
            self._fresh = self._new_cache()

    def ensure_fresh(
        self, keys: Iterable[TargetKey] | None = None, timeout: float | None = None
    ) -> bool:
        """Start refreshes the cache does not cover and wait up to `timeout` for them.

        Returns False if some refresh was still running at the deadline; it then goes on
        in the background and the caller serves the previous data.
        """
        with self._lock:
            wanted = list(self._targets) if keys is None else list(keys)
            futures = [self._future(key) for key in wanted if key in self._targets]
        if not futures:
            return True
        _, pending = wait(futures, timeout=timeout)
        return not pending

    def _future(self, key: TargetKey) -> Future[None]:
        current = self._inflight.get(key)
        if current is not None and (not current.done() or key in self._fresh):
            return current
        future = self._pool.submit(self._targets[key].refresh)
        self._inflight[key] = future
        future.add_done_callback(functools.partial(self._mark_fresh, key))
        return future

    def _mark_fresh(self, key: TargetKey, _done: Future[None]) -> None:
        with self._lock:
            if key in self._targets:
                self._fresh[key] = True

    def shutdown(self) -> None:
        """Let in-flight refreshes finish; start no new ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)
