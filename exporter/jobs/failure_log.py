"""How a target's refresh failures reach the log: at `error` while they persist, rate
limited, and the recovery at `info`.

The runbook tells on-call to look for `level=error`; a failure that lasts is an error,
but one log line per scrape for hours would drown every other line. So: the first
failure at once; the same failure again at most every `REPEAT` seconds, with how many
refreshes failed meanwhile; a different failure (another class or API code) at once; and
once a refresh succeeds, one `info` line saying how long it was down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

REPEAT = 300.0  # seconds between two lines about the same persisting failure


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class FailureLog:
    """One target's failure log lines (not thread-safe: a target refreshes one at a time)."""

    def __init__(
        self, target: str, *, repeat: float = REPEAT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._target = target  # "account=prod region=cn-hangzhou"
        self._repeat = repeat
        self._clock = clock
        self._since: float | None = None  # when the current run of failures started
        self._kind: str | None = None  # the kind last logged
        self._logged_at = 0.0
        self._failures = 0  # refreshes failed in this run
        self._unlogged = 0  # of them, not logged since the last line

    def failed(self, error: str, kind: str) -> None:
        now = self._clock()
        if self._since is None:
            self._since = now
        self._failures += 1
        self._unlogged += 1
        if kind == self._kind and now - self._logged_at < self._repeat:
            log.debug("refresh of %s failed again: %s", self._target, error)
            return
        if kind == self._kind:
            log.error(
                "refresh of %s still failing for %s (%d failed refreshes since the last"
                " report): %s",
                self._target,
                _span(now - self._since),
                self._unlogged,
                error,
            )
        else:
            log.error("refresh of %s failed: %s", self._target, error)
        self._kind = kind
        self._logged_at = now
        self._unlogged = 0

    def succeeded(self) -> None:
        if self._since is None:
            return
        log.info(
            "%s recovered after %s (%d failed refreshes)",
            self._target,
            _span(self._clock() - self._since),
            self._failures,
        )
        self._since = self._kind = None
        self._failures = self._unlogged = 0
