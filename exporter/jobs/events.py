"""Job events (config `job_events`): one JSON line per job counted as finished, for Loki,
SLS or any log pipeline, so that the on-call engineer reads a failed job's ErrorMessage
next to its alert instead of calling ListAsynJobs by hand.

The lines are emitted where the counters count (the store reports what each update
counted), so the counters' rule holds for them too: once ever, never repeated across a
restart with `state_file`, none missing that the counters have. They go to stdout (the
exporter's own log lines go to stderr) or are appended to a file that SIGHUP reopens, for
logrotate's rename-then-signal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from exporter.jobs.model import Job, cap_text

log = logging.getLogger(__name__)

STDOUT = "stdout"
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
    """Writes events for the chosen statuses; output "" is off. One per process, so that a
    reload that changes `job_events` switches it in place. Thread-safe: targets refresh
    concurrently."""

    def __init__(
        self,
        output: str = "",
        statuses: Iterable[str] = ("Failed",),
        *,
        stdout: TextIO | None = None,
    ) -> None:
        self._stdout = stdout
        self._lock = threading.Lock()
        self._output = ""
        self._statuses: frozenset[str] = frozenset()
        self._file: TextIO | None = None
        self._error: str | None = None
        self.configure(output, statuses)

    def configure(self, output: str, statuses: Iterable[str]) -> None:
        with self._lock:
            self._statuses = frozenset(statuses)
            if output == self._output:
                return
            self._close_file()
            self._output = output
            if output not in ("", STDOUT):
                self._file = self._open()

    def _open(self) -> TextIO | None:
        try:
            # Line-buffered append: each event reaches the file whole, in order.
            return open(self._output, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            self._report(f"cannot open job_events.output {self._output}: {exc}")
            return None

    def _report(self, message: str) -> None:
        # Once per distinct problem, like the state file: an operator problem, not a flood.
        if message != self._error:
            log.error("%s", message)
        self._error = message

    def emit(self, account: str, region: str, jobs: Iterable[Job], now: float) -> None:
        with self._lock:
            if not self._output:
                return
            text = "".join(
                line(event(account, region, job, now))
                for job in jobs
                if job.status in self._statuses
            )
            stream = self._stream() if text else None
            if stream is None:
                return
            try:
                stream.write(text)
                stream.flush()
            except OSError as exc:
                self._report(f"cannot write job_events.output {self._output}: {exc}")
                if stream is self._file:
                    self._close_file()  # the next event tries a fresh handle
            else:
                self._error = None

    def _stream(self) -> TextIO | None:
        if self._output == STDOUT:
            return self._stdout or sys.stdout
        if self._file is None:
            self._file = self._open()  # a directory that was missing may be there now
        return self._file

    def reopen(self) -> None:
        """SIGHUP: logrotate renamed the file; continue in a new one at the same path."""
        with self._lock:
            if self._file is not None:
                self._close_file()
                self._file = self._open()

    def close(self) -> None:
        with self._lock:
            self._close_file()
            self._output = ""

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
