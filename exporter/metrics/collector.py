"""The job collector: fresh families from each target's store snapshot on every collect
(the web routes collect once per change of the data, not once per scrape).

Knows nothing of httpx: targets are read through `TargetView`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_float_to_go_string

from exporter.jobs.snapshot import HistogramSnapshot, StoreSnapshot
from exporter.jobs.target import TargetStatus
from exporter.metrics.table import (
    JOB_COLLECTOR_METRICS,
    MetricSpec,
    cap_label,
    family_name,
    spec,
)
from exporter.metrics.text import (
    LabelWriter,
    RenderedFamily,
    RenderMemo,
    histogram_lines,
    value_lines,
)

log = logging.getLogger(__name__)

# The `le` formatting prometheus_client's own histograms use ("1.0", "+Inf"); untyped upstream.
_go_float: Callable[[float], str] = _untyped_float_to_go_string


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
    cap: Callable[[LabelValues], LabelValues] = field(default=lambda labels: _cap_all(labels))

    def add(self, labels: LabelValues, value: float) -> None:
        self._put(self.cap(labels), value)

    def add_histogram(self, labels: LabelValues, value: HistogramSnapshot) -> None:
        self._put_histogram(self.cap(labels), value)

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


def _cap_all(labels: LabelValues) -> LabelValues:
    return tuple(cap_label(v) for v in labels)


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


DURATION = "alb_async_job_duration_seconds"
# The labels of a duration histogram key in the store (`DurationKey`), in order.
DURATION_KEY_LABELS = ("status", "resource_type", "api_name")


@dataclass(frozen=True)
class ExpositionOptions:
    """What the config's `metrics` block asks of the exposition (the store keeps it all).

    `duration_labels`: the histogram's labels besides account and region, a subset of
    DURATION_KEY_LABELS; label sets that differ only in the others are summed.
    `disabled`: job families not exposed at all. These defaults expose everything; the
    exporter's own defaults are the config's (`metrics` block), converted by the app.
    """

    duration_labels: tuple[str, ...] = DURATION_KEY_LABELS
    disabled: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.duration_labels) - set(DURATION_KEY_LABELS)
        if unknown:
            raise ValueError(f"not labels of {DURATION}: {sorted(unknown)}")
        # Store keys are projected by position; keep the table's order whatever was given.
        ordered = tuple(label for label in DURATION_KEY_LABELS if label in self.duration_labels)
        object.__setattr__(self, "duration_labels", ordered)

    def families(self) -> tuple[str, ...]:
        return tuple(name for name in JOB_COLLECTOR_METRICS if name not in self.disabled)

    def spec(self, name: str) -> MetricSpec:
        metric = spec(name)
        if name != DURATION:
            return metric
        return replace(metric, labels=(*metric.labels[:2], *self.duration_labels))

    def project(self, key: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(
            value
            for label, value in zip(DURATION_KEY_LABELS, key, strict=True)
            if label in self.duration_labels
        )


def _new_samples(
    cap: Callable[[LabelValues], LabelValues] = _cap_all,
) -> dict[str, _Samples]:
    return {name: _Samples(_COMBINE.get(name, _sum), cap=cap) for name in JOB_COLLECTOR_METRICS}


def _target_samples(
    account: str,
    region: str,
    snap: StoreSnapshot,
    status: TargetStatus,
    options: ExpositionOptions,
    cap: Callable[[LabelValues], LabelValues] = _cap_all,
    families: Iterable[str] = JOB_COLLECTOR_METRICS,
) -> dict[str, _Samples]:
    """The samples of one target's `families`; built completely before merging so a view
    that fails halfway contributes nothing. `cap` caps a label set's values (`_cap_all`,
    or a memo of it)."""
    samples = _new_samples(cap)
    t = (account, region)
    for name in families:
        _BUILDERS[name](samples[name], t, snap, status, options)
    return samples


Builder = Callable[[_Samples, LabelValues, StoreSnapshot, TargetStatus, ExpositionOptions], None]


def _from(source: Callable[[StoreSnapshot], Mapping[KeyT, float]]) -> Builder:
    def build(
        samples: _Samples, t: LabelValues, snap: StoreSnapshot, _: object, __: object
    ) -> None:
        for key, value in source(snap).items():
            samples.add((*t, *key), value)

    return build


def _durations(
    samples: _Samples, t: LabelValues, snap: StoreSnapshot, _: object, options: ExpositionOptions
) -> None:
    for key, hist in snap.durations.items():
        # Projected label sets that coincide are merged (summed) by the samples.
        samples.add_histogram((*t, *options.project(key)), hist)


def _recent(samples: _Samples, t: LabelValues, snap: StoreSnapshot, _: object, __: object) -> None:
    for job in snap.recent_failures:
        labels = (job.id, job.resource_id, job.resource_type, job.api_name, job.error_code)
        samples.add((*t, *labels), job.modify_time)


def _up(samples: _Samples, t: LabelValues, _: object, status: TargetStatus, __: object) -> None:
    # Before the first try the target is down: it has served no data yet.
    samples.add(t, 1 if status.up else 0)


def _last_success(
    samples: _Samples, t: LabelValues, _: object, status: TargetStatus, __: object
) -> None:
    if status.last_success is not None:
        samples.add(t, status.last_success)


def _refresh_duration(
    samples: _Samples, t: LabelValues, _: object, status: TargetStatus, __: object
) -> None:
    if status.tried and status.refresh_duration is not None:
        samples.add(t, status.refresh_duration)


def _tracked(samples: _Samples, t: LabelValues, snap: StoreSnapshot, _: object, __: object) -> None:
    samples.add(t, snap.jobs_tracked)


def _recovered(
    samples: _Samples, t: LabelValues, snap: StoreSnapshot, _: object, __: object
) -> None:
    samples.add(t, snap.recovered_total)


_BUILDERS: Mapping[str, Builder] = {
    "alb_async_jobs": _from(lambda snap: snap.jobs_by_status),
    "alb_async_jobs_failed": _from(lambda snap: snap.failed),
    "alb_async_jobs_finished_total": _from(lambda snap: snap.finished_total),
    "alb_async_jobs_failures_total": _from(lambda snap: snap.failures_total),
    DURATION: _durations,
    "alb_async_job_processing_oldest_created_timestamp_seconds": _from(
        lambda snap: snap.oldest_processing
    ),
    "alb_async_jobs_vanished_total": _from(lambda snap: snap.vanished_total),
    "alb_async_job_recent_failure_timestamp_seconds": _recent,
    "alb_exporter_up": _up,
    "alb_exporter_last_success_timestamp_seconds": _last_success,
    "alb_exporter_refresh_duration_seconds": _refresh_duration,
    "alb_exporter_jobs_tracked": _tracked,
    "alb_exporter_resync_recovered_jobs_total": _recovered,
}

# What a family's samples are made of in a snapshot, for the families worth re-using
# between renders: the store publishes an unchanged map as the same object (see
# `JobStore._publish`), so the lines written from it last time still hold. The others
# come from the status, which every refresh replaces, or are one series.
_SOURCES: Mapping[str, Callable[[StoreSnapshot], object]] = {
    "alb_async_jobs": lambda snap: snap.jobs_by_status,
    "alb_async_jobs_failed": lambda snap: snap.failed,
    "alb_async_jobs_finished_total": lambda snap: snap.finished_total,
    "alb_async_jobs_failures_total": lambda snap: snap.failures_total,
    DURATION: lambda snap: snap.durations,
    "alb_async_job_processing_oldest_created_timestamp_seconds": lambda snap: (
        snap.oldest_processing
    ),
    "alb_async_jobs_vanished_total": lambda snap: snap.vanished_total,
    "alb_async_job_recent_failure_timestamp_seconds": lambda snap: snap.recent_failures,
}


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
    """Job metrics of every target, built fresh from the targets' snapshots on each collect.

    Every family not disabled by the options is yielded on every scrape, with no samples
    if need be, so all job metrics are in the exposition from the start; the duration
    histogram is summed onto the options' labels. A target whose view raises is logged
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

    def __init__(
        self,
        targets: Callable[[], Sequence[TargetView]],
        options: ExpositionOptions | None = None,
    ) -> None:
        self._targets = targets
        self._options = options or ExpositionOptions()
        self._lock = threading.Lock()
        # Each target's last render (by account and region as configured), and what its
        # renders keep from one to the next.
        self._kept: dict[LabelValues, _Render] = {}
        self._memos: dict[LabelValues, _Memo] = {}

    def configure(self, options: ExpositionOptions) -> None:
        """Apply a reloaded `metrics` block from the next scrape on (one reference swap:
        a scrape in progress keeps the options it started with)."""
        self._options = options

    def describe(self) -> Iterable[Metric]:
        # The families without samples: lets the registry reject name clashes at
        # registration without reading any target. All of them, disabled or not: a
        # reload may enable a family later, and the registry checks names only here.
        return [_empty_family(spec(name)) for name in JOB_COLLECTOR_METRICS]

    def collect(self) -> Iterator[Metric]:
        options = self._options
        with self._lock:  # one collect at a time: the writers and the kept renders
            renders = self._renders(options)
            targets = list(self._kept.values())
        for name in options.families():
            metric = options.spec(name)
            parts = [render.lines[name] for render in renders]
            yield RenderedFamily(
                metric, parts, functools.partial(_slow_family, metric, name, targets)
            )

    def _renders(self, options: ExpositionOptions) -> list[_Render]:
        """Every readable target's sample lines, in exposition order; a target whose
        snapshot, status and options are those of the last collect is not rendered again."""
        kept, self._kept = self._kept, {}
        readable: dict[LabelValues, list[_Render]] = {}
        for view in self._views():
            try:
                render = self._render(view, options, kept)
            except Exception:  # a broken view must not cost the other targets their metrics
                log.exception("cannot read target %s; left out of this scrape", _name(view))
                continue
            self._kept[render.target] = render
            readable.setdefault(render.labels, []).append(render)
        # Sorted by the capped account and region, the first labels of every family: the
        # families' samples come out sorted by label values, as one sort of all would.
        return [_merged(group, options) for _, group in sorted(readable.items())]

    def _render(
        self, view: TargetView, options: ExpositionOptions, kept: Mapping[LabelValues, _Render]
    ) -> _Render:
        account, region = view.account, view.region
        snap, status = view.snapshot(), view.status()
        held = kept.get((account, region))
        if (
            held is not None
            and held.snapshot is snap
            and held.status is status
            and held.options is options
        ):
            return held
        memo = self._memos.get((account, region))
        if memo is None:
            memo = self._memos[(account, region)] = _Memo()
        memo.capped.start()
        families = options.families()
        lines: dict[str, bytes] = {}
        if held is not None and held.options is options:
            # Families whose source the store published unchanged keep their lines.
            for name in families:
                source = _SOURCES.get(name)
                if source is not None and source(snap) is source(held.snapshot):
                    lines[name] = held.lines[name]
        todo = [name for name in families if name not in lines]
        samples = _target_samples(account, region, snap, status, options, memo.capped, todo)
        for name in todo:
            lines[name] = _lines(options.spec(name), samples[name], memo.writers)
        labels = (cap_label(account), cap_label(region))
        return _Render((account, region), labels, snap, status, options, lines)

    def _views(self) -> Sequence[TargetView]:
        try:
            views = self._targets()
        except Exception:
            log.exception("cannot list targets; exposing no target")
            return ()
        # Memos of targets a reload removed go with them.
        present = set()
        for view in views:
            try:
                present.add((view.account, view.region))
            except Exception:
                continue  # reported by collect when it reads the view
        for gone in self._memos.keys() - present:
            del self._memos[gone]
        return views


