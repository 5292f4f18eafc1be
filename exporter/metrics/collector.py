"""Prometheus metrics: the one table of every metric, the per-scrape job collector and the
directly instrumented self-metrics. Knows nothing of httpx: targets are read through
`TargetView`.
"""

from __future__ import annotations

import logging
import platform
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_float_to_go_string

from exporter import __version__
from exporter.jobs.store import HistogramSnapshot, StoreSnapshot
from exporter.jobs.target import TargetStatus

log = logging.getLogger(__name__)

# The `le` formatting prometheus_client's own histograms use ("1.0", "+Inf"); untyped upstream.
_go_float: Callable[[float], str] = _untyped_float_to_go_string

MetricType = Literal["gauge", "counter", "histogram"]

# API strings become label values; a hostile or buggy API must not bloat the exposition.
MAX_LABEL_VALUE_LENGTH = 256
_ELLIPSIS = "…"

TARGET = ("account", "region")


@dataclass(frozen=True)
class MetricSpec:
    """One row of the metric table; README and code are both checked against it."""

    name: str  # the exposed name, counters with their `_total`
    type: MetricType
    help: str
    labels: tuple[str, ...]


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "alb_async_jobs",
        "gauge",
        "ALB async jobs created within the lookback window, by current status.",
        (*TARGET, "status", "resource_type", "api_name", "operate_type"),
    ),
    MetricSpec(
        "alb_async_jobs_failed",
        "gauge",
        "Failed ALB async jobs created within the lookback window.",
        (*TARGET, "resource_type", "api_name", "error_code"),
    ),
    MetricSpec(
        "alb_async_jobs_finished_total",
        "counter",
        "ALB async jobs seen reaching Succeeded or Failed, each job counted once.",
        (*TARGET, "status", "resource_type", "api_name", "operate_type"),
    ),
    MetricSpec(
        "alb_async_jobs_failures_total",
        "counter",
        "Failed ALB async jobs, each job counted once.",
        (*TARGET, "resource_type", "api_name", "error_code"),
    ),
    MetricSpec(
        "alb_async_job_duration_seconds",
        "histogram",
        "ModifyTime minus CreateTime of finished ALB async jobs, observed once per job.",
        (*TARGET, "status", "resource_type", "api_name"),
    ),
    MetricSpec(
        "alb_async_job_processing_oldest_created_timestamp_seconds",
        "gauge",
        "CreateTime of the oldest ALB async job still Processing; absent when none.",
        (*TARGET, "resource_type", "api_name"),
    ),
    MetricSpec(
        "alb_async_jobs_vanished_total",
        "counter",
        "ALB async jobs seen Processing that dropped out of the results unfinished.",
        (*TARGET, "resource_type", "api_name"),
    ),
    MetricSpec(
        "alb_async_job_recent_failure_timestamp_seconds",
        "gauge",
        "Failure time (ModifyTime) of the most recent failed ALB async jobs.",
        (*TARGET, "job_id", "resource_id", "resource_type", "api_name", "error_code"),
    ),
    MetricSpec(
        "alb_exporter_up",
        "gauge",
        "1 if the last refresh of this account and region succeeded, else 0.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_last_success_timestamp_seconds",
        "gauge",
        "Unix time the job data now served was fetched.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_refresh_duration_seconds",
        "gauge",
        "Wall time of the last refresh of this account and region.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_api_requests_total",
        "counter",
        "ListAsynJobs HTTP requests, by result code (OK, API error code, Timeout, ...).",
        (*TARGET, "code"),
    ),
    MetricSpec(
        "alb_exporter_api_request_duration_seconds",
        "histogram",
        "Duration of ListAsynJobs HTTP requests.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_jobs_tracked",
        "gauge",
        "ALB async jobs held in memory for this account and region.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_config_last_reload_successful",
        "gauge",
        "1 if the last configuration reload succeeded, else 0.",
        (),
    ),
    MetricSpec(
        "alb_exporter_credential_refreshes_total",
        "counter",
        "Fetches of temporary credentials (STS, metadata, ...), by result code.",
        ("account", "source", "code"),
    ),
    MetricSpec(
        "alb_exporter_credentials_expiry_timestamp_seconds",
        "gauge",
        "Unix time the temporary credentials in use expire.",
        ("account", "source"),
    ),
    MetricSpec(
        "alb_exporter_build_info",
        "gauge",
        "Always 1; labels carry the exporter and Python versions.",
        ("version", "python_version"),
    ),
)

_BY_NAME: Mapping[str, MetricSpec] = {spec.name: spec for spec in METRICS}

