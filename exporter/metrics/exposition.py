"""The exposition store: the one owner of what /metrics and /probe serve, and of the
version number their render caches key on.

Shaped like kube-state-metrics' `metrics_store`: lines are written when what they show
changes, not when they are scraped.

- A target's job families are written when the target is published (after each refresh,
  when it joins the exposed set, when a reload changes the `metrics` block): its lines
  per family (`exporter.metrics.collector.JobFamilies`), in the exact bytes
  prometheus_client would write (`exporter.metrics.text`).
- The exporter's own families (`SelfMetrics`) change through their instruments, each of
  which reports the change here as it makes it.

Every write moves `version()` after it is made, so a render that started at version v
holds every change made before v. A scrape is the families joined (`collect`, read by
`exporter.web`'s encoder); a probe is one target's lines (`target`). For the formats we
do not pre-render, prometheus_client's encoder reads the families' samples, which every
family builds on demand.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import Metric

from exporter.metrics.collector import JobFamilies, Readable, TargetView
from exporter.metrics.samples import ExpositionOptions
from exporter.metrics.self_metrics import SelfMetrics


class Exposition(Readable):
    """Everything the exporter exposes: its own families, then every target's job
    families. Thread-safe: targets are published from the refresh threads."""

    def __init__(
        self,
        options: ExpositionOptions | None = None,
        *,
        shard: tuple[int, int] = (0, 1),
        process_metrics: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._versions: dict[tuple[str, str], int] = {}  # of each target's last write
        self._own = CollectorRegistry(auto_describe=True)
        self.metrics = SelfMetrics(self._own, shard=shard, on_change=self._changed)
        # `process_metrics`: process_* (resident memory, CPU seconds, open fds: what sizing
        # the pod needs) and python_* (version, GC), as client_python exporters have them;
        # on /metrics only, never in a target's /probe lines. They are the one part that
        # changes on its own, telling nobody, so they are as old as the newest render,
        # which follows every refresh: at most about cache_ttl while scrapes come.
        if process_metrics:
            for process_collector in (ProcessCollector, PlatformCollector, GCCollector):
                process_collector(registry=self._own)
        self._jobs = JobFamilies(options)
        # Clashing names are refused here, as a registry would.
        CollectorRegistry(auto_describe=True).register(self)

    def version(self) -> int:
        """A number that grows after every change of what is exposed."""
        return self._version

    def target_version(self, account: str, region: str) -> int | None:
        """The version of one target's last write (a probe's render cache key); None for
        a target not exposed."""
        with self._lock:
            return self._versions.get((account, region))

    def publish(self, target: TargetView) -> None:
        """Write `target`'s lines from its snapshot and status as they are now: after a
        refresh (or anything else that changed them)."""
        self._jobs.publish(target)
        self._changed((target.account, target.region))

    def set_targets(self, targets: Iterable[TargetView]) -> None:
        """Expose exactly `targets`: new ones are written, gone ones dropped."""
        targets = list(targets)
        self._jobs.set_targets(targets)
        with self._lock:
            # One step: a probe between a reset and a bump would cache a render under a
            # version an earlier render had.
            self._version += 1
            self._versions = dict.fromkeys(((t.account, t.region) for t in targets), self._version)

    def configure(self, options: ExpositionOptions) -> None:
        """A reloaded `metrics` block: every target's lines are written anew under it."""
        self._jobs.configure(options)
        self._changed(every_target=True)

    def _changed(self, *targets: tuple[str, str], every_target: bool = False) -> None:
        """After a write: the version moves, and with it the versions of the targets the
        write touched (of all of them for a write of every target)."""
        with self._lock:
            self._version += 1
            for key in self._versions if every_target else targets:
                if key in self._versions:
                    self._versions[key] = self._version

    def describe(self) -> Iterable[Metric]:
        return [*self._own.collect(), *self._jobs.describe()]

    def collect(self) -> Iterator[Metric]:
        yield from self._own.collect()
        yield from self._jobs.collect()

    def target(self, account: str, region: str) -> Readable | None:
        """One target's job families as last written; None for a target not exposed."""
        return self._jobs.target(account, region)
