"""The side outputs' own metrics: the state file's errors and the job events' queue.

Their owners (`StateFile`, `JobEvents`) report each change through the callbacks here;
the families are rows of the metric table changed through `Instrument`s, which report
every change to the exposition themselves.
"""

from __future__ import annotations

from exporter.metrics.self_metrics import SelfMetrics

# The `operation` label values of alb_exporter_state_errors_total, both exposed from 0.
OPERATIONS = ("restore", "save")


class OutputMetrics:
    def __init__(self, metrics: SelfMetrics) -> None:
        self._state_errors = metrics.instrument("alb_exporter_state_errors_total")
        for operation in OPERATIONS:
            self._state_errors.inc(operation, amount=0)
        self._queued = metrics.instrument("alb_exporter_job_events_queued")
        self._queued.set(0)
        self._dropped = metrics.instrument("alb_exporter_job_events_dropped_total")
        self._dropped.inc(amount=0)

    def state_error(self, operation: str) -> None:
        """`StateFile`'s `on_error`."""
        self._state_errors.inc(operation)

    def events(self, queued: int, dropped: int) -> None:
        """`JobEvents`' `on_change`: the lines queued now, and how many this change dropped."""
        self._queued.set(queued)
        if dropped:
            self._dropped.inc(amount=dropped)
