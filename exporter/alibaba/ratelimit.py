"""A shared, adaptive request budget: one token bucket per account and region.

ALB counts its API quota per main account, region and API, and Terraform, the console and
ingress controllers draw from the same quota, so every scrape of one account's region takes
its calls from that region's bucket, and the regions do not share one. A Throttling answer
halves that region's rate (and `x-acs-retry-after` pauses that region only); the rate then
grows back linearly to the configured maximum.
Knows nothing of HTTP or Prometheus: the client calls `acquire()` before each request and
`throttled()` when the API says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from exporter.errors import TransportError

# After a halving, the rate climbs back to the maximum over this long (per halving step),
# so a burst of throttling is followed by minutes of gentler traffic, not seconds.
DEFAULT_RECOVERY_SECONDS = 60.0
# The rate never drops below this fraction of the maximum: the exporter must still make
# progress while someone else exhausts the quota.
MIN_RATE_FRACTION = 1 / 8


class TokenBucket:
    """Thread-safe token bucket with multiplicative decrease and linear recovery."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        recovery_seconds: float = DEFAULT_RECOVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.max_rate = float(rate)
        self._capacity = max(1.0, float(burst if burst is not None else rate))
        self._recovery = recovery_seconds
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate = self.max_rate
        self._tokens = self._capacity
        self._updated = clock()
        self._paused_until = 0.0
        self._closed = False

    def close(self) -> None:
        """Make waiting and later `acquire()` calls fail at once (shutdown must not wait
        for paced refreshes)."""
        with self._lock:
            self._closed = True

    @property
    def rate(self) -> float:
        with self._lock:
            self._refill(self._clock())
            return self._rate

    def acquire(self) -> None:
        """Block until one request may be sent."""
        while True:
            with self._lock:
                if self._closed:
                    raise TransportError("the exporter is shutting down")
                now = self._clock()
                self._refill(now)
                if now < self._paused_until:
                    wait = self._paused_until - now
                # The tolerance absorbs rounding: a wait of 1e-17 s would not advance a clock.
                elif self._tokens >= 1.0 - 1e-9:
                    self._tokens -= 1.0
                    return
                else:
                    wait = (1.0 - self._tokens) / self._rate
            # Short naps so that close() takes effect soon.
            self._sleep(min(wait, 0.5))

    def throttled(self, retry_after: float | None = None) -> None:
        """The API answered Throttling*: halve the rate; pause for `retry_after` seconds."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._rate = max(self.max_rate * MIN_RATE_FRACTION, self._rate / 2)
            self._tokens = min(self._tokens, 0.0)
            if retry_after is not None and retry_after > 0:
                self._paused_until = max(self._paused_until, now + retry_after)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        if self._rate < self.max_rate and self._recovery > 0:
            self._rate = min(self.max_rate, self._rate + self.max_rate * elapsed / self._recovery)
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
