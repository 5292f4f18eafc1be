"""The exporter's own directly instrumented metrics: API requests, credentials, reloads."""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.metrics.requests import RequestMetrics
from exporter.metrics.table import MetricSpec, cap_label, family_name, spec
from exporter.metrics.text import EncodedFamily


class SelfMetrics:
    """The exporter's own directly instrumented metrics, on an explicit registry.

    `shard` is (index, count), exposed as `alb_exporter_shard_ordinal` and
    `alb_exporter_total_shards`.

    Series created up front: `register_target` creates
    `alb_exporter_api_requests_total{code="OK"}` at 0 and the empty request-duration
    histogram, so rates and `increase()` work from the first request; error codes
    appear when first seen. `alb_exporter_config_last_reload_successful` starts at 1
    (the process only runs with a loaded config). Example::

        # HELP alb_exporter_api_requests_total ListAsynJobs HTTP requests, by result code ...
        # TYPE alb_exporter_api_requests_total counter
        alb_exporter_api_requests_total{account="prod",code="OK",region="cn-hangzhou"} 12.0
        alb_exporter_api_requests_total{account="prod",code="Throttling.User",region="cn-hangzhou"} 1.0
        # HELP alb_exporter_config_last_reload_successful 1 if the last configuration ...
        # TYPE alb_exporter_config_last_reload_successful gauge
        alb_exporter_config_last_reload_successful 1.0
        # HELP alb_exporter_build_info Always 1; labels carry the exporter and Python versions.
        # TYPE alb_exporter_build_info gauge
        alb_exporter_build_info{python_version="3.11.7",version="0.1.0"} 1.0
        # HELP alb_exporter_shard_ordinal This replica's shard (--shard.index), ...
        # TYPE alb_exporter_shard_ordinal gauge
        alb_exporter_shard_ordinal 0.0
        # HELP alb_exporter_total_shards Number of shards the targets are split across ...
        # TYPE alb_exporter_total_shards gauge
        alb_exporter_total_shards 1.0
    """  # noqa: E501

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str = __version__,
        python_version: str = platform.python_version(),
        shard: tuple[int, int] = (0, 1),
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """`on_change()` is called after every change of a series: the families here
        change only through `Instrument` and `RequestMetrics`, which call it themselves
        (the exposition's version, see `exporter.metrics.exposition`)."""
        changed = on_change or (lambda: None)
        self._registry = registry
        self._changed = changed
        # Per target, so written by the exporter rather than prometheus_client (see there).
        self._requests = RequestMetrics(on_change=changed)
        registry.register(self._requests)
        self._credential_refreshes = self.instrument("alb_exporter_credential_refreshes_total")
        self._credentials_expiry = self.instrument(
            "alb_exporter_credentials_expiry_timestamp_seconds"
        )
        self._reload_ok = self.instrument("alb_exporter_config_last_reload_successful")
        self._reload_ok.set(1)
        self.instrument("alb_exporter_build_info").set(1, version, python_version)
        # Exposed unsharded too (0 of 1), so one alert rule sees every exporter and a
        # replica that lost its shard flags is told apart from one that never had them.
        self.instrument("alb_exporter_shard_ordinal").set(shard[0])
        self.instrument("alb_exporter_total_shards").set(shard[1])
        # prometheus_client offers no portable way to list a metric's label sets, so the
        # ones to forget on reload are remembered here (written from refresh threads).
        # Series are created and removed under the same lock as this record, so the two
        # never disagree.
        self._discovery_targets = self.instrument("alb_exporter_discovery_targets")
        self._discovery_success = self.instrument(
            "alb_exporter_discovery_last_success_timestamp_seconds"
        )
        self._discovery_errors = self.instrument("alb_exporter_discovery_errors_total")
        self._lock = threading.Lock()
        self._credential_codes: dict[str, set[tuple[str, str]]] = {}
        self._expiry_sources: dict[str, set[str]] = {}

    def instrument(self, name: str) -> Instrument:
        """The family `name` of the metric table (a counter or gauge), registered here:
        a self-metric is a table row and this call."""
        made = Instrument(spec(name), self._changed)
        self._registry.register(made)
        return made

    def register_target(self, account: str, region: str) -> None:
        """Create the target's request series at 0."""
        self._requests.register(account, region)

    def request_observer(self, account: str, region: str) -> Callable[[str, float], None]:
        """The client's per-attempt callback: `observe(code, seconds)`. Registers the
        target (see `register_target`)."""
        self.register_target(account, region)

        def observe(code: str, seconds: float) -> None:
            self._requests.observe(account, region, cap_label(code), seconds)

        return observe

    def credential_refresh(self, account: str, source: str, code: str) -> None:
        code = cap_label(code)
        with self._lock:
            self._credential_codes.setdefault(account, set()).add((source, code))
            self._credential_refreshes.inc(account, source, code)

    def set_credentials_expiry(self, account: str, source: str, ts: float | None) -> None:
        """`None` (long-lived keys) removes the series rather than exposing a fake expiry."""
        with self._lock:
            sources = self._expiry_sources.setdefault(account, set())
            if ts is None:
                if source in sources:
                    sources.discard(source)
                    self._credentials_expiry.remove(account, source)
            else:
                sources.add(source)
                self._credentials_expiry.set(ts, account, source)

    def set_reload_ok(self, ok: bool) -> None:
        self._reload_ok.set(1 if ok else 0)

    def forget_target(self, account: str, region: str) -> None:
        """Drop the series of a target removed by a config reload."""
        self._requests.forget(account, region)

    # --- discovery (an exporter.discovery.DiscoveryObserver) ---

    def succeeded(self, source: str, account: str, now: float | None = None) -> None:
        self._discovery_success.set(time.time() if now is None else now, source, account)

    def failed(self, source: str, account: str, code: str) -> None:
        self._discovery_errors.inc(source, account, cap_label(code))

    def set_discovery_targets(self, config: int, discovery: int) -> None:
        self._discovery_targets.set(config, "config")
        self._discovery_targets.set(discovery, "discovery")

    def forget_account(self, account: str) -> None:
        """Drop the credential series of an account removed by a config reload or whose
        credentials changed (a series of the old source would otherwise stay forever)."""
        with self._lock:
            codes = self._credential_codes.pop(account, set())
            sources = self._expiry_sources.pop(account, set())
            for source, code in codes:
                self._credential_refreshes.remove(account, source, code)
            for source in sources:
                self._credentials_expiry.remove(account, source)