class _Memo:
    """What one target's renders keep from one to the next: capped label sets, and each
    family's label strings."""

    def __init__(self) -> None:
        self.capped: RenderMemo[LabelValues, LabelValues] = RenderMemo(_cap_all)
        self.writers: dict[tuple[str, ...], LabelWriter] = {}


@dataclass(frozen=True, eq=False)
class _Render:
    """One target's sample lines per family, and what they were written from."""

    target: LabelValues  # account and region as configured
    labels: LabelValues  # the same, capped: the label values every line starts with
    snapshot: StoreSnapshot
    status: TargetStatus
    options: ExpositionOptions
    lines: Mapping[str, bytes]


def _lines(
    metric: MetricSpec, samples: _Samples, writers: dict[tuple[str, ...], LabelWriter]
) -> bytes:
    writer = writers.get((metric.name, *metric.labels))
    if writer is None:
        writer = writers[(metric.name, *metric.labels)] = LabelWriter(metric.labels)
    writer.start()
    if metric.type == "histogram":
        return histogram_lines(metric, writer, samples.histograms).encode("utf-8")
    return value_lines(metric, writer, samples.values).encode("utf-8")


def _merged(group: list[_Render], options: ExpositionOptions) -> _Render:
    """Targets whose capped account and region coincide (names longer than a label value
    may be) share their series: their samples are merged, as equal label sets are."""
    if len(group) == 1:
        return group[0]
    merged = _new_samples()
    for render in group:
        account, region = render.target
        one = _target_samples(account, region, render.snapshot, render.status, options)
        for name, target_samples in one.items():
            merged[name].update(target_samples)
    writers: dict[tuple[str, ...], LabelWriter] = {}
    lines = {name: _lines(options.spec(name), merged[name], writers) for name in options.families()}
    first = group[0]
    return _Render(first.target, first.labels, first.snapshot, first.status, options, lines)


def _slow_family(metric: MetricSpec, name: str, renders: Sequence[_Render]) -> Metric:
    """The family as prometheus_client's own classes hold it, for encoders that read
    samples (see `exporter.metrics.text`)."""
    merged = _Samples(_COMBINE.get(name, _sum))
    for render in renders:
        account, region = render.target
        one = _target_samples(account, region, render.snapshot, render.status, render.options)
        merged.update(one[name])
    return _family(metric, merged)


def _name(view: TargetView) -> str:
    # For the log only; even a view whose attributes raise must not escape collect().
    try:
        return f"account={view.account} region={view.region}"
    except Exception:
        return object.__repr__(view)