# Families JobsCollector builds on every scrape, in exposition order; the rest of
# METRICS belongs to SelfMetrics.
JOB_COLLECTOR_METRICS: tuple[str, ...] = (
    "alb_async_jobs",
    "alb_async_jobs_failed",
    "alb_async_jobs_finished_total",
    "alb_async_jobs_failures_total",
    "alb_async_job_duration_seconds",
    "alb_async_job_processing_oldest_created_timestamp_seconds",
    "alb_async_jobs_vanished_total",
    "alb_async_job_recent_failure_timestamp_seconds",
    "alb_exporter_up",
    "alb_exporter_last_success_timestamp_seconds",
    "alb_exporter_refresh_duration_seconds",
    "alb_exporter_jobs_tracked",
)

# ListAsynJobs calls usually take tens of milliseconds; the request timeout caps them.
API_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def spec(name: str) -> MetricSpec:
    return _BY_NAME[name]


def family_name(metric: MetricSpec) -> str:
    """The name prometheus_client wants: it appends `_total` to counters itself."""
    if metric.type == "counter" and metric.name.endswith("_total"):
        return metric.name.removesuffix("_total")
    return metric.name


def cap_label(value: str) -> str:
    """An API string made safe as a label value.

    Values longer than MAX_LABEL_VALUE_LENGTH characters are cut to that length, the
    last character replaced by "…". Lone surrogates (JSON can carry them) would make
    the UTF-8 exposition fail, so they become U+FFFD.
    """
    if not value.isascii():
        value = _valid_unicode(value)
    if len(value) <= MAX_LABEL_VALUE_LENGTH:
        return value
    return value[: MAX_LABEL_VALUE_LENGTH - 1] + _ELLIPSIS


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Round trip through UTF-16: valid surrogate pairs join, lone ones become U+FFFD.
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


class TargetView(Protocol):
    """What the collector needs of a target (exporter.targets.Target fits)."""

    @property
    def account(self) -> str: ...

    @property
    def region(self) -> str: ...

    def snapshot(self) -> StoreSnapshot: ...

    def status(self) -> TargetStatus: ...


LabelValues = tuple[str, ...]
KeyT = TypeVar("KeyT", bound=tuple[str, ...])


@dataclass
class _Samples:
    """Samples of one family collected over all targets.

    Capping can make two label sets equal; duplicate series would make Prometheus reject
    the whole scrape, so equal label sets are merged with `combine`.
    """

    combine: Callable[[float, float], float]
    values: dict[LabelValues, float] = field(default_factory=dict)
    histograms: dict[LabelValues, HistogramSnapshot] = field(default_factory=dict)

    def add(self, labels: Iterable[str], value: float) -> None:
        self._put(tuple(cap_label(v) for v in labels), value)

    def add_histogram(self, labels: Iterable[str], value: HistogramSnapshot) -> None:
        self._put_histogram(tuple(cap_label(v) for v in labels), value)

    def update(self, other: _Samples) -> None:
        """Merge another target's samples (their labels are capped already)."""
        for key, value in other.values.items():
            self._put(key, value)
        for key, hist in other.histograms.items():
            self._put_histogram(key, hist)

    def _put(self, key: LabelValues, value: float) -> None:
        current = self.values.get(key)
        self.values[key] = value if current is None else self.combine(current, value)

    def _put_histogram(self, key: LabelValues, value: HistogramSnapshot) -> None:
        current = self.histograms.get(key)
        self.histograms[key] = value if current is None else _merge(current, value)


def _sum(a: float, b: float) -> float:
    return a + b


def _merge(a: HistogramSnapshot, b: HistogramSnapshot) -> HistogramSnapshot:
    if [bound for bound, _ in a.buckets] != [bound for bound, _ in b.buckets]:
        log.warning("histograms with different buckets share a label set; keeping one")
        return a
    buckets = tuple((bound, x + y) for (bound, x), (_, y) in zip(a.buckets, b.buckets, strict=True))
    return HistogramSnapshot(buckets, a.sum + b.sum, a.count + b.count)


# How samples whose capped label sets coincide are merged: counts add up, the oldest
# Processing job is the minimum, a recent failure keeps the newest time.
_COMBINE: Mapping[str, Callable[[float, float], float]] = {
    "alb_async_job_processing_oldest_created_timestamp_seconds": min,
    "alb_async_job_recent_failure_timestamp_seconds": max,
    "alb_exporter_up": min,
    "alb_exporter_last_success_timestamp_seconds": min,
    "alb_exporter_refresh_duration_seconds": max,
}


