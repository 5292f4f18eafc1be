"""One target's samples per job family, built from its store snapshot: the label sets
and values the collector writes (`exporter.metrics.collector`), and the families as
prometheus_client holds them, for its own encoders.

Knows nothing of httpx: a target is its account, region, snapshot and status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar as ClientExemplar

from exporter.families import DURATION, DURATION_KEY_LABELS
from exporter.jobs.snapshot import Exemplar, HistogramSnapshot, StoreSnapshot, newest
from exporter.jobs.target import TargetStatus
from exporter.metrics.table import (
    JOB_COLLECTOR_METRICS,
    METRICS,
    MetricSpec,
    cap_label,
    family_name,
    spec,
)
from exporter.metrics.text import EXEMPLAR_LABEL, carried, go_float

log = logging.getLogger(__name__)

LabelValues = tuple[str, ...]
KeyT = TypeVar("KeyT", bound=tuple[str, ...])


@dataclass
class Samples:
    """Samples of one family collected over all targets.

    Capping can make two label sets equal; duplicate series would make Prometheus reject
    the whole scrape, so equal label sets are merged with `combine` (and the newer of
    their exemplars).
    """

    combine: Callable[[float, float], float]
    values: dict[LabelValues, float] = field(default_factory=dict)
    histograms: dict[LabelValues, HistogramSnapshot] = field(default_factory=dict)
    cap: Callable[[LabelValues], LabelValues] = field(default=lambda labels: cap_all(labels))
    exemplars: dict[LabelValues, Exemplar] = field(default_factory=dict)

    def add(self, labels: LabelValues, value: float, exemplar: Exemplar | None = None) -> None:
        key = self.cap(labels)
        self._put(key, value)
        if exemplar is not None:
            self._put_exemplar(key, exemplar)

    def add_histogram(self, labels: LabelValues, value: HistogramSnapshot) -> None:
        self._put_histogram(self.cap(labels), value)

    def update(self, other: Samples) -> None:
        """Merge another target's samples (their labels are capped already)."""
        for key, value in other.values.items():
            self._put(key, value)
        for key, hist in other.histograms.items():
            self._put_histogram(key, hist)
        for key, exemplar in other.exemplars.items():
            self._put_exemplar(key, exemplar)

    def _put_exemplar(self, key: LabelValues, exemplar: Exemplar) -> None:
        self.exemplars[key] = newest(self.exemplars.get(key), exemplar)

    def _put(self, key: LabelValues, value: float) -> None:
        current = self.values.get(key)
        self.values[key] = value if current is None else self.combine(current, value)

    def _put_histogram(self, key: LabelValues, value: HistogramSnapshot) -> None:
        current = self.histograms.get(key)
        self.histograms[key] = value if current is None else _merge(current, value)


def cap_all(labels: LabelValues) -> LabelValues:
    return tuple(cap_label(v) for v in labels)


def sum_values(a: float, b: float) -> float:
    return a + b


def _merge(a: HistogramSnapshot, b: HistogramSnapshot) -> HistogramSnapshot:
    return merged([a, b])


def merged(hists: Sequence[HistogramSnapshot]) -> HistogramSnapshot:
    """The sum of `hists` (bucket counts, sums and counts, folded left in order), with
    the newest exemplar of each bucket. One whose bounds differ from the first's is left
    out (logged). In one pass however many there are: at the default `duration_labels`
    every publish folds a target's ~36 histograms into 2 or 3."""
    first = hists[0]
    if len(hists) == 1:
        return first
    bounds = [bound for bound, _ in first.buckets]
    same = [first]
    for hist in hists[1:]:
        if [bound for bound, _ in hist.buckets] == bounds:
            same.append(hist)
        else:
            log.warning("histograms with different buckets share a label set; keeping one")
    columns = zip(*([n for _, n in hist.buckets] for hist in same), strict=True)
    buckets = tuple(zip(bounds, map(sum, columns), strict=True))
    with_exemplars = [hist.exemplars for hist in same if hist.exemplars]
    exemplars: tuple[Exemplar | None, ...] = with_exemplars[0] if with_exemplars else ()
    if len(with_exemplars) > 1:
        exemplars = tuple(
            max((x for x in column if x is not None), key=_exemplar_order, default=None)
            for column in zip(*with_exemplars, strict=True)
        )
    total = first.sum
    for hist in same[1:]:
        total += hist.sum  # as pairwise merges added them: the same float
    return HistogramSnapshot(buckets, total, sum(hist.count for hist in same), exemplars)


