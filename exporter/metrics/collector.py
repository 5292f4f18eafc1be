"""The job families: each target's lines, written from its store snapshot and status when
the target is published and kept until it is published again; the samples themselves are
built by `exporter.metrics.samples`.

Knows nothing of httpx: targets are read through `TargetView`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.jobs.snapshot import StoreSnapshot
from exporter.jobs.target import TargetStatus
from exporter.metrics.samples import (
    COMBINE,
    ExpositionOptions,
    LabelValues,
    Samples,
    cap_all,
    client_family,
    empty_family,
    new_samples,
    source_of,
    target_samples,
)
from exporter.metrics.table import JOB_COLLECTOR_METRICS, MetricSpec, cap_label, spec
from exporter.metrics.text import (
    LabelWriter,
    RenderedFamily,
    RenderMemo,
    SampleLines,
    histogram_lines,
    value_lines,
)

log = logging.getLogger(__name__)


class TargetView(Protocol):
    """What the exposition needs of a target (`exporter.jobs.target.Target` fits)."""

    @property
    def account(self) -> str: ...

    @property
    def region(self) -> str: ...

    def snapshot(self) -> StoreSnapshot: ...

    def status(self) -> TargetStatus: ...


class JobFamilies(Collector):
    """The job families' lines of every target, written when a target is published and
    kept until it is published again (kube-state-metrics' metrics store: bytes written
    per object when the object changes, a scrape only joins them).

    `publish(view)` writes a target's lines from its snapshot and status as they are
    now; `set_targets(views)` makes the exposed set those views (new or replaced ones
    written, gone ones dropped); `configure(options)` rewrites every target under a
    reloaded `metrics` block. Every family not disabled by the options is yielded on
    every collect, with no samples if need be, so all job metrics are in the exposition
    from the start; the duration histogram is summed onto the options' labels. A target
    whose view raises is logged and left out; the other targets are still exposed.
    Example::

        # HELP alb_async_jobs ALB async jobs created within the lookback window, ...
        # TYPE alb_async_jobs gauge
        alb_async_jobs{account="prod",api_name="CreateListener",operate_type="Create",region="cn-hangzhou",resource_type="listener",status="Succeeded"} 2.0
        ...
        # HELP alb_exporter_up 1 if the last refresh of this account and region succeeded, ...
        # TYPE alb_exporter_up gauge
        alb_exporter_up{account="prod",region="cn-hangzhou"} 1.0

    Thread-safe; writes are serialised (a target's memo is one render at a time). It
    keeps no version: `exporter.metrics.exposition.Exposition` is its only writer.
    """  # noqa: E501

    def __init__(self, options: ExpositionOptions | None = None) -> None:
        self._options = options or ExpositionOptions()
        self._lock = threading.Lock()
        # Each target's view and last render (by account and region as configured), and
        # what its renders keep from one to the next.
        self._views: dict[LabelValues, TargetView] = {}
        self._kept: dict[LabelValues, _Render] = {}
        self._memos: dict[LabelValues, _Memo] = {}

    def publish(self, view: TargetView) -> None:
        """Write the lines of `view` (a target of the exposed set) from its snapshot and
        status as they are now."""
        with self._lock:
            key = _key(view)
            if key is not None and self._views.get(key) is view:
                self._write(key, view)

    def set_targets(self, views: Iterable[TargetView]) -> None:
        """Expose exactly `views`: targets not seen before (or a new target object under
        a key) are written, the lines of the others kept, those of gone ones dropped."""
        with self._lock:
            present: dict[LabelValues, TargetView] = {}
            for view in views:
                key = _key(view)
                if key is not None:
                    present[key] = view
            for gone in self._views.keys() - present.keys():
                self._kept.pop(gone, None)
                self._memos.pop(gone, None)
            old, self._views = self._views, present
            for key, view in present.items():
                if old.get(key) is not view:
                    self._write(key, view)

    def configure(self, options: ExpositionOptions) -> None:
        """Apply a reloaded `metrics` block: every target is written anew under it."""
        with self._lock:
            self._options = options
            for key, view in self._views.items():
                self._write(key, view)

    def describe(self) -> Iterable[Metric]:
        # The families without samples: lets the registry reject name clashes at
        # registration without reading any target. All of them, disabled or not: a
        # reload may enable a family later, and the registry checks names only here.
        return [empty_family(spec(name)) for name in JOB_COLLECTOR_METRICS]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            options = self._options
            renders = list(self._kept.values())
        return _families(renders, options)

    def target(self, account: str, region: str) -> Readable | None:
        """One target's families (for /probe), read when collected; None if the target
        is not exposed now."""
        key = (account, region)
        with self._lock:
            if key not in self._kept:
                return None
        return _OneTarget(self, key)

    def families_of(self, key: LabelValues) -> Iterator[Metric]:
        with self._lock:
            render = self._kept.get(key)
            options = self._options
        return _families([] if render is None else [render], options)

    def _write(self, key: LabelValues, view: TargetView) -> None:
        try:
            self._kept[key] = self._render(key, view, self._options)
        except Exception:  # a broken view must not cost the other targets their metrics
            log.exception("cannot read target %s; left out of the exposition", _name(view))
            self._kept.pop(key, None)

    def _render(self, key: LabelValues, view: TargetView, options: ExpositionOptions) -> _Render:
        account, region = key
        snap, status = view.snapshot(), view.status()
        held = self._kept.get(key)
        memo = self._memos.get(key)
        if memo is None:
            memo = self._memos[key] = _Memo()
        memo.capped.start()
        families = options.families()
        lines: dict[str, SampleLines] = {}
        if held is not None and held.options is options:
            # Families whose values are equal to those of the last render keep its lines
            # (equal, not just the same object: a value comparison is what makes this
            # right; the store republishing unchanged maps as the same object only makes
            # the comparison instant).
            for name in families:
                source = source_of(name, snap)
                if source is not None and _equal(source, source_of(name, held.snapshot)):
                    lines[name] = held.lines[name]
        todo = [name for name in families if name not in lines]
        samples = target_samples(account, region, snap, status, options, memo.capped, todo)
        for name in todo:
            lines[name] = _lines(options.spec(name), samples[name], memo.writers)
        labels = (cap_label(account), cap_label(region))
        return _Render(key, labels, snap, status, options, lines)


def _key(view: TargetView) -> LabelValues | None:
    try:
        return (view.account, view.region)
    except Exception:
        log.exception("cannot read target %s; left out of the exposition", _name(view))
        return None


def _equal(a: object, b: object) -> bool:
    return a is b or a == b


def _families(renders: Sequence[_Render], options: ExpositionOptions) -> Iterator[Metric]:
    """The families of `renders`: sorted by the capped account and region, the first
    labels of every family, so the samples come out sorted by label values as one sort
    of all would."""
    groups: dict[LabelValues, list[_Render]] = {}
    for render in renders:
        groups.setdefault(render.labels, []).append(render)
    merged = [_merged(group, options) for _, group in sorted(groups.items())]
    for name in options.families():
        metric = options.spec(name)
        parts = [render.lines[name] for render in merged]
        yield RenderedFamily(metric, parts, functools.partial(_slow_family, metric, name, renders))


class Readable(Collector):
    """A collector whose samples can be read one at a time, as a registry's can."""

    def get_sample_value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """A sample's value, None if absent (as `CollectorRegistry.get_sample_value`):
        for tests and tools; it collects everything."""
        wanted = dict(labels or {})
        for family in self.collect():
            for sample in family.samples:
                if sample.name == name and sample.labels == wanted:
                    return float(sample.value)
        return None


class _OneTarget(Readable):
    """One target's families, as last written when collected."""

    def __init__(self, families: JobFamilies, key: LabelValues) -> None:
        self._of = families
        self._key = key

    def collect(self) -> Iterator[Metric]:
        return self._of.families_of(self._key)


class _Memo:
    """What one target's renders keep from one to the next: capped label sets, and each
    family's label strings."""

    def __init__(self) -> None:
        self.capped: RenderMemo[LabelValues, LabelValues] = RenderMemo(cap_all)
        self.writers: dict[tuple[str, ...], LabelWriter] = {}


@dataclass(frozen=True, eq=False)
class _Render:
    """One target's sample lines per family, and what they were written from."""

    target: LabelValues  # account and region as configured
    labels: LabelValues  # the same, capped: the label values every line starts with
    snapshot: StoreSnapshot
    status: TargetStatus
    options: ExpositionOptions
    lines: Mapping[str, SampleLines]


def _lines(
    metric: MetricSpec, samples: Samples, writers: dict[tuple[str, ...], LabelWriter]
) -> SampleLines:
    writer = writers.get((metric.name, *metric.labels))
    if writer is None:
        writer = writers[(metric.name, *metric.labels)] = LabelWriter(metric.labels)
    writer.start()
    if metric.type == "histogram":
        return histogram_lines(metric, writer, samples.histograms)
    return value_lines(metric, writer, samples.values, samples.exemplars)


def _merged(group: list[_Render], options: ExpositionOptions) -> _Render:
    """Targets whose capped account and region coincide (names longer than a label value
    may be) share their series: their samples are merged, as equal label sets are."""
    if len(group) == 1:
        return group[0]
    merged = new_samples()
    for render in group:
        account, region = render.target
        one = target_samples(account, region, render.snapshot, render.status, options)
        for name, family_samples in one.items():
            merged[name].update(family_samples)
    writers: dict[tuple[str, ...], LabelWriter] = {}
    lines = {name: _lines(options.spec(name), merged[name], writers) for name in options.families()}
    first = group[0]
    return _Render(first.target, first.labels, first.snapshot, first.status, options, lines)


def _slow_family(metric: MetricSpec, name: str, renders: Sequence[_Render]) -> Metric:
    """The family as prometheus_client's own classes hold it, for encoders that read
    samples (see `exporter.metrics.text`)."""
    merged = Samples(COMBINE[name])
    for render in renders:
        account, region = render.target
        one = target_samples(account, region, render.snapshot, render.status, render.options)
        merged.update(one[name])
    return client_family(metric, merged)


def _name(view: TargetView) -> str:
    # For the log only; even a view whose attributes raise must not escape collect().
    try:
        return f"account={view.account} region={view.region}"
    except Exception:
        return object.__repr__(view)