def _new_samples() -> dict[str, _Samples]:
    return {name: _Samples(_COMBINE.get(name, _sum)) for name in JOB_COLLECTOR_METRICS}


def _target_samples(
    account: str, region: str, snap: StoreSnapshot, status: TargetStatus
) -> dict[str, _Samples]:
    """All samples of one target; built completely before merging so a view that fails
    halfway contributes nothing."""
    samples = _new_samples()
    t = (account, region)
    _add_all(samples["alb_async_jobs"], t, snap.jobs_by_status)
    _add_all(samples["alb_async_jobs_failed"], t, snap.failed)
    _add_all(samples["alb_async_jobs_finished_total"], t, snap.finished_total)
    _add_all(samples["alb_async_jobs_failures_total"], t, snap.failures_total)
    _add_all(samples["alb_async_jobs_vanished_total"], t, snap.vanished_total)
    oldest = samples["alb_async_job_processing_oldest_created_timestamp_seconds"]
    _add_all(oldest, t, snap.oldest_processing)
    for key, hist in snap.durations.items():
        samples["alb_async_job_duration_seconds"].add_histogram((*t, *key), hist)
    recent = samples["alb_async_job_recent_failure_timestamp_seconds"]
    for job in snap.recent_failures:
        labels = (job.id, job.resource_id, job.resource_type, job.api_name, job.error_code)
        recent.add((*t, *labels), job.modify_time)
    _add_status(samples, t, status)
    samples["alb_exporter_jobs_tracked"].add(t, snap.jobs_tracked)
    return samples


def _add_all(samples: _Samples, t: LabelValues, values: Mapping[KeyT, float]) -> None:
    for key, value in values.items():
        samples.add((*t, *key), value)


def _add_status(samples: Mapping[str, _Samples], t: LabelValues, status: TargetStatus) -> None:
    # Before the first try the target is down: it has served no data yet.
    samples["alb_exporter_up"].add(t, 1 if status.up else 0)
    if status.last_success is not None:
        samples["alb_exporter_last_success_timestamp_seconds"].add(t, status.last_success)
    if status.tried and status.refresh_duration is not None:
        samples["alb_exporter_refresh_duration_seconds"].add(t, status.refresh_duration)


def _empty_family(metric: MetricSpec) -> Metric:
    name = family_name(metric)
    if metric.type == "counter":
        return CounterMetricFamily(name, metric.help, labels=metric.labels)
    if metric.type == "histogram":
        return HistogramMetricFamily(name, metric.help, labels=metric.labels)
    return GaugeMetricFamily(name, metric.help, labels=metric.labels)


def _family(metric: MetricSpec, samples: _Samples) -> Metric:
    family = _empty_family(metric)
    # Sorted so the exposition is stable from scrape to scrape (diffable, golden-testable).
    if isinstance(family, HistogramMetricFamily):
        for key in sorted(samples.histograms):
            hist = samples.histograms[key]
            buckets = [(_go_float(bound), float(n)) for bound, n in hist.buckets]
            family.add_metric(key, buckets, hist.sum)
    elif isinstance(family, CounterMetricFamily | GaugeMetricFamily):
        for key in sorted(samples.values):
            family.add_metric(key, samples.values[key])
    return family


class JobsCollector(Collector):
    """Job metrics of every target, built fresh from the targets' snapshots on each scrape.

    Every family is yielded on every scrape, with no samples if need be, so all job
    metrics are in the exposition from the start. A target whose view raises is logged
    and left out; the other targets are still exposed. Example::

        # HELP alb_async_jobs ALB async jobs created within the lookback window, ...
        # TYPE alb_async_jobs gauge
        alb_async_jobs{account="prod",api_name="CreateListener",operate_type="Create",region="cn-hangzhou",resource_type="listener",status="Succeeded"} 2.0
        # HELP alb_async_jobs_finished_total ALB async jobs seen reaching Succeeded ...
        # TYPE alb_async_jobs_finished_total counter
        alb_async_jobs_finished_total{account="prod",api_name="CreateListener",operate_type="Create",region="cn-hangzhou",resource_type="listener",status="Failed"} 0.0
        ...
        # HELP alb_exporter_up 1 if the last refresh of this account and region succeeded, ...
        # TYPE alb_exporter_up gauge
        alb_exporter_up{account="prod",region="cn-hangzhou"} 1.0
    """  # noqa: E501

    def __init__(self, targets: Callable[[], Sequence[TargetView]]) -> None:
        self._targets = targets

    def describe(self) -> Iterable[Metric]:
        # The families without samples: lets the registry reject name clashes at
        # registration without reading any target.
        return [_empty_family(spec(name)) for name in JOB_COLLECTOR_METRICS]

    def collect(self) -> Iterator[Metric]:
        samples = _new_samples()
        for view in self._views():
            try:
                one = _target_samples(view.account, view.region, view.snapshot(), view.status())
            except Exception:  # a broken view must not cost the other targets their metrics
                log.exception("cannot read target %s; left out of this scrape", _name(view))
                continue
            for name, target_samples in one.items():
                samples[name].update(target_samples)
        for name in JOB_COLLECTOR_METRICS:
            yield _family(spec(name), samples[name])

    def _views(self) -> Sequence[TargetView]:
        try:
            return self._targets()
        except Exception:
            log.exception("cannot list targets; exposing no target")
            return ()