def _exemplar_order(exemplar: Exemplar) -> tuple[float, str]:
    # As `newest` orders them: by ModifyTime, then id.
    return (exemplar.timestamp, exemplar.job_id)


# How samples whose capped label sets coincide are merged (the table's `combine`): counts
# add up, the oldest Processing job is the minimum, a recent failure keeps the newest time.
_COMBINERS: Mapping[str, Callable[[float, float], float]] = {
    "sum": sum_values,
    "min": min,
    "max": max,
}
COMBINE: Mapping[str, Callable[[float, float], float]] = {
    row.name: _COMBINERS[row.combine] for row in METRICS
}


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
    # The positions of `duration_labels` in a store key, derived: what `project` keeps.
    _keep: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.duration_labels) - set(DURATION_KEY_LABELS)
        if unknown:
            raise ValueError(f"not labels of {DURATION}: {sorted(unknown)}")
        # Store keys are projected by position; keep the table's order whatever was given.
        ordered = tuple(label for label in DURATION_KEY_LABELS if label in self.duration_labels)
        object.__setattr__(self, "duration_labels", ordered)
        keep = tuple(i for i, label in enumerate(DURATION_KEY_LABELS) if label in ordered)
        object.__setattr__(self, "_keep", keep)

    def families(self) -> tuple[str, ...]:
        return tuple(name for name in JOB_COLLECTOR_METRICS if name not in self.disabled)

    def spec(self, name: str) -> MetricSpec:
        metric = spec(name)
        if name != DURATION:
            return metric
        return replace(metric, labels=(*metric.labels[:2], *self.duration_labels))

    def project(self, key: tuple[str, ...]) -> tuple[str, ...]:
        """A store key (values of DURATION_KEY_LABELS) on `duration_labels`."""
        return tuple([key[i] for i in self._keep])


def new_samples(
    cap: Callable[[LabelValues], LabelValues] = cap_all,
) -> dict[str, Samples]:
    return {name: Samples(COMBINE[name], cap=cap) for name in JOB_COLLECTOR_METRICS}


def target_samples(
    account: str,
    region: str,
    snap: StoreSnapshot,
    status: TargetStatus,
    options: ExpositionOptions,
    cap: Callable[[LabelValues], LabelValues] = cap_all,
    families: Iterable[str] = JOB_COLLECTOR_METRICS,
) -> dict[str, Samples]:
    """The samples of one target's `families`; built completely before merging so a view
    that fails halfway contributes nothing. `cap` caps a label set's values (`cap_all`,
    or a memo of it)."""
    samples = new_samples(cap)
    t = (account, region)
    for name in families:
        _BUILDERS[spec(name).source](samples[name], t, snap, status, options)
    return samples


Builder = Callable[[Samples, LabelValues, StoreSnapshot, TargetStatus, ExpositionOptions], None]


def _from(field: str, exemplars: str = "") -> Builder:
    """The values of a snapshot map; with the exemplars of the map named `exemplars`."""

    def build(samples: Samples, t: LabelValues, snap: StoreSnapshot, _: object, __: object) -> None:
        values: Mapping[tuple[str, ...], float] = getattr(snap, field)
        held: Mapping[tuple[str, ...], Exemplar] = getattr(snap, exemplars) if exemplars else {}
        for key, value in values.items():
            samples.add((*t, *key), value, held.get(key))

    return build


def _durations(
    samples: Samples, t: LabelValues, snap: StoreSnapshot, _: object, options: ExpositionOptions
) -> None:
    # Store keys whose projections coincide are summed, all of a label set's at once.
    groups: dict[tuple[str, ...], list[HistogramSnapshot]] = {}
    for key, hist in snap.durations.items():
        groups.setdefault(options.project(key), []).append(hist)
    for labels, hists in groups.items():
        samples.add_histogram((*t, *labels), merged(hists))


