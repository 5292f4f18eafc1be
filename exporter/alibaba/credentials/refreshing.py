"""Temporary credentials kept fresh: fetched once per account (single-flight), refreshed
ahead of expiry, backed off after failures, each kind of failure warned about once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from exporter.alibaba.credentials.base import Options, log
from exporter.alibaba.signing import Credential, format_timestamp
from exporter.errors import CredentialsError, FetchError

# Temporary credentials are refreshed when less than min(15 min, a third of their lifetime)
# is left: 15 min as the official SDKs do, a third so that short-lived ones are not
# refreshed on every request.
REFRESH_MARGIN = 15 * 60.0
# A forced refresh (the API said the token expired) is ignored this soon after a fetch: the
# other regions' requests signed with the old token fail too and must not each fetch again.
FORCED_REFRESH_INTERVAL = 2.0
# After a failed fetch the next attempt waits BACKOFF_BASE seconds, doubling per failure up
# to BACKOFF_CAP: about once a minute while STS is down.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0


class RefreshingProvider:
    """Temporary credentials from `fetch`, shared by every region of one account.

    `get()` returns the cached credential until less than min(15 min, a third of its
    lifetime) is left, then fetches anew under a lock: concurrent callers wait for that one
    fetch (single-flight). After a failed fetch the next attempt waits (exponential backoff,
    1 s doubling up to 60 s); meanwhile the old credential is used while it is still valid,
    else the last error is raised at once.
    """

    def __init__(
        self,
        source: str,
        fetch: Callable[[], Credential],
        options: Options,
        *,
        quiet: bool = False,
    ) -> None:
        self.source = source
        self._fetch = fetch
        self._options = options
        # A chain link being probed (ECS, URI): failing is expected, logged at debug. The
        # chain clears it once the link is chosen: from then on a failure is a fault.
        self.quiet = quiet
        self._lock = threading.Lock()
        self._credential: Credential | None = None
        self._fetched_at = 0.0
        self._refresh_at = 0.0
        self._retry_at = 0.0
        self._failures = 0
        self._error: CredentialsError | None = None
        # The kind of the last failure logged at warning (its code, and whether a valid
        # credential was still at hand), so a repeat is logged at debug only.
        self._logged_kind: str | None = None

    def expiration(self) -> float | None:
        with self._lock:
            return self._credential.expiration if self._credential else None

    def invalidate(self) -> None:
        with self._lock:
            now = self._options.clock()
            if self._credential is not None and now - self._fetched_at >= FORCED_REFRESH_INTERVAL:
                self._refresh_at = now

    def get(self) -> Credential:
        with self._lock:
            now = self._options.clock()
            current = self._credential
            if current is not None and now < self._refresh_at:
                return current
            if now < self._retry_at and self._error is not None:
                if _still_valid(current, now):
                    return current  # type: ignore[return-value]  # checked by _still_valid
                raise self._error
            return self._refresh(now, current)

    def _refresh(self, now: float, current: Credential | None) -> Credential:
        context = f"{self._options.context}: {self.source}"
        try:
            fresh = self._fetch()
            expiration = fresh.expiration
            if expiration is None or expiration <= now:
                raise FetchError("the credentials received have already expired", "Expired")
        except FetchError as exc:
            self._report(exc.code, None)
            return self._failed(CredentialsError(f"{context}: {exc}"), exc.code, now, current)
        except CredentialsError as exc:  # from a source provider: already reported there
            return self._failed(exc, "source", now, current)
        self._report("OK", expiration)
        lifetime = expiration - now
        self._credential = fresh
        self._fetched_at = now
        self._refresh_at = expiration - min(REFRESH_MARGIN, lifetime / 3)
        failures = self._failures
        self._failures, self._retry_at, self._error = 0, 0.0, None
        if self._logged_kind is not None:
            self._logged_kind = None
            log.info(
                "%s: temporary credentials %s after %d failed attempt%s, valid until %s",
                context,
                "refreshed" if current is not None else "obtained",
                failures,
                "" if failures == 1 else "s",
                format_timestamp(expiration),
            )
            return fresh
        log.log(
            logging.DEBUG if current is not None else logging.INFO,
            "%s: temporary credentials %s, valid until %s",
            context,
            "refreshed" if current is not None else "obtained",
            format_timestamp(expiration),
        )
        return fresh

    def _failed(
        self, error: CredentialsError, code: str, now: float, current: Credential | None
    ) -> Credential:
        # Logged once per kind of failure at warning, then at debug while it repeats (every
        # backoff step, up to once a minute while STS is down), like a target's refresh
        # errors; the recovery is logged at info. Never at error: that level is for bugs.
        self._failures += 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (self._failures - 1))
        self._retry_at = now + delay
        self._error = error
        still_valid = _still_valid(current, now)
        kind = f"{code}:{'kept' if still_valid else 'none'}"
        if self.quiet or kind == self._logged_kind:
            level = logging.DEBUG
        else:
            level, self._logged_kind = logging.WARNING, kind
        if still_valid:
            assert current is not None and current.expiration is not None
            log.log(
                level,
                "%s; still using the current credentials (valid until %s), next try in %gs",
                error,
                format_timestamp(current.expiration),
                delay,
            )
            return current
        log.log(level, "%s; next try in %gs", error, delay)
        raise error

    def _report(self, code: str, expiration: float | None) -> None:
        if self._options.observer is not None:
            self._options.observer(self.source, code, expiration)


def _still_valid(credential: Credential | None, now: float) -> bool:
    return (
        credential is not None and credential.expiration is not None and credential.expiration > now
    )
