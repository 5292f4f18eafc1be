"""The Simulator facade: one lock, the simulated time, and the dispatch of each request to the
part that answers it (the ALB endpoint, the STS and metadata stand-ins, the control API).

Two clocks are involved on purpose. The *simulated* time (`Simulator.now()`: the injected
clock plus an offset, or a frozen instant) drives the jobs. The *gateway* clock (the injected
clock plus the `clock_skew` knob) checks timestamps, nonces and STS expiry, so that tests can
freeze or advance the jobs while real clients keep signing with the real time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from exporter.simulator.alb import AlbApi
from exporter.simulator.control import Control
from exporter.simulator.directory import Directory
from exporter.simulator.faults import FaultBoard, Faults
from exporter.simulator.gateway import Gateway, Keys
from exporter.simulator.identity import Identity
from exporter.simulator.listing import Listing
from exporter.simulator.messages import SimRequest, SimResponse
from exporter.simulator.parts import Parts
from exporter.simulator.resource_directory import ResourceDirectoryApi
from exporter.simulator.world import SimClock, World

DEFAULT_REGIONS = ("cn-hangzhou",)


class Simulator:
    """The simulated ALB service: job sets per region, credentials, faults, request log.

    Thread-safe; every method may be called from any thread. Python API units: seconds for
    `now()`, `advance()`, `set_status(modify_time=)`, `issue_sts()`; API-shaped dicts
    (`jobs()`, `upsert_job()` fields, the control endpoints) use the API's field names and
    epoch milliseconds.
    """

    def __init__(
        self,
        regions: Sequence[str] = DEFAULT_REGIONS,
        *,
        seed: int = 0,
        jobs_per_minute: float = 6.0,
        history_seconds: float = 2 * 3600.0,
        retention_seconds: float = 24 * 3600.0,
        credentials: Mapping[str, str] | None = None,
        faults: Mapping[str, object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not regions:
            raise ValueError("at least one region is needed")
        if jobs_per_minute < 0 or history_seconds < 0 or retention_seconds <= 0:
            raise ValueError("jobs_per_minute and history_seconds must be >= 0, retention > 0")
        # One lock for every part: a request sees the jobs, keys and knobs of one instant.
        self._lock = threading.RLock()
        self._time = SimClock(self._lock, clock)
        self._keys = Keys(self._lock, clock, credentials)
        self._world = World(
            self._time,
            regions,
            seed=seed,
            jobs_per_minute=float(jobs_per_minute),
            history_ms=int(history_seconds * 1000),
            retention_ms=int(max(retention_seconds, history_seconds) * 1000),
        )
        self._faults = FaultBoard(self._lock, self._world, seed)
        self._gateway = Gateway(clock, self._keys, self._faults)
        self._directory = Directory()
        parts = Parts(
            self._lock,
            clock,
            self._world,
            self._keys,
            self._faults,
            self._gateway,
            self._directory,
        )
        self._rd = ResourceDirectoryApi(parts)
        self._alb = AlbApi(parts, Listing(self._world, self._time))
        self._identity = Identity(parts, self._world.default_region)
        self._control = Control(self, self._lock)
        if faults:
            self.set_faults(None, **faults)

    # --- time ------------------------------------------------------------------------------

    def now(self) -> float:
        """The simulated time in Unix seconds (what the jobs' status is computed at)."""
        return self._time.now()

    def freeze(self) -> None:
        """Stop simulated time where it is now (until `unfreeze()`)."""
        self._time.freeze()

    def unfreeze(self) -> None:
        """Let simulated time run again, continuing from the frozen instant."""
        self._time.unfreeze()

    @property
    def frozen(self) -> bool:
        return self._time.frozen

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (jobs arrive and finish as if that time had passed)."""
        self._time.advance(seconds)

    # --- regions and jobs ------------------------------------------------------------------

    @property
    def default_region(self) -> str:
        """The region of requests to '/' on a host that names none."""
        return self._world.default_region

    @property
    def regions(self) -> list[str]:
        """Configured regions first, then the ones created on first use."""
        with self._lock:
            return list(self._world.regions)

    @property
    def jobs_per_minute(self) -> float:
        return self._world.jobs_per_minute

    @jobs_per_minute.setter
    def jobs_per_minute(self, value: float) -> None:
        self._world.jobs_per_minute = value

    def jobs(self, region: str | None = None) -> list[dict[str, Any]]:
        """Every job of the region as the API would show it now, in listing order."""
        return self._world.jobs(region)

    def upsert_job(self, region: str, **fields: Any) -> dict[str, Any]:
        """Add a job or override fields of an existing one; returns its current view.

        Fields use the API names (`Id`, `ApiName`, `OperateType`, `ResourceType`,
        `ResourceId`, `Status`, `ErrorCode`, `ErrorMessage`, `CreateTime`, `ModifyTime`),
        times in epoch ms. A new job defaults to a Processing CreateLoadBalancer created now.
        `Status` Processing keeps the job Processing until changed; Succeeded/Failed finish
        it at `ModifyTime` (default: now, or the old finish time of an already finished job;
        a future ModifyTime means "Processing until then").
        Error fields are only shown while the job is Failed; omit them to get a Failed job
        without ErrorCode. Unknown field names raise ValueError.
        """
        return self._world.upsert_job(region, **fields)

    def set_status(
        self,
        region: str,
        job_id: str,
        status: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        modify_time: float | None = None,
    ) -> dict[str, Any]:
        """Change an existing job's status (KeyError if unknown), as `upsert_job` does.

        `modify_time` is in Unix seconds (default: now, or the old finish time of a job that
        had already finished); error fields are replaced only when given.
        """
        fields: dict[str, Any] = {"Status": status}
        if error_code is not None:
            fields["ErrorCode"] = error_code
        if error_message is not None:
            fields["ErrorMessage"] = error_message
        if modify_time is not None:
            fields["ModifyTime"] = int(modify_time * 1000)
        return self._world.update_job(region, job_id, **fields)

    def remove_job(self, region: str, job_id: str) -> None:
        """Forget a job (as if retention dropped it); KeyError if unknown."""
        self._world.remove_job(region, job_id)

    # --- credentials -----------------------------------------------------------------------

    @property
    def credentials(self) -> dict[str, str]:
        """AccessKeyId -> secret of the long-lived keys; tests may add or revoke keys."""
        return self._keys.credentials

    @credentials.setter
    def credentials(self, value: dict[str, str]) -> None:
        self._keys.credentials = value

    @property
    def sts_tokens(self) -> dict[str, tuple[str, str, float]]:
        """SecurityToken -> (AccessKeyId, secret, expires_at) of the keys issued so far."""
        return self._keys.sts_tokens

    @sts_tokens.setter
    def sts_tokens(self, value: dict[str, tuple[str, str, float]]) -> None:
        self._keys.sts_tokens = value

    def issue_sts(self, ttl: float = 3600.0) -> tuple[str, str, str, float]:
        """Issue temporary credentials: (AccessKeyId, secret, SecurityToken, expires_at)."""
        return self._keys.issue(ttl)

    # --- STS and ECS metadata stand-ins ----------------------------------------------------

    def identity_calls(self) -> list[dict[str, Any]]:
        """STS and metadata requests (no secrets: OIDC tokens as SHA-256 prefixes only)."""
        return self._identity.calls()

    def identity_settings(self) -> dict[str, Any]:
        return self._identity.settings()

    def set_identity(self, **settings: Any) -> None:
        """Set STS / metadata knobs: sts_ttl (seconds or None), sts_error (a code or None),
        deny_roles, oidc_tokens (accepted tokens; empty: any), imds_role, imds_v1, imds_v2."""
        self._identity.set(**settings)

    # The same knobs one by one, as attributes (`sim.sts_ttl = 3.0`).

    @property
    def sts_ttl(self) -> float | None:
        """Lifetime of issued keys in seconds; None: the requested DurationSeconds."""
        return self._identity.sts_ttl

    @sts_ttl.setter
    def sts_ttl(self, value: float | None) -> None:
        self._identity.sts_ttl = value

    @property
    def sts_error(self) -> str | None:
        """Every STS call fails with this code (None: none do)."""
        return self._identity.sts_error

    @sts_error.setter
    def sts_error(self, value: str | None) -> None:
        self._identity.sts_error = value

    @property
    def deny_roles(self) -> set[str]:
        """AssumeRole* of these roles answers NoPermission."""
        return self._identity.deny_roles

    @deny_roles.setter
    def deny_roles(self, value: set[str]) -> None:
        self._identity.deny_roles = value

    @property
    def oidc_tokens(self) -> set[str]:
        """The OIDC tokens AssumeRoleWithOIDC accepts; empty: any."""
        return self._identity.oidc_tokens

    @oidc_tokens.setter
    def oidc_tokens(self, value: set[str]) -> None:
        self._identity.oidc_tokens = value

    @property
    def imds_role(self) -> str | None:
        """The RAM role attached to the simulated instance; None: none."""
        return self._identity.imds_role

    @imds_role.setter
    def imds_role(self, value: str | None) -> None:
        self._identity.imds_role = value

    @property
    def imds_v1(self) -> bool:
        """Metadata requests without a token are answered."""
        return self._identity.imds_v1

    @imds_v1.setter
    def imds_v1(self, value: bool) -> None:
        self._identity.imds_v1 = value

    @property
    def imds_v2(self) -> bool:
        """PUT /latest/api/token is answered."""
        return self._identity.imds_v2

    @imds_v2.setter
    def imds_v2(self, value: bool) -> None:
        self._identity.imds_v2 = value

    # --- faults ----------------------------------------------------------------------------

    def set_faults(self, region: str | None = None, **knobs: object) -> None:
        """Set fault knobs globally or for one region (a value of None restores a default).

        Every-Nth counters restart, so `throttle_every=3` throttles the 3rd request after it.
        """
        self._faults.set(region, **knobs)

    def clear_faults(self, region: str | None = None) -> None:
        """Remove every fault knob (or only one region's own settings)."""
        self._faults.clear(region)

    def faults(self, region: str | None = None) -> Faults:
        """The knobs in effect for a region (global settings overlaid by the region's)."""
        return self._faults.effective(region)

    # --- the organisation (Resource Directory, DescribeRegions, member roles) -------------

    def directory(self) -> dict[str, Any]:
        """Members, management keys, offered regions, discovery faults and call counts."""
        with self._lock:
            return self._directory.settings()

    def set_directory(self, **settings: Any) -> None:
        """Replace members (list of dicts), management_keys, offered (regions) or faults
        (`list_accounts` / `describe_regions`: "", throttle, 5xx, malformed, timeout, deny)."""
        with self._lock:
            self._directory.set(settings)

    def add_member(self, **member: Any) -> dict[str, Any]:
        with self._lock:
            return asdict(self._directory.add(member))

    def update_member(self, account_id: str, **changes: Any) -> dict[str, Any]:
        with self._lock:
            return asdict(self._directory.update(account_id, **changes))

    def remove_member(self, account_id: str) -> None:
        with self._lock:
            self._directory.remove(account_id)

    def directory_requests(self) -> list[dict[str, Any]]:
        """ListAccounts requests (key id, params, status, code; no secrets)."""
        return self._rd.requests()

    # --- observation -----------------------------------------------------------------------

    def request_count(self, region: str | None = None) -> int:
        """ListAsynJobs requests received (whatever their outcome), for a region or all."""
        return self._alb.request_count(region)

    def last_params(self, region: str) -> dict[str, str] | None:
        """Business parameters (no signature, nonce, key or token) of the region's last request."""
        return self._alb.last_params(region)

    def requests(self, region: str | None = None) -> list[dict[str, Any]]:
        """The last requests (method, path, region, scheme, key id, params, status, code)."""
        return self._alb.requests(region)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "now": self.now(),
                "frozen": self.frozen,
                "default_region": self.default_region,
                "regions": self.regions,
                "jobs_per_minute": self.jobs_per_minute,
                "faults": self._faults.snapshot(),
                "request_counts": {r: s.requests for r, s in self._world.regions.items()},
            }

    # --- HTTP-level handling ---------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one HTTP request: the ALB API or a `/_sim/` control endpoint."""
        path, _, raw_query = request.target.partition("?")
        if path == "/_sim" or path.startswith("/_sim/"):
            return self._control.handle(request, path, raw_query)
        if path in ("/sts", "/sts/"):
            return self._identity.sts(request, raw_query)
        if path.startswith("/latest/"):
            return self._identity.metadata(request, path)
        if path in ("/rd", "/rd/"):
            return self._rd.handle(request, path, raw_query)
        return self._alb.handle(request, path, raw_query)
