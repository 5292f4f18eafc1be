"""The job collector: each target's job families, written from its store snapshot and kept
until its data changes (the web routes collect once per change of the data, not once per
scrape); the samples themselves are built by `exporter.metrics.samples`.

Knows nothing of httpx: targets are read through `TargetView`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.jobs.snapshot import StoreSnapshot
from exporter.jobs.target import TargetStatus
from exporter.metrics.samples import (
    COMBINE,
    SOURCES,
    ExpositionOptions,
    LabelValues,
    Samples,
    cap_all,
    client_family,
    empty_family,
    new_samples,
    sum_values,
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
    """What the collector needs of a target (exporter.targets.Target fits)."""

    @property
    def account(self) -> str: ...

    @property
    def region(self) -> str: ...

    def snapshot(self) -> StoreSnapshot: ...

    def status(self) -> TargetStatus: ...


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
        return [empty_family(spec(name)) for name in JOB_COLLECTOR_METRICS]

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
        lines: dict[str, SampleLines] = {}
        if held is not None and held.options is options:
            # Families whose source the store published unchanged keep their lines.
            for name in families:
                source = SOURCES.get(name)
                if source is not None and source(snap) is source(held.snapshot):
                    lines[name] = held.lines[name]
        todo = [name for name in families if name not in lines]
        samples = target_samples(account, region, snap, status, options, memo.capped, todo)
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
    merged = Samples(COMBINE.get(name, sum_values))
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