def _recent(samples: Samples, t: LabelValues, snap: StoreSnapshot, _: object, __: object) -> None:
    for job in snap.recent_failures:
        labels = (job.id, job.resource_id, job.resource_type, job.api_name, job.error_code)
        samples.add((*t, *labels), job.modify_time)


def _up(samples: Samples, t: LabelValues, _: object, status: TargetStatus, __: object) -> None:
    # Before the first try the target is down: it has served no data yet.
    samples.add(t, 1 if status.up else 0)


def _last_success(
    samples: Samples, t: LabelValues, _: object, status: TargetStatus, __: object
) -> None:
    if status.last_success is not None:
        samples.add(t, status.last_success)


def _refresh_duration(
    samples: Samples, t: LabelValues, _: object, status: TargetStatus, __: object
) -> None:
    if status.tried and status.refresh_duration is not None:
        samples.add(t, status.refresh_duration)


def _one(field: str) -> Builder:
    def build(samples: Samples, t: LabelValues, snap: StoreSnapshot, _: object, __: object) -> None:
        samples.add(t, getattr(snap, field))

    return build


# A builder per value source of the table (`MetricSpec.source`) that a target writes.
_BUILDERS: Mapping[str, Builder] = {
    "snapshot.jobs_by_status": _from("jobs_by_status"),
    "snapshot.failed": _from("failed"),
    # A counter's exemplars change only with its counts: its source says when both did.
    "snapshot.finished_total": _from("finished_total", "finished_exemplars"),
    "snapshot.failures_total": _from("failures_total", "failures_exemplars"),
    "snapshot.durations": _durations,
    "snapshot.oldest_processing": _from("oldest_processing"),
    "snapshot.vanished_total": _from("vanished_total"),
    "snapshot.recent_failures": _recent,
    "status.up": _up,
    "status.last_success": _last_success,
    "status.refresh_duration": _refresh_duration,
    "snapshot.jobs_tracked": _one("jobs_tracked"),
    "snapshot.recovered_total": _one("recovered_total"),
}


def source_of(name: str, snap: StoreSnapshot) -> object | None:
    """What a family's samples are made of in a snapshot, for the families whose lines
    may be kept from one render to the next (see `JobFamilies`): a snapshot map or tuple,
    compared by value. None for families of the status or of a single series."""
    source = spec(name).source
    if not source.startswith("snapshot."):
        return None
    value = getattr(snap, source.removeprefix("snapshot."))
    return None if isinstance(value, int) else value


def empty_family(metric: MetricSpec) -> Metric:
    name = family_name(metric)
    if metric.type == "counter":
        return CounterMetricFamily(name, metric.help, labels=metric.labels)
    if metric.type == "histogram":
        return HistogramMetricFamily(name, metric.help, labels=metric.labels)
    return GaugeMetricFamily(name, metric.help, labels=metric.labels)


def client_family(metric: MetricSpec, samples: Samples) -> Metric:
    family = empty_family(metric)
    # Sorted so the exposition is stable from scrape to scrape (diffable, golden-testable).
    if isinstance(family, HistogramMetricFamily):
        for key in sorted(samples.histograms):
            hist = samples.histograms[key]
            exemplars = hist.exemplars or (None,) * len(hist.buckets)
            buckets: list[tuple[str, float] | tuple[str, float, ClientExemplar]] = []
            for (bound, n), exemplar in zip(hist.buckets, exemplars, strict=True):
                # `le` as prometheus_client's own histograms write it ("1.0", "+Inf").
                held = _client_exemplar(exemplar)
                le = go_float(bound)
                buckets.append((le, float(n)) if held is None else (le, float(n), held))
            family.add_metric(key, buckets, hist.sum)
    elif isinstance(family, CounterMetricFamily):
        for key in sorted(samples.values):
            held = _client_exemplar(samples.exemplars.get(key))
            family.add_metric(key, samples.values[key], exemplar=held)
    elif isinstance(family, GaugeMetricFamily):
        for key in sorted(samples.values):
            family.add_metric(key, samples.values[key])
    return family


def _client_exemplar(exemplar: Exemplar | None) -> ClientExemplar | None:
    if exemplar is None or not carried(exemplar):
        return None
    return ClientExemplar({EXEMPLAR_LABEL: exemplar.job_id}, exemplar.value, exemplar.timestamp)
