"""The side outputs' own metrics: the state file's errors and the job events' queue.

Read from their owners at every collection (`StateFile.errors()`, `JobEvents.stats()`),
so the numbers exposed are the owners' and nothing here has to be told of each change;
the owners bump the render cache's generation when they change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.metrics.table import family_name, spec

# (operation -> count), e.g. StateFile.errors; both operations exposed from 0 on.
StateErrors = Callable[[], Mapping[str, int]]
# (queued, dropped), e.g. JobEvents.stats.
EventStats = Callable[[], tuple[int, int]]

OPERATIONS = ("restore", "save")


class OutputsCollector(Collector):
    def __init__(self, state_errors: StateErrors | None, events: EventStats) -> None:
        self._state_errors = state_errors
        self._events = events

    def collect(self) -> Iterator[Metric]:
        errors = self._state_errors() if self._state_errors is not None else {}
        metric = spec("alb_exporter_state_errors_total")
        family = CounterMetricFamily(family_name(metric), metric.help, labels=metric.labels)
        for operation in OPERATIONS:
            family.add_metric([operation], errors.get(operation, 0))
        yield family
        queued, dropped = self._events()
        metric = spec("alb_exporter_job_events_queued")
        yield GaugeMetricFamily(metric.name, metric.help, value=queued)
        metric = spec("alb_exporter_job_events_dropped_total")
        yield CounterMetricFamily(family_name(metric), metric.help, value=dropped)