def _name(view: TargetView) -> str:
    # For the log only; even a view whose attributes raise must not escape collect().
    try:
        return f"account={view.account} region={view.region}"
    except Exception:
        return object.__repr__(view)


class SelfMetrics:
    """The exporter's own directly instrumented metrics, on an explicit registry.

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
    """  # noqa: E501

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str = __version__,
        python_version: str = platform.python_version(),
    ) -> None:
        self._api_requests = _counter("alb_exporter_api_requests_total", registry)
        self._api_duration = Histogram(
            family_name(spec("alb_exporter_api_request_duration_seconds")),
            spec("alb_exporter_api_request_duration_seconds").help,
            spec("alb_exporter_api_request_duration_seconds").labels,
            registry=registry,
            buckets=API_DURATION_BUCKETS,
        )
        self._credential_refreshes = _counter("alb_exporter_credential_refreshes_total", registry)
        self._credentials_expiry = _gauge(
            "alb_exporter_credentials_expiry_timestamp_seconds", registry
        )
        self._reload_ok = _gauge("alb_exporter_config_last_reload_successful", registry)
        self._reload_ok.set(1)
        build_info = _gauge("alb_exporter_build_info", registry)
        build_info.labels(version, python_version).set(1)
        # prometheus_client offers no portable way to list a metric's label sets, so the
        # ones to forget on reload are remembered here (written from refresh threads).
        # Series are created and removed under the same lock as this record, so the two
        # never disagree.
        self._lock = threading.Lock()
        self._codes: dict[tuple[str, str], set[str]] = {}
        self._credential_codes: dict[str, set[tuple[str, str]]] = {}
        self._expiry_sources: dict[str, set[str]] = {}

    def register_target(self, account: str, region: str) -> None:
        """Create the target's request series at 0."""
        with self._lock:
            self._api_requests.labels(account, region, "OK")
            self._api_duration.labels(account, region)
            self._codes.setdefault((account, region), set()).add("OK")

    def request_observer(self, account: str, region: str) -> Callable[[str, float], None]:
        """The client's per-attempt callback: `observe(code, seconds)`. Registers the
        target (see `register_target`)."""
        self.register_target(account, region)

        def observe(code: str, seconds: float) -> None:
            code = cap_label(code)
            with self._lock:
                self._codes.setdefault((account, region), set()).add(code)
                self._api_requests.labels(account, region, code).inc()
                self._api_duration.labels(account, region).observe(seconds)

        return observe

    def credential_refresh(self, account: str, source: str, code: str) -> None:
        code = cap_label(code)
        with self._lock:
            self._credential_codes.setdefault(account, set()).add((source, code))
            self._credential_refreshes.labels(account, source, code).inc()

    def set_credentials_expiry(self, account: str, source: str, ts: float | None) -> None:
        """`None` (long-lived keys) removes the series rather than exposing a fake expiry."""
        with self._lock:
            sources = self._expiry_sources.setdefault(account, set())
            if ts is None:
                if source in sources:
                    sources.discard(source)
                    self._credentials_expiry.remove(account, source)
                return
            sources.add(source)
            self._credentials_expiry.labels(account, source).set(ts)

    def set_reload_ok(self, ok: bool) -> None:
        self._reload_ok.set(1 if ok else 0)

    def forget_target(self, account: str, region: str) -> None:
        """Drop the series of a target removed by a config reload."""
        with self._lock:
            codes = self._codes.pop((account, region), set())
            for code in codes:
                self._api_requests.remove(account, region, code)
            if codes:
                self._api_duration.remove(account, region)

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


def _counter(name: str, registry: CollectorRegistry) -> Counter:
    metric = spec(name)
    return Counter(family_name(metric), metric.help, metric.labels, registry=registry)


def _gauge(name: str, registry: CollectorRegistry) -> Gauge:
    metric = spec(name)
    return Gauge(family_name(metric), metric.help, metric.labels, registry=registry)
