"""The per-target API request metrics: `alb_exporter_api_requests_total` and
`alb_exporter_api_request_duration_seconds`.

They were prometheus_client's own Counter and Histogram, which format all their series on
every render: 15 per target, about 0.4 s per render at 1,000 targets, as much as the job
families after those learned to write their own text. Here each target's lines are
written when its requests change and kept (`exporter.metrics.text`), in the same bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.jobs.snapshot import Histogram, HistogramSnapshot
from exporter.metrics.table import API_DURATION_BUCKETS, family_name, spec
from exporter.metrics.text import (
    LabelWriter,
    RenderedFamily,
    SampleLines,
    go_float,
    histogram_lines,
    value_lines,
)

REQUESTS = spec("alb_exporter_api_requests_total")
DURATION = spec("alb_exporter_api_request_duration_seconds")


class _Target:
    """One target's requests; `lines` their text, None after a change."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {"OK": 0}
        self.histogram = Histogram(API_DURATION_BUCKETS)
        self.lines: tuple[SampleLines, SampleLines] | None = None


class RequestMetrics(Collector):
    """Request counts by code and the request-duration histogram of every target.

    Series exist from `register` on (OK at 0, an empty histogram), so rates work from the
    first request. Targets come out sorted by account and region, their codes sorted.
    Thread-safe: observations come from the refresh threads.
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        """`on_change()` after every change (see `SelfMetrics`)."""
        self._changed = on_change or (lambda: None)
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, str], _Target] = {}

    def register(self, account: str, region: str) -> None:
        with self._lock:
            self._targets.setdefault((account, region), _Target())
        self._changed()

    def observe(self, account: str, region: str, code: str, seconds: float) -> None:
        with self._lock:
            target = self._targets.setdefault((account, region), _Target())
            target.codes[code] = target.codes.get(code, 0) + 1
            target.histogram.observe(seconds)
            target.lines = None
        self._changed()

    def forget(self, account: str, region: str) -> None:
        with self._lock:
            self._targets.pop((account, region), None)
        self._changed()

    def describe(self) -> list[Metric]:
        return [_counter(), _histogram()]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            targets = sorted(self._targets.items())
            counts, durations = [], []
            writers = (LabelWriter(REQUESTS.labels), LabelWriter(DURATION.labels))
            for key, target in targets:
                if target.lines is None:
                    target.lines = _lines(key, target, *writers)
                counts.append(target.lines[0])
                durations.append(target.lines[1])
            # Copies for the samples, which prometheus_client's own encoders may ask for.
            held = [(key, dict(t.codes), t.histogram.snapshot()) for key, t in targets]
        yield RenderedFamily(REQUESTS, counts, lambda: _counter(held))
        yield RenderedFamily(DURATION, durations, lambda: _histogram(held))


Held = list[tuple[tuple[str, str], dict[str, int], HistogramSnapshot]]


def _lines(
    key: tuple[str, str], target: _Target, counts: LabelWriter, durations: LabelWriter
) -> tuple[SampleLines, SampleLines]:
    by_code: dict[tuple[str, ...], float] = {(*key, code): n for code, n in target.codes.items()}
    return (
        value_lines(REQUESTS, counts, by_code),
        histogram_lines(DURATION, durations, {key: target.histogram.snapshot()}),
    )


def _counter(held: Held | None = None) -> CounterMetricFamily:
    family = CounterMetricFamily(family_name(REQUESTS), REQUESTS.help, labels=REQUESTS.labels)
    for key, codes, _ in held or ():
        for code in sorted(codes):
            family.add_metric((*key, code), codes[code])
    return family


def _histogram(held: Held | None = None) -> HistogramMetricFamily:
    family = HistogramMetricFamily(family_name(DURATION), DURATION.help, labels=DURATION.labels)
    for key, _, snap in held or ():
        buckets = [(go_float(bound), float(n)) for bound, n in snap.buckets]
        family.add_metric(key, buckets, snap.sum)
    return family