class Instrument(Collector):
    """One self-metric family of the table, a prometheus_client Counter or Gauge that is
    changed only through these methods, each of which reports the change (`changed()`)
    after making it: no caller has to remember to.

    Its collected family and text are kept until its next change: most of these change
    seldom, and every refresh changes the exposition around them, so a render would
    otherwise have prometheus_client format them all again (a third of a scrape's CPU at
    1 target)."""

    def __init__(self, metric: MetricSpec, changed: Callable[[], None]) -> None:
        kind = Counter if metric.type == "counter" else Gauge
        self._metric: Counter | Gauge = kind(
            family_name(metric), metric.help, metric.labels, registry=None
        )
        self._notify = changed
        self._lock = threading.Lock()
        self._changes = 0
        self._held: tuple[int, list[Metric]] | None = None

    def _changed(self) -> None:
        # After the change itself: a collect that read the count before this holds a
        # family that may miss the change, and the new count makes the next one collect.
        with self._lock:
            self._changes += 1
        self._notify()

    def _series(self, labels: tuple[str, ...]) -> Counter | Gauge:
        return self._metric.labels(*labels) if labels else self._metric

    def inc(self, *labels: str, amount: float = 1) -> None:
        self._series(labels).inc(amount)
        self._changed()

    def set(self, value: float, *labels: str) -> None:
        series = self._series(labels)
        assert isinstance(series, Gauge), "only a gauge is set"
        series.set(value)
        self._changed()

    def remove(self, *labels: str) -> None:
        self._metric.remove(*labels)
        self._changed()

    def describe(self) -> Iterable[Metric]:
        return self._metric.describe()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            changes, held = self._changes, self._held
        if held is not None and held[0] == changes:
            return held[1]
        families: list[Metric] = [EncodedFamily(m) for m in self._metric.collect()]
        with self._lock:
            self._held = (changes, families)
        return families
