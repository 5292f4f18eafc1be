"""Job events (config `job_events`): one JSON line per job counted as finished, for Loki,
SLS or any log pipeline, so that the on-call engineer reads a failed job's ErrorMessage
next to its alert instead of calling ListAsynJobs by hand.

The lines are emitted where the counters count (the store reports what each update
counted), so the counters' rule holds for them too: once ever, never repeated across a
restart with `state_file`, none missing that the counters have. They go to stdout (the
exporter's own log lines go to stderr) or are appended to a file or named pipe that SIGHUP
reopens, for logrotate's rename-then-signal.

A refresh only formats its lines and queues them; one writer thread (`event_writer`)
takes them to the output. So a slow, stalled or not-yet-open output (a pipe nobody reads
yet, a full container log pipe, a hung network share) delays neither refreshes nor
scrapes: the queue holds up to `job_events.queue_size` lines, and past that new lines are
dropped and counted (`alb_exporter_job_events_dropped_total`), never blocked on.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from exporter.jobs.event_writer import STDOUT, EventWriter
from exporter.jobs.model import Job, cap_text

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_QUEUE_SIZE", "STDOUT", "JobEvents", "event", "line"]

# Lines held while the output does not take them: about 10 MB of typical events, hours of
# failures at any realistic rate, and the `queue_size` default of the config.
DEFAULT_QUEUE_SIZE = 10_000
# How long SIGTERM waits for the queue to reach the output (Kubernetes kills 30 s after).
DEFAULT_FLUSH_TIMEOUT = 3.0
# Tells these lines from any other JSON on the same stream (a pipeline routes on it).
EVENT_TYPE = "alb_job_event"


def rfc3339(timestamp: float) -> str:
    """UTC, millisecond precision, `Z`: what Loki, SLS and Go's time.Parse all read."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(account: str, region: str, job: Job, now: float) -> dict[str, Any]:
    """The event of one counted job (SPEC "Job events")."""
    return {
        "type": EVENT_TYPE,
        "ts": rfc3339(now),
        "account": account,
        "region": region,
        "job_id": cap_text(job.id),
        "status": cap_text(job.status),
        "api_name": cap_text(job.api_name),
        "operate_type": cap_text(job.operate_type),
        "resource_type": cap_text(job.resource_type),
        "resource_id": cap_text(job.resource_id),
        "error_code": cap_text(job.error_code),
        "error_message": cap_text(job.error_message),
        "create_time": rfc3339(job.create_time),
        "modify_time": rfc3339(job.modify_time),
        "duration_seconds": round(max(0.0, job.modify_time - job.create_time), 3),
    }


def line(record: dict[str, Any]) -> str:
    # json escapes quotes, newlines and control characters, so one event is one line
    # whatever the API put in its strings; cap_text has already replaced lone surrogates.
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


class JobEvents:
    """Queues events of the chosen statuses for the writer; output "" is off. One per
    process, so a reload that changes `job_events` switches it in place. Thread-safe:
    targets refresh concurrently. `emit` never waits for the output."""

    def __init__(
        self,
        output: str = "",
        statuses: Iterable[str] = ("Failed",),
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        stdout_fd: int = 1,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        """`on_change(queued, dropped)` is called after each change: the lines queued now,
        and how many this change dropped. `stdout_fd` is where "stdout" writes (tests pass
        a pipe)."""
        self._on_change = on_change or (lambda _queued, _dropped: None)
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._statuses: frozenset[str] = frozenset()
        self._size = queue_size
        self._dropped = 0
        self._dropping = 0  # lines dropped in the current episode of a full queue
        self._writer = EventWriter(self._cond, self._queue, self._written, stdout_fd=stdout_fd)
        self.configure(output, statuses, queue_size)

    def configure(
        self, output: str, statuses: Iterable[str], queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        with self._cond:
            self._statuses = frozenset(statuses)
            self._size = queue_size
            if output == self._writer.output:
                return
            lost = len(self._queue) if not output else 0
            if lost:
                # Turned off: what was waiting has nowhere to go (counted as dropped).
                log.info("job_events turned off: %d queued events dropped", lost)
                self._dropped += lost
                self._dropping = 0
                self._queue.clear()
            self._writer.switch(output)
            self._on_change(0 if lost else len(self._queue), lost)

    def emit(self, account: str, region: str, jobs: Iterable[Job], now: float) -> None:
        with self._cond:
            if not self._writer.output:
                return
            statuses = self._statuses
        lines = [line(event(account, region, job, now)) for job in jobs if job.status in statuses]
        if not lines:
            return
        with self._cond:
            if not self._writer.output:
                return
            room = max(0, self._size - len(self._queue))
            self._queue.extend(lines[:room])
            lost = max(0, len(lines) - room)
            if lost:
                self._drop_locked(lost)
            # Under the lock, as the writer's reports are: a length reported after the
            # lock is released could land after a later one and stick.
            self._on_change(len(self._queue), lost)
            self._cond.notify_all()

    def _drop_locked(self, count: int) -> None:
        if not self._dropping:
            # Once per episode: the queue is full because the output stopped taking lines.
            log.warning(
                "job_events: %d lines queued for %s, which is not taking them; new events "
                "are dropped until it does (alb_exporter_job_events_dropped_total counts "
                "them; raise job_events.queue_size to hold more)",
                len(self._queue),
                self._writer.output,
            )
        self._dropped += count
        self._dropping += count

    def _written(self, count: int) -> None:
        """The writer took `count` lines off the queue's head (called under the lock)."""
        # The episode ends when the output has caught up, not at the first line it takes: a
        # slow reader would otherwise start a new episode (and a log line) per write.
        if self._dropping and not self._queue:
            log.info(
                "job_events: %s takes lines again; %d events were dropped meanwhile",
                self._writer.output,
                self._dropping,
            )
            self._dropping = 0
        self._on_change(len(self._queue), 0)

    def stats(self) -> tuple[int, int]:
        """(lines queued, lines dropped so far)."""
        with self._cond:
            return len(self._queue), self._dropped

    def reopen(self) -> None:
        """SIGHUP: logrotate renamed the file; continue in a new one at the same path (also
        a pipe whose reader restarted). Lines not yet written go to the new one."""
        self._writer.reopen()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued line is written; False at the deadline."""
        return self._writer.flush(timeout)

    def close(self, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> None:
        """Write what is queued (up to `timeout`), then stop the writer."""
        if not self.flush(timeout):
            queued, _ = self.stats()
            log.error(
                "job_events: %d events were not written: %s did not take them within %gs",
                queued,
                self._writer.output,
                timeout,
            )
        self._writer.stop()
