"""The exporter's own directly instrumented metrics: API requests, credentials, reloads."""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from exporter import __version__
from exporter.metrics.requests import RequestMetrics
from exporter.metrics.table import cap_label, family_name, spec


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
        """`on_change()` is called after every change of a series (the render cache's
        generation, see `exporter.app.Generation`)."""
        self._changed = on_change or (lambda: None)
        # Per target, so written by the exporter rather than prometheus_client (see there).
        self._requests = RequestMetrics()
        registry.register(self._requests)
        self._credential_refreshes = _counter("alb_exporter_credential_refreshes_total", registry)
        self._credentials_expiry = _gauge(
            "alb_exporter_credentials_expiry_timestamp_seconds", registry
        )
        self._reload_ok = _gauge("alb_exporter_config_last_reload_successful", registry)
        self._reload_ok.set(1)
        build_info = _gauge("alb_exporter_build_info", registry)
        build_info.labels(version, python_version).set(1)
        # Exposed unsharded too (0 of 1), so one alert rule sees every exporter and a
        # replica that lost its shard flags is told apart from one that never had them.
        _gauge("alb_exporter_shard_ordinal", registry).set(shard[0])
        _gauge("alb_exporter_total_shards", registry).set(shard[1])
        # prometheus_client offers no portable way to list a metric's label sets, so the
        # ones to forget on reload are remembered here (written from refresh threads).
        # Series are created and removed under the same lock as this record, so the two
        # never disagree.
        self._discovery_targets = _gauge("alb_exporter_discovery_targets", registry)
        self._discovery_success = _gauge(
            "alb_exporter_discovery_last_success_timestamp_seconds", registry
        )
        self._discovery_errors = _counter("alb_exporter_discovery_errors_total", registry)
        self._lock = threading.Lock()
        self._credential_codes: dict[str, set[tuple[str, str]]] = {}
        self._expiry_sources: dict[str, set[str]] = {}

    def register_target(self, account: str, region: str) -> None:
        """Create the target's request series at 0."""
        self._requests.register(account, region)
        self._changed()

    def request_observer(self, account: str, region: str) -> Callable[[str, float], None]:
        """The client's per-attempt callback: `observe(code, seconds)`. Registers the
        target (see `register_target`)."""
        self.register_target(account, region)

        def observe(code: str, seconds: float) -> None:
            self._requests.observe(account, region, cap_label(code), seconds)
            self._changed()

        return observe

    def credential_refresh(self, account: str, source: str, code: str) -> None:
        code = cap_label(code)
        with self._lock:
            self._credential_codes.setdefault(account, set()).add((source, code))
            self._credential_refreshes.labels(account, source, code).inc()
        self._changed()

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
                self._credentials_expiry.labels(account, source).set(ts)
        self._changed()

    def set_reload_ok(self, ok: bool) -> None:
        self._reload_ok.set(1 if ok else 0)
        self._changed()

    def forget_target(self, account: str, region: str) -> None:
        """Drop the series of a target removed by a config reload."""
        self._requests.forget(account, region)
        self._changed()

    # --- discovery (an exporter.discovery.DiscoveryObserver) ---

    def succeeded(self, source: str, account: str, now: float | None = None) -> None:
        self._discovery_success.labels(source, account).set(time.time() if now is None else now)
        self._changed()

    def failed(self, source: str, account: str, code: str) -> None:
        self._discovery_errors.labels(source, account, cap_label(code)).inc()
        self._changed()

    def set_discovery_targets(self, config: int, discovery: int) -> None:
        self._discovery_targets.labels("config").set(config)
        self._discovery_targets.labels("discovery").set(discovery)
        self._changed()

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
        self._changed()


def _counter(name: str, registry: CollectorRegistry) -> Counter:
    metric = spec(name)
    return Counter(family_name(metric), metric.help, metric.labels, registry=registry)


def _gauge(name: str, registry: CollectorRegistry) -> Gauge:
    metric = spec(name)
    return Gauge(family_name(metric), metric.help, metric.labels, registry=registry)
