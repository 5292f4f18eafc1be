"""The job events' writer thread: takes queued lines to the output, never blocking anyone.

The output is opened and written without blocking (`O_NONBLOCK`, `poll` with a short
timeout), so this thread too stays responsive to SIGHUP (reopen) and SIGTERM (stop):

- a named pipe that no reader has opened yet fails to open with ENXIO: "not ready", the
  lines stay queued and the open is tried again every `RETRY_INTERVAL`;
- a pipe whose reader stopped reading (full) is polled: the lines stay queued;
- a reader that went away (EPIPE) closes the output, which is opened again;
- writes are whole batches of lines of at most PIPE_BUF bytes, which a pipe takes whole
  or not at all, and lines leave the queue only once written: none is written twice or
  lost in between. (A single line longer than PIPE_BUF, possible only with long multibyte
  strings, may be cut by a failing output and is then written again whole.)

A regular file on a hung network share can still block a write; then only this thread
waits, and shutdown gives up on it after its deadline.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger("exporter.jobs.events")

STDOUT = "stdout"
# A pipe write of at most this many bytes is atomic (POSIX: at least 512; Linux 4096).
PIPE_BUF = getattr(select, "PIPE_BUF", 512)
RETRY_INTERVAL = 0.5  # seconds between attempts to open an output that is not ready
POLL_INTERVAL = 0.2  # seconds a write waits for room before looking at signals again


class _Sink:
    def __init__(self, fd: int, *, owned: bool) -> None:
        self.fd = fd
        self._owned = owned  # stdout is borrowed: never closed here
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)

    def write(self, data: bytes) -> int:
        """Bytes written, 0 when there is no room within POLL_INTERVAL; OSError else."""
        if not self._poll.poll(POLL_INTERVAL * 1000):
            return 0
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self._owned:
            with contextlib.suppress(OSError):
                os.close(self.fd)


class EventWriter:
    """Writes the head of `queue` (shared with `JobEvents`, guarded by `cond`) to `output`.
    `written(n)` is called under `cond` after n lines left the queue's head."""

    def __init__(
        self,
        cond: threading.Condition,
        queue: deque[str],
        written: Callable[[int], None],
        *,
        stdout_fd: int = 1,
    ) -> None:
        self._cond = cond
        self._queue = queue
        self._written = written
        self._stdout_fd = stdout_fd
        self.output = ""  # guarded by cond
        self._reopen = False
        self._stopping = False
        self._problem: str | None = None  # writer thread only
        self._thread: threading.Thread | None = None

    def switch(self, output: str) -> None:
        """A new output (config); the caller holds `cond`."""
        self.output = output
        self._reopen = True
        if output and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="job-events", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._reopen = True
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue or not self.output, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1.0)  # a write hung on a network share is given up

    def _run(self) -> None:
        sink: _Sink | None = None
        batch: list[str] = []
        data = b""
        offset = 0
        while True:
            with self._cond:
                if self._stopping:
                    break
                if self._reopen and offset == 0:
                    self._reopen = False
                    if sink is not None:
                        sink.close()
                        sink = None
                target = self.output
                if not target:  # turned off: what was queued is gone (and counted)
                    if sink is not None:
                        sink.close()
                        sink = None
                    batch, data, offset = [], b"", 0
                    self._cond.wait()
                    continue
                if not batch and self._queue and sink is not None:
                    batch = _batch(self._queue)
                    data = "".join(batch).encode("utf-8")
            if sink is None:
                # Opened at once, lines or not: a SIGHUP creates the new file right away
                # (as logrotate expects), and a bad path is reported at start-up.
                sink = self._open(target)
                if sink is None:
                    self._pause()
                continue
            if not batch:
                with self._cond:
                    self._cond.wait_for(lambda: bool(self._queue) or self._reopen or self._stopping)
                continue
            try:
                offset += sink.write(data[offset : offset + PIPE_BUF])
            except OSError as exc:
                self._report(logging.ERROR, f"cannot write job_events.output {target}: {exc}")
                sink.close()
                sink = None
                offset = 0  # the batch again, whole, to the output opened next
                self._pause()
                continue
            if offset < len(data):
                continue
            with self._cond:
                count = 0
                # Only the lines written: the queue may have been cleared (output off).
                while count < len(batch) and self._queue and self._queue[0] is batch[count]:
                    self._queue.popleft()
                    count += 1
                self._written(count)
                self._cond.notify_all()
            batch, data, offset = [], b"", 0
            if self._problem is not None:
                log.info("job_events.output %s takes events again", target)
                self._problem = None
        if sink is not None:
            sink.close()

    def _open(self, target: str) -> _Sink | None:
        if target == STDOUT:
            return _Sink(self._stdout_fd, owned=False)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            return _Sink(os.open(target, flags, 0o644), owned=True)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                self._report(
                    logging.WARNING,
                    f"job_events.output {target} is a named pipe that no reader has open; "
                    "events are queued until one does",
                )
            else:
                self._report(logging.ERROR, f"cannot open job_events.output {target}: {exc}")
            return None

    def _report(self, level: int, message: str) -> None:
        # Once per distinct problem: an operator problem, not a flood.
        if message != self._problem:
            log.log(level, "%s", message)
        self._problem = message

    def _pause(self) -> None:
        """Wait before trying again; a reopen or stop ends the wait."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or self._reopen, RETRY_INTERVAL)


def _batch(queue: deque[str]) -> list[str]:
    """Lines from the head of the queue, at most PIPE_BUF bytes together (at least one)."""
    batch = [queue[0]]
    size = len(queue[0].encode("utf-8"))
    for text in _head(queue, 64)[1:]:
        size += len(text.encode("utf-8"))
        if size > PIPE_BUF:
            break
        batch.append(text)
    return batch


def _head(queue: deque[str], n: int) -> list[str]:
    return [queue[i] for i in range(min(n, len(queue)))]
