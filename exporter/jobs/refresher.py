"""The single-flight, TTL-cached refresher of many targets.

A scrape asks for fresh data, concurrent scrapes share one in-flight refresh per target,
and a refresh younger than `cache_ttl` is reused.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait

from exporter.jobs.target import Target, TargetKey

log = logging.getLogger(__name__)


class Refresher:
    """Single-flight, TTL-cached refreshes of many targets on a bounded thread pool.

    Freshness is the monotonic time each target's last refresh finished, kept per target
    (not a TTL cache) so a reload can keep it for unchanged targets and apply a new
    `cache_ttl` to it. All state is under `_lock`.
    """

    def __init__(
        self,
        targets: Mapping[TargetKey, Target],
        *,
        cache_ttl: float,
        max_workers: int = 4,
        timer: Callable[[], float] = time.monotonic,
        after_refresh: Callable[[Target], None] | None = None,
    ) -> None:
        self._after_refresh = after_refresh
        # Re-entrant: `set_targets` adds a done-callback under this lock, and one added to a
        # refresh that has just finished runs right there.
        self._lock = threading.RLock()
        self._targets = dict(targets)
        # Each target's last refresh. Keyed by target identity, not (account, region): after
        # a reload replaces the target under a key, the old target's refresh must neither
        # be reused nor count as the new one's.
        self._inflight: dict[int, _Refresh] = {}
        self._timer = timer
        self._cache_ttl = cache_ttl
        self._max_workers = max_workers
        self._pool = self._new_pool(max_workers)
        # Pools replaced by a reload that changed max_workers: their refreshes finish there.
        self._retired_pools: list[ThreadPoolExecutor] = []
        # After shutdown (SIGTERM): scrapes still draining get the data there is, and a
        # reload starts no pool that shutdown would not wait for.
        self._closed = False

    @staticmethod
    def _new_pool(max_workers: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="refresh")

    def targets(self) -> list[Target]:
        with self._lock:
            return list(self._targets.values())

    def target(self, key: TargetKey) -> Target | None:
        with self._lock:
            return self._targets.get(key)

    def set_targets(
        self,
        targets: Mapping[TargetKey, Target],
        cache_ttl: float,
        *,
        max_workers: int | None = None,
        retired: Callable[[Target], None] | None = None,
    ) -> None:
        """Swap the target set (config reload).

        Targets kept as the same object stay fresh. A target no longer in the set finishes
        its in-flight refresh; `retired(target)` runs once that is done (at once when none
        is running), e.g. to close its client. A new `max_workers` starts a new pool; the
        old one finishes what it runs.
        """
        now_retired: list[Target] = []
        with self._lock:
            kept = {id(t) for t in targets.values()}
            for target in self._targets.values():
                if id(target) in kept or retired is None:
                    continue
                last = self._inflight.get(id(target))
                if last is None or last.future.done():
                    now_retired.append(target)
                else:
                    last.future.add_done_callback(functools.partial(_retire, retired, target))
            self._inflight = {k: f for k, f in self._inflight.items() if k in kept}
            self._targets = dict(targets)
            self._cache_ttl = cache_ttl
            if max_workers is not None and max_workers != self._max_workers and not self._closed:
                self._pool.shutdown(wait=False)
                self._retired_pools.append(self._pool)
                self._pool = self._new_pool(max_workers)
                self._max_workers = max_workers
        if retired is not None:
            for target in now_retired:
                _retire(retired, target)

    def ensure_fresh(
        self, keys: Iterable[TargetKey] | None = None, timeout: float | None = None
    ) -> bool:
        """Start refreshes the cache does not cover and wait up to `timeout` for them.

        Returns False if some refresh was still running at the deadline; it then goes on
        in the background and the caller serves the previous data.
        """
        with self._lock:
            wanted = list(self._targets) if keys is None else list(keys)
            if self._closed:
                return True  # no refresh starts any more: serve what there is
            now = self._timer()
            running = [self._unless_fresh(key, now) for key in wanted if key in self._targets]
        futures = [future for future in running if future is not None]
        if not futures:
            return True  # the scrape served from cache: no future's lock taken
        _, pending = wait(futures, timeout=timeout)
        return not pending

    def _unless_fresh(self, key: TargetKey, now: float) -> Future[None] | None:
        """None if the target's last refresh is fresh; else the one running, or a new one."""
        target = self._targets[key]
        last = self._inflight.get(id(target))
        if last is not None:
            finished = last.finished
            if finished is not None:
                if now - finished < self._cache_ttl:
                    return None
            elif not last.future.done():
                return last.future
            # else it ended without finishing: cancelled by a shutdown
        refresh = _Refresh()
        refresh.future = self._pool.submit(self._run, target, refresh)
        self._inflight[id(target)] = refresh
        return refresh.future

    def _run(self, target: Target, refresh: _Refresh) -> None:
        """Refresh `target`, then record when it finished.

        Recorded here, before the future is done, not by a done-callback: a future is done
        before its callbacks run, and a scrape in between saw a finished refresh not yet
        fresh and started another (issue 24). After the hook: a scrape that finds the
        refresh fresh finds what the hook published too.
        """
        try:
            target.refresh()
        except Exception:  # Target.refresh keeps its own faults; this is a bug, still counted
            log.exception("refresh of account=%s region=%s crashed", *target.key)
        finished = self._timer()
        if self._after_refresh is not None:
            try:
                self._after_refresh(target)
            except Exception:  # e.g. a full disk must not stop the refreshes
                log.exception("after-refresh hook failed")
        refresh.finished = finished

    def shutdown(self) -> None:
        """Let in-flight refreshes finish; start no new ones."""
        with self._lock:
            self._closed = True
            pools = [*self._retired_pools, self._pool]
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


class _Refresh:
    """A target's last refresh. `finished` (monotonic seconds) is written once, by the worker,
    before `future` is done; a scrape reads it without taking the future's lock, which is
    what made every cached scrape cost 4 lock round trips a target (issue 19's bench)."""

    __slots__ = ("finished", "future")

    future: Future[None]  # set as soon as the pool has it, under the refresher's lock

    def __init__(self) -> None:
        self.finished: float | None = None


def _retire(retired: Callable[[Target], None], target: Target, *_done: object) -> None:
    try:
        retired(target)
    except Exception:  # a failing clean-up must not break the reload or a refresh thread
        log.exception("clean-up of replaced target account=%s region=%s failed", *target.key)
