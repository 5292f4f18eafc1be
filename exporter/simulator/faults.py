"""Fault knobs (throttling, server errors, latency, malformed bodies, paging bugs, denials,
clock skew), set globally or per region, and their injection into authenticated requests."""

from __future__ import annotations

import base64
import math
import random
import threading
from dataclasses import dataclass, fields, replace
from typing import Any, cast

from exporter.simulator.jobs import Region
from exporter.simulator.messages import Reject
from exporter.simulator.world import World
from exporter.wire import ACTION

# What the `malformed` knob turns a successful answer into (see `listing.render`).
MALFORMED = (
    "truncated",
    "html502",
    "jobs_null",
    "missing_fields",
    "wrong_types",
    "extra_fields",
    "not_json",
    "no_jobs",
)
# `error_code` knob -> HTTP status, as the gateway answers them.
SERVER_ERRORS = {
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (
        500,
        "The request processing has failed due to some unknown error, exception or failure.",
    ),
    "UnknownError": (500, "The server encountered an unknown error."),
    "SystemBusy": (400, "System is busy, please try again later."),
}


@dataclass(frozen=True)
class Faults:
    """Fault knobs. Set globally or per region; a region's own settings win per knob."""

    throttle: float = 0.0  # probability of 400 Throttling.User
    throttle_every: int = 0  # every Nth authenticated request is throttled (0: off)
    retry_after_ms: int = 0  # adds `x-acs-retry-after` to throttling answers (0: no header)
    error_rate: float = 0.0  # probability of a server error
    error_every: int = 0  # every Nth authenticated request fails with `error_code`
    error_code: str = "ServiceUnavailable"  # or InternalError, UnknownError, SystemBusy
    latency: float = 0.0  # seconds added to every answer
    hang: float = 0.0  # seconds to sleep before answering (for client timeouts)
    malformed: str = ""  # one of MALFORMED: what a successful answer turns into
    endless_next_token: bool = False  # every page has a fresh NextToken, even past the end
    repeat_next_token: bool = False  # a page returns the NextToken it was asked with
    duplicate_across_pages: bool = False  # each page repeats the previous page's last job
    status_flip_between_pages: bool = False  # that job is stale (Processing) on the first
    deny: str = ""  # e.g. "Forbidden.RAM": every request gets 403 with this code
    clock_skew: float = 0.0  # seconds added to the gateway clock used for timestamp checks
    # What BeginTime/EndTime filter on: the real API's choice is unconfirmed, and the
    # exporter must be right under either.
    begin_time_field: str = "CreateTime"  # or "ModifyTime"


DEFAULT_FAULTS = Faults()
FAULT_KNOBS = tuple(f.name for f in fields(Faults))


def coerce_knob(name: str, value: object) -> object:
    """Parse one knob value from Python, JSON or a CLI string; None restores the default."""
    if name not in FAULT_KNOBS:
        raise ValueError(f"unknown fault knob {name!r} (known: {', '.join(FAULT_KNOBS)})")
    default = getattr(DEFAULT_FAULTS, name)
    if value is None:
        return default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                text = value.strip().lower()
                if text not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                    raise ValueError(value)
                parsed: object = text in ("1", "true", "yes", "on")
            elif isinstance(value, int | float) and value in (0, 1):
                parsed = bool(value)
            else:
                raise ValueError(value)
        elif isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            parsed = int(cast(Any, value))
            if parsed < 0:
                raise ValueError(value)
        elif isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError(value)
            parsed = float(cast(Any, value))
            if not math.isfinite(parsed) or (name != "clock_skew" and parsed < 0):
                raise ValueError(value)
        else:
            if not isinstance(value, str):
                raise ValueError(value)
            parsed = value
    except (TypeError, ValueError):
        raise ValueError(f"fault knob {name}: invalid value {value!r}") from None
    if name in ("throttle", "error_rate") and not 0.0 <= cast(float, parsed) <= 1.0:
        raise ValueError(f"fault knob {name}: a probability must be within 0..1")
    if name == "malformed" and parsed not in ("", *MALFORMED):
        raise ValueError(f"fault knob malformed: one of {', '.join(MALFORMED)}")
    if name == "begin_time_field" and parsed not in ("CreateTime", "ModifyTime"):
        raise ValueError("fault knob begin_time_field: CreateTime or ModifyTime")
    if name == "error_code" and parsed not in SERVER_ERRORS:
        raise ValueError(f"fault knob error_code: one of {', '.join(SERVER_ERRORS)}")
    return parsed


