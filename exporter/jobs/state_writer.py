"""The state file's background writer: saves happen off the refresh a scrape waits for.

Encoding and fsyncing the state of every target grows as targets x jobs (15 MB at 100k
jobs held); done inside a refresh it held up the scrape waiting for that refresh. A
refresh now only asks for a save; one thread writes, at most one save is pending, and
the requests of a burst (many targets finishing together) become one save.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from exporter.jobs.state import StateFile
from exporter.jobs.target import Target

log = logging.getLogger(__name__)

# Requests within this long of the first one are written by one save: a scrape's refreshes
# of many targets end within about a second of each other. It is also the longest a moved
# counter waits for the disk (a crash in that second loses it; SIGTERM does not).
DEFAULT_DEBOUNCE = 1.0


class StateWriter:
    """One daemon thread that saves `state` (`maybe_save`) after `request()`.

    Thread-safe. An `OSError` (a full disk, a read-only volume) is an operator problem:
    one error line without traceback per distinct cause, then quiet until the cause
    changes or a save succeeds again. `close()` stops the thread and writes once more.
    """

    def __init__(
        self,
        state: StateFile,
        targets: Callable[[], Iterable[Target]],
        *,
        debounce: float | None = None,
    ) -> None:
        self.state = state
        self._targets = targets
        self._debounce = DEFAULT_DEBOUNCE if debounce is None else debounce
        self._cond = threading.Condition()
        self._pending = False
        self._saving = False
        self._stopping = False
        self._saves = 0  # finished save attempts, for `wait_idle` and tests
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
        self._thread.start()

    @property
    def saves(self) -> int:
        with self._cond:
            return self._saves

    def request(self) -> None:
        """Ask for a save; returns at once. Requests before the save starts share it."""
        with self._cond:
            if not self._stopping:
                self._pending = True
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no save is pending or running; False at the deadline."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._saving, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread (a save in progress finishes) and write the state once more."""
        with self._cond:
            self._stopping = True
            self._pending = False
            self._cond.notify_all()
        self._thread.join(timeout)
        self._attempt(self.state.save)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    return
                # Let the burst this request belongs to finish; later requests join it.
                self._cond.wait_for(lambda: self._stopping, self._debounce)
                if self._stopping:
                    return
                self._pending = False
                self._saving = True
            try:
                self._attempt(self.state.maybe_save)
            finally:
                with self._cond:
                    self._saving = False
                    self._saves += 1
                    self._cond.notify_all()

    def _attempt(self, save: Callable[[Iterable[Target]], object]) -> None:
        try:
            save(self._targets())
        except OSError as exc:
            kind = f"{type(exc).__name__}:{exc.errno}"
            if kind != self._error:
                log.error(
                    "cannot write state file %s: %s; counters are kept in memory and "
                    "written once it can be (alb_exporter_state_errors_total"
                    '{operation="save"} counts the attempts)',
                    self.state.path,
                    exc,
                )
            self._error = kind
        except Exception:  # a bug must not stop the writer: the next request tries again
            log.exception("writing state file %s failed", self.state.path)
        else:
            if self._error is not None:
                log.info("state file %s written again", self.state.path)
            self._error = None