class FaultBoard:
    """The knobs in force (global and per region) and the RNG their probabilities draw on."""

    def __init__(self, lock: threading.RLock, world: World, seed: int) -> None:
        self._lock = lock
        self._world = world
        self._rng = random.Random(f"{seed}/faults")
        self._global: dict[str, object] = {}
        self._regions: dict[str, dict[str, object]] = {}
        self._cleared = threading.Event()

    def set(self, region: str | None, **knobs: object) -> None:
        """Set fault knobs globally or for one region (a value of None restores a default).

        Every-Nth counters restart, so `throttle_every=3` throttles the 3rd request after it.
        """
        parsed = {name: coerce_knob(name, value) for name, value in knobs.items()}
        with self._lock:
            if region is None:
                target = self._global
                for state in self._world.regions.values():
                    state.fault_counter = 0
            else:
                target = self._regions.setdefault(self._world.check_region(region), {})
                self._world.state(region).fault_counter = 0
            for name, value in parsed.items():
                if value == getattr(DEFAULT_FAULTS, name):
                    target.pop(name, None)
                else:
                    target[name] = value

    def clear(self, region: str | None) -> None:
        """Remove every fault knob (or only one region's own settings). Answers still held
        back by latency or hang go out now, as when a real network recovers: a test that
        ends a slow phase does not wait for that phase's last answers."""
        with self._lock:
            self._cleared.set()
            self._cleared = threading.Event()
            if region is None:
                self._global.clear()
                self._regions.clear()
            else:
                self._regions.pop(region, None)
            for state in self._world.regions.values():
                state.fault_counter = 0

    def cleared(self) -> threading.Event:
        """Set by the next `clear`: what a delayed answer waits on besides its delay."""
        with self._lock:
            return self._cleared

    def effective(self, region: str | None) -> Faults:
        """The knobs in effect for a region (global settings overlaid by the region's)."""
        with self._lock:
            merged = {**self._global, **self._regions.get(region or "", {})}
            return replace(DEFAULT_FAULTS, **cast(Any, merged))

    def snapshot(self) -> dict[str, Any]:
        """The knobs set, as `Simulator.state()` shows them (defaults left out)."""
        with self._lock:
            return {
                "global": dict(self._global),
                "regions": {r: dict(k) for r, k in self._regions.items() if k},
            }

    def inject(self, state: Region, faults: Faults) -> None:
        """Count one authenticated request of the region; raise the fault it gets, if any."""
        state.fault_counter += 1
        n = state.fault_counter
        if faults.deny:
            raise Reject(
                403,
                faults.deny,
                "User not authorized to operate on the specified resource, "
                "or this API doesn't support RAM.",
                extra={
                    "AccessDeniedDetail": {
                        "AuthAction": f"alb:{ACTION}",
                        "AuthPrincipalType": "SubUser",
                        "AuthPrincipalDisplayName": "simulated-user",
                        "AuthPrincipalOwnerId": "1234567890123456",
                        "NoPermissionType": "ImplicitDeny",
                        "PolicyType": "AccountLevelIdentityBasedPolicy",
                        "EncodedDiagnosticMessage": base64.b64encode(b"simulated").decode(),
                    }
                },
            )
        if (faults.throttle_every and n % faults.throttle_every == 0) or (
            faults.throttle and self._rng.random() < faults.throttle
        ):
            headers: tuple[tuple[str, str], ...] = ()
            if faults.retry_after_ms:
                headers = (("x-acs-retry-after", str(faults.retry_after_ms)),)
            raise Reject(
                400, "Throttling.User", "Request was denied due to api flow control.", headers
            )
        if (faults.error_every and n % faults.error_every == 0) or (
            faults.error_rate and self._rng.random() < faults.error_rate
        ):
            status, message = SERVER_ERRORS[faults.error_code]
            raise Reject(status, faults.error_code, message)
