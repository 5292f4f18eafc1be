"""A stand-in for the ALB `ListAsynJobs` API, used by `--demo` and by every end-to-end test.

It speaks real HTTP, checks V1 and V3 signatures exactly as the gateway does (with our own
`signing` functions), serves per-region jobs that evolve with simulated time, and has fault
knobs (throttling, 5xx, hangs, malformed bodies, paging bugs, denials, clock skew).
Standalone: `python -m exporter.simulator --listen 127.0.0.1:0` (see `--help`).

Two clocks are involved on purpose. The *simulated* time (`Simulator.now()`: the injected
clock plus an offset, or a frozen instant) drives the jobs. The *gateway* clock (the injected
clock plus the `clock_skew` knob) checks timestamps, nonces and STS expiry, so that tests can
freeze or advance the jobs while real clients keep signing with the real time.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import re
import secrets
import signal
import socket
import string
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

from exporter.alibaba import signing
from exporter.alibaba.api import (
    ACTION,
    API_VERSION,
    DEFAULT_PAGE_SIZE,
    FAILED,
    MAX_PAGE_SIZE,
    PROCESSING,
    SUCCEEDED,
)

# Named explicitly: under `python -m exporter.simulator` __name__ is "__main__".
log = logging.getLogger("exporter.simulator")

# The demo key pair: `--demo` and the standalone simulator accept it unless told otherwise.
DEMO_ACCESS_KEY_ID = "LTAIdemo0000000000000000"
DEMO_ACCESS_KEY_SECRET = "demo-secret-not-real"
DEFAULT_REGIONS = ("cn-hangzhou",)

# The gateway rejects timestamps more than 15 minutes off and remembers nonces for as long.
TIMESTAMP_TOLERANCE_SECONDS = 15 * 60
NONCE_WINDOW_SECONDS = 15 * 60

_MAX_RESULTS_DEFAULT = DEFAULT_PAGE_SIZE
_MAX_RESULTS_LIMIT = MAX_PAGE_SIZE
_REQUEST_LOG_SIZE = 1000
_PRUNE_INTERVAL_MS = 60_000
_STUCK_PROBABILITY = 0.02
_FAIL_PROBABILITY = 0.10
_JSON = "application/json;charset=utf-8"

_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z0-9]+)+$")
_HOST_RE = re.compile(r"^alb(?:-vpc)?\.([a-z0-9-]+)\.aliyuncs\.com$")
_ARRAY_RE = re.compile(r"^(JobIds|ResourceIds)\.(\d+)$")
STS_API_VERSION = "2015-04-01"
_ROLE_ARN_RE = re.compile(r"^acs:ram::\d+:role/\S+$")
_OIDC_PROVIDER_RE = re.compile(r"^acs:ram::\d+:oidc-provider/\S+$")
# `sts_error` knob -> (HTTP status, message), as STS answers them.
_STS_ERRORS = {
    "EntityNotExist.Role": (404, "The role not exists."),
    "NoPermission": (
        403,
        "You are not authorized to do this action. You should be authorized by RAM.",
    ),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (500, "The request processing has failed due to some unknown error."),
}

# V1 common parameters: authentication, not business. Kept out of request logs and of the
# NextToken fingerprint (they change on every request).
_V1_COMMON = frozenset(
    {
        "AccessKeyId",
        "Action",
        "Format",
        "SecurityToken",
        "Signature",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureType",
        "SignatureVersion",
        "Timestamp",
        "Version",
    }
)
_API_FIELDS = (
    "Id",
    "ApiName",
    "OperateType",
    "ResourceType",
    "ResourceId",
    "Status",
    "ErrorCode",
    "ErrorMessage",
    "CreateTime",
    "ModifyTime",
)
_RESOURCE_PREFIX = {
    "loadbalancer": "alb-",
    "listener": "lsn-",
    "servergroup": "sgp-",
    "rule": "rule-",
    "acl": "acl-",
    "securitypolicy": "spy-",
}
_ID_ALPHABET = string.ascii_lowercase + string.digits
_MALFORMED = ("truncated", "html502", "jobs_null", "missing_fields", "wrong_types", "extra_fields",
              "not_json")  # fmt: skip
# `error_code` knob -> HTTP status, as the gateway answers them.
_SERVER_ERRORS = {
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (
        500,
        "The request processing has failed due to some unknown error, exception or failure.",
    ),
    "UnknownError": (500, "The server encountered an unknown error."),
    "SystemBusy": (400, "System is busy, please try again later."),
}
_TENGINE_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


# --- job generation ------------------------------------------------------------------------

_LOCKED = ("Conflict.Lock", "The resource is being modified by another task, try again later.")
_LB_MISSING = ("ResourceNotFound.LoadBalancer", "The specified load balancer does not exist.")
_LB_STATUS = (
    "IncorrectStatus.LoadBalancer",
    "The current status of the load balancer does not support this operation.",
)
_LSN_MISSING = ("ResourceNotFound.Listener", "The specified listener does not exist.")
_SGP_MISSING = ("ResourceNotFound.ServerGroup", "The specified server group does not exist.")
_SGP_STATUS = (
    "IncorrectStatus.ServerGroup",
    "The current status of the server group does not support this operation.",
)
_RULE_MISSING = ("ResourceNotFound.Rule", "The specified forwarding rule does not exist.")
_ACL_MISSING = ("ResourceNotFound.Acl", "The specified ACL does not exist.")


@dataclass(frozen=True)
class _Template:
    api_name: str
    resource_type: str
    operate_type: str
    weight: int  # relative frequency: server-group membership changes dominate real accounts
    errors: tuple[tuple[str, str], ...]  # (ErrorCode, ErrorMessage) a failure picks from
    slowness: float = 1.0  # scales the typical duration (creating a load balancer is slow)


_TEMPLATES = (
    _Template("CreateLoadBalancer", "loadbalancer", "Create", 3, (
        ("506", "AllocateEipAddress Failed"),
        ("QuotaExceeded.LoadBalancersNum", "The number of load balancers exceeds the quota."),
        _LOCKED), slowness=4.0),
    _Template("UpdateLoadBalancerAttribute", "loadbalancer", "Update", 2, (_LB_STATUS, _LOCKED)),
    _Template("DeleteLoadBalancer", "loadbalancer", "Delete", 1,
              (_LB_STATUS, _LB_MISSING, _LOCKED), slowness=2.0),
    _Template("CreateListener", "listener", "Create", 4, (
        ("QuotaExceeded.ListenersNum", "The number of listeners exceeds the quota."),
        _LB_MISSING, _LB_STATUS, _LOCKED)),
    _Template("UpdateListenerAttribute", "listener", "Update", 5, (
        _LSN_MISSING, ("IncorrectStatus.Listener", "The current status of the listener does "
                       "not support this operation."), _LOCKED)),
    _Template("DeleteListener", "listener", "Delete", 1, (_LSN_MISSING, _LOCKED)),
    _Template("CreateServerGroup", "servergroup", "Create", 2, (
        ("QuotaExceeded.ServerGroupsNum", "The number of server groups exceeds the quota."),
        _LOCKED)),
    _Template("AddServersToServerGroup", "servergroup", "Update", 14, (
        ("QuotaExceeded.ServersNum", "The number of backend servers exceeds the quota."),
        _SGP_MISSING, _SGP_STATUS, _LOCKED)),
    _Template("RemoveServersFromServerGroup", "servergroup", "Update", 10, (
        ("ResourceNotFound.BackendServer", "The specified backend server does not exist."),
        _SGP_STATUS, _LOCKED)),
    _Template("CreateRule", "rule", "Create", 5, (
        ("QuotaExceeded.RulesNum", "The number of forwarding rules exceeds the quota."),
        _LSN_MISSING, _LOCKED)),
    _Template("UpdateRuleAttribute", "rule", "Update", 3, (_RULE_MISSING, _LOCKED)),
    _Template("DeleteRule", "rule", "Delete", 2, (_RULE_MISSING, _LOCKED)),
    _Template("CreateAcl", "acl", "Create", 1, (
        ("QuotaExceeded.AclsNum", "The number of ACLs exceeds the quota."), _LOCKED)),
    _Template("AddEntriesToAcl", "acl", "Update", 3, (
        ("QuotaExceeded.AclEntriesNum", "The number of ACL entries exceeds the quota."),
        _ACL_MISSING, _LOCKED)),
    _Template("RemoveEntriesFromAcl", "acl", "Update", 2, (_ACL_MISSING, _LOCKED)),
    _Template("CreateSecurityPolicy", "securitypolicy", "Create", 1, (
        ("QuotaExceeded.SecurityPoliciesNum", "The number of security policies exceeds the "
         "quota."), _LOCKED)),
    _Template("UpdateSecurityPolicyAttribute", "securitypolicy", "Update", 1, (
        ("ResourceNotFound.SecurityPolicy", "The specified security policy does not exist."),
        _LOCKED)),
    _Template("DeleteSecurityPolicy", "securitypolicy", "Delete", 1, (
        ("ResourceInUse.SecurityPolicy", "The security policy is in use by a listener."),
        _LOCKED)),
)  # fmt: skip
_WEIGHTS = [t.weight for t in _TEMPLATES]


@dataclass
class _SimJob:
    """One job and its fate: Processing until `finish_ms`, then `outcome` (never if None)."""

    id: str
    api_name: str
    operate_type: str
    resource_type: str
    resource_id: str
    create_ms: int
    finish_ms: int | None
    outcome: str = SUCCEEDED
    error_code: str | None = None
    error_message: str | None = None
    explicit: bool = False  # set through the test API: never dropped by retention

    def status(self, now_ms: int) -> str:
        if self.finish_ms is None or now_ms < self.finish_ms:
            return PROCESSING
        return self.outcome

    def view(self, now_ms: int) -> dict[str, Any]:
        """The job as the API shows it at `now_ms` (times in epoch ms)."""
        status = self.status(now_ms)
        out: dict[str, Any] = {
            "Id": self.id,
            "ApiName": self.api_name,
            "OperateType": self.operate_type,
            "ResourceType": self.resource_type,
            "ResourceId": self.resource_id,
            "Status": status,
        }
        # Like the API: the error fields exist on failed jobs only.
        if status == FAILED:
            if self.error_code is not None:
                out["ErrorCode"] = self.error_code
            if self.error_message is not None:
                out["ErrorMessage"] = self.error_message
        out["CreateTime"] = self.create_ms
        out["ModifyTime"] = self.create_ms if status == PROCESSING else self.finish_ms
        return out


@dataclass
class _Region:
    name: str
    rng: random.Random
    next_arrival_ms: int
    jobs: dict[str, _SimJob] = field(default_factory=dict)
    # `jobs` in listing order and their negated CreateTimes (ascending, for bisect), built
    # on demand by `Simulator._listing`; every change to `jobs` must reset `listing` to None.
    listing: list[_SimJob] | None = None
    listing_keys: list[int] = field(default_factory=list)
    pools: dict[str, list[str]] = field(default_factory=dict)  # live resource ids per type
    last_prune_ms: int = 0
    requests: int = 0
    fault_counter: int = 0  # authenticated requests since the faults last changed
    last_params: dict[str, str] | None = None


def _in_time_range(
    job: _SimJob, now_ms: int, field_name: str, begin: int | None, end: int | None
) -> bool:
    if begin is None and end is None:
        return True
    value = job.create_ms
    if field_name == "ModifyTime":
        value = job.create_ms if job.status(now_ms) == PROCESSING else job.finish_ms or value
    return (begin is None or value >= begin) and (end is None or value <= end)


# --- fault knobs ---------------------------------------------------------------------------


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
    malformed: str = ""  # one of _MALFORMED: what a successful answer turns into
    endless_next_token: bool = False  # every page has a fresh NextToken, even past the end
    repeat_next_token: bool = False  # a page returns the NextToken it was asked with
    duplicate_across_pages: bool = False  # each page repeats the previous page's last job
    status_flip_between_pages: bool = False  # that job is stale (Processing) on the first
    deny: str = ""  # e.g. "Forbidden.RAM": every request gets 403 with this code
    clock_skew: float = 0.0  # seconds added to the gateway clock used for timestamp checks
    # What BeginTime/EndTime filter on: the real API's choice is unconfirmed, and the
    # exporter must be right under either.
    begin_time_field: str = "CreateTime"  # or "ModifyTime"


_DEFAULT_FAULTS = Faults()
FAULT_KNOBS = tuple(f.name for f in fields(Faults))


def _coerce_knob(name: str, value: object) -> object:
    """Parse one knob value from Python, JSON or a CLI string; None restores the default."""
    if name not in FAULT_KNOBS:
        raise ValueError(f"unknown fault knob {name!r} (known: {', '.join(FAULT_KNOBS)})")
    default = getattr(_DEFAULT_FAULTS, name)
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
    if name == "malformed" and parsed not in ("", *_MALFORMED):
        raise ValueError(f"fault knob malformed: one of {', '.join(_MALFORMED)}")
    if name == "begin_time_field" and parsed not in ("CreateTime", "ModifyTime"):
        raise ValueError("fault knob begin_time_field: CreateTime or ModifyTime")
    if name == "error_code" and parsed not in _SERVER_ERRORS:
        raise ValueError(f"fault knob error_code: one of {', '.join(_SERVER_ERRORS)}")
    return parsed


# --- requests and answers ------------------------------------------------------------------


@dataclass(frozen=True)
class SimRequest:
    """One HTTP request as the server received it (the seam between HTTP and the logic)."""

    method: str
    target: str  # the raw request-target: path and query, undecoded
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    client: str = "127.0.0.1"

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for k, v in self.headers if k.lower() == lower]


@dataclass(frozen=True)
class SimResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    delay: float = 0.0  # seconds the server waits before sending (latency / hang knobs)

    def json(self) -> Any:
        return json.loads(self.body)


class _Reject(Exception):
    """An error answer in the gateway's shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = dict(extra or {})


class _ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _missing(name: str) -> _Reject:
    return _Reject(
        400,
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request '
        "is not supplied.",
    )


def _incomplete(detail: str) -> _Reject:
    return _Reject(
        400,
        "IncompleteSignature",
        f"The request signature does not conform to Aliyun standards. {detail}",
    )


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _iso(ms: Any) -> Any:
    if not isinstance(ms, int):
        return ms
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_timestamp(value: str, name: str) -> float:
    try:
        parsed = datetime.strptime(value, signing.TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _Reject(
            400,
            "InvalidTimeStamp.Format",
            f"Specified time stamp or date value is not well formatted: {name}.",
        ) from None
    return parsed.timestamp()


def _credential_of(authorization: str) -> str | None:
    match = re.search(r"Credential=([^,\s]*)", authorization)
    return match.group(1) if match else None


def _is_loopback(client: str) -> bool:
    return client in ("::1", "localhost") or client.startswith(("127.", "::ffff:127."))


# --- the simulator -------------------------------------------------------------------------


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
        self._lock = threading.RLock()
        self._clock = clock
        self._seed = seed
        self.jobs_per_minute = float(jobs_per_minute)
        self._history_ms = int(history_seconds * 1000)
        # Generated jobs older than this are forgotten (the real retention is unknown).
        self._retention_ms = int(max(retention_seconds, history_seconds) * 1000)
        self._offset = 0.0
        self._frozen_at: float | None = None
        # AccessKeyId -> secret of long-lived keys. Public so tests may add or revoke keys.
        self.credentials: dict[str, str] = dict(
            credentials if credentials is not None else {DEMO_ACCESS_KEY_ID: DEMO_ACCESS_KEY_SECRET}
        )
        # SecurityToken -> (AccessKeyId, secret, expires_at): temporary keys from issue_sts().
        self.sts_tokens: dict[str, tuple[str, str, float]] = {}
        self._sts_ids: dict[str, str] = {}  # STS AccessKeyId -> its token
        # STS / ECS metadata stand-ins: knobs (`set_identity`) and their request log.
        self.sts_ttl: float | None = None  # lifetime of issued keys; None: DurationSeconds
        self.sts_error: str | None = None  # every STS call fails with this code
        self.deny_roles: set[str] = set()  # AssumeRole* of these roles: NoPermission
        self.oidc_tokens: set[str] = set()  # accepted OIDC tokens; empty: any
        self.imds_role: str | None = None  # the instance's RAM role; None: none attached
        self.imds_v1 = True  # requests without a metadata token are answered
        self.imds_v2 = True  # PUT /latest/api/token is answered
        self._imds_tokens: dict[str, float] = {}
        self._imds_credentials: dict[str, tuple[str, str, str, float]] = {}
        self._identity_calls: deque[dict[str, Any]] = deque(maxlen=_REQUEST_LOG_SIZE)
        self._nonces: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._token_key = secrets.token_bytes(32)
        self._token_serial = 0
        self._explicit_rng = random.Random(f"{seed}/explicit")
        self._fault_rng = random.Random(f"{seed}/faults")
        self._global_faults: dict[str, object] = {}
        self._region_faults: dict[str, dict[str, object]] = {}
        self._requests: deque[dict[str, Any]] = deque(maxlen=_REQUEST_LOG_SIZE)
        self._regions: dict[str, _Region] = {}
        self.default_region = self._check_region(regions[0])
        for region in regions:
            self._state(self._check_region(region))
        if faults:
            self.set_faults(None, **faults)

    # --- time ------------------------------------------------------------------------------

    def now(self) -> float:
        """The simulated time in Unix seconds (what the jobs' status is computed at)."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return self._clock() + self._offset

    def _now_ms(self) -> int:
        return int(self.now() * 1000)

    def freeze(self) -> None:
        """Stop simulated time where it is now (until `unfreeze()`)."""
        with self._lock:
            self._frozen_at = self.now()

    def unfreeze(self) -> None:
        """Let simulated time run again, continuing from the frozen instant."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - self._clock()
                self._frozen_at = None

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._frozen_at is not None

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (jobs arrive and finish as if that time had passed)."""
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError("advance() takes a finite number of seconds >= 0")
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds

    def _gateway_time(self, region: str) -> float:
        return self._clock() + self.faults(region).clock_skew

    # --- regions and jobs ------------------------------------------------------------------

    @staticmethod
    def _check_region(region: str) -> str:
        if not isinstance(region, str) or not _REGION_RE.match(region):
            raise ValueError(f"not a region id: {region!r}")
        return region

    @property
    def regions(self) -> list[str]:
        """Configured regions first, then the ones created on first use."""
        with self._lock:
            return list(self._regions)

    def _state(self, region: str) -> _Region:
        """The region's state, created on first use and brought up to the simulated now."""
        now_ms = self._now_ms()
        state = self._regions.get(region)
        if state is None:
            # Seeded by seed and name: a region's jobs do not depend on which others exist.
            rng = random.Random(f"{self._seed}/{region}")
            state = _Region(region, rng, now_ms - self._history_ms)
            state.next_arrival_ms += self._gap_ms(rng)
            self._regions[region] = state
        self._evolve(state, now_ms)
        return state

    def _gap_ms(self, rng: random.Random) -> int:
        if self.jobs_per_minute <= 0:
            return sys.maxsize
        # Arrivals are a Poisson process: exponential gaps with the configured mean rate.
        return max(1, int(rng.expovariate(self.jobs_per_minute / 60_000.0)))

    def _evolve(self, state: _Region, now_ms: int) -> None:
        # Arrivals are drawn in order from the region's own RNG, so the job set at a given
        # simulated time is the same however often (or rarely) it was looked at.
        while state.next_arrival_ms <= now_ms:
            job = self._generate(state, state.next_arrival_ms)
            state.jobs[job.id] = job
            state.listing = None
            state.next_arrival_ms += self._gap_ms(state.rng)
        if now_ms - state.last_prune_ms >= _PRUNE_INTERVAL_MS:
            state.last_prune_ms = now_ms
            horizon = now_ms - self._retention_ms
            for job_id in [j.id for j in state.jobs.values() if j.create_ms < horizon]:
                if not state.jobs[job_id].explicit:
                    del state.jobs[job_id]
                    state.listing = None

    @staticmethod
    def _job_id(rng: random.Random) -> str:
        # Job ids look like 365F4154-92F6-4AE4-92F8-7FF34B5xxxxx: an upper-case UUID.
        return str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()

    @staticmethod
    def _resource_id(rng: random.Random, resource_type: str) -> str:
        prefix = _RESOURCE_PREFIX.get(resource_type, "res-")
        return prefix + "".join(rng.choice(_ID_ALPHABET) for _ in range(18))

    def _pick_resource(self, state: _Region, template: _Template) -> str:
        # Jobs on one account keep touching the same resources: updates and deletes pick a
        # resource created earlier, creates add one, deletes retire one.
        pool = state.pools.setdefault(template.resource_type, [])
        rng = state.rng
        if template.operate_type == "Create" or not pool:
            resource_id = self._resource_id(rng, template.resource_type)
            if template.operate_type != "Delete":
                pool.append(resource_id)
                del pool[:-50]
            return resource_id
        index = rng.randrange(len(pool))
        if template.operate_type == "Delete":
            return pool.pop(index)
        return pool[index]

    def _generate(self, state: _Region, create_ms: int) -> _SimJob:
        rng = state.rng
        template = rng.choices(_TEMPLATES, weights=_WEIGHTS)[0]
        job = _SimJob(
            id=self._job_id(rng),
            api_name=template.api_name,
            operate_type=template.operate_type,
            resource_type=template.resource_type,
            resource_id=self._pick_resource(state, template),
            create_ms=create_ms,
            finish_ms=None,
        )
        fate = rng.random()
        if fate < _STUCK_PROBABILITY:
            return job  # stays Processing until retention forgets it
        if fate < _STUCK_PROBABILITY + _FAIL_PROBABILITY:
            seconds = min(300.0, max(1.0, rng.lognormvariate(math.log(8.0), 0.8)))
            job.outcome = FAILED
            job.error_code, job.error_message = rng.choice(template.errors)
        else:
            median = 12.0 * template.slowness
            seconds = min(900.0, max(1.0, rng.lognormvariate(math.log(median), 0.8)))
        job.finish_ms = create_ms + int(seconds * 1000)
        return job

    @staticmethod
    def _order(job: _SimJob) -> tuple[int, str]:
        # The listing order: newest first, ties by Id, so that paging is deterministic.
        return (-job.create_ms, job.id)

    def _listing(self, state: _Region) -> tuple[list[_SimJob], list[int]]:
        """The region's jobs in listing order (future ones included) and their negated
        CreateTimes. Sorted once per change of the job set, not per page: the order does not
        depend on the simulated time, only a job's status does, and that is rendered per
        page (a 100k-job page-through would otherwise sort 100k jobs a thousand times)."""
        if state.listing is None:
            state.listing = sorted(state.jobs.values(), key=self._order)
            state.listing_keys = [-j.create_ms for j in state.listing]
        return state.listing, state.listing_keys

    def jobs(self, region: str | None = None) -> list[dict[str, Any]]:
        """Every job of the region as the API would show it now, in listing order."""
        with self._lock:
            state = self._state(self._check_region(region or self.default_region))
            now_ms = self._now_ms()
            listing, keys = self._listing(state)
            # Newest first: the jobs created by now are a suffix.
            return [j.view(now_ms) for j in listing[bisect.bisect_left(keys, -now_ms) :]]

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
        unknown = sorted(set(fields) - set(_API_FIELDS))
        if unknown:
            raise ValueError(f"unknown job field(s) {unknown}; known: {list(_API_FIELDS)}")
        for name in ("CreateTime", "ModifyTime"):
            if name in fields and (
                not isinstance(fields[name], int) or isinstance(fields[name], bool)
            ):
                raise ValueError(f"{name} must be an int (epoch milliseconds)")
        for name in ("Id", "ApiName", "OperateType", "ResourceType", "ResourceId", "Status"):
            if name in fields and not (isinstance(fields[name], str) and fields[name]):
                raise ValueError(f"{name} must be a non-empty string")
        for name in ("ErrorCode", "ErrorMessage"):
            if fields.get(name) is not None and not isinstance(fields[name], str):
                raise ValueError(f"{name} must be a string")
        status = fields.get("Status")
        if status is not None and status not in (PROCESSING, SUCCEEDED, FAILED):
            raise ValueError(f"Status must be {PROCESSING}, {SUCCEEDED} or {FAILED}")
        with self._lock:
            state = self._state(self._check_region(region))
            now_ms = self._now_ms()
            job_id = fields.get("Id") or self._job_id(self._explicit_rng)
            old = state.jobs.get(job_id)
            if old is None:
                resource_type = fields.get("ResourceType", "loadbalancer")
                job = _SimJob(
                    id=job_id,
                    api_name="CreateLoadBalancer",
                    operate_type="Create",
                    resource_type=resource_type,
                    resource_id=self._resource_id(self._explicit_rng, resource_type),
                    create_ms=now_ms,
                    finish_ms=None,
                    explicit=True,
                )
            else:
                job = replace(old, explicit=True)
            job.api_name = fields.get("ApiName", job.api_name)
            job.operate_type = fields.get("OperateType", job.operate_type)
            job.resource_type = fields.get("ResourceType", job.resource_type)
            job.resource_id = fields.get("ResourceId", job.resource_id)
            job.create_ms = fields.get("CreateTime", job.create_ms)
            if "ErrorCode" in fields:
                job.error_code = fields["ErrorCode"]
            if "ErrorMessage" in fields:
                job.error_message = fields["ErrorMessage"]
            if status == PROCESSING:
                job.finish_ms = None
            elif status is not None:
                finished = old is not None and old.status(now_ms) != PROCESSING
                job.outcome = status
                job.finish_ms = fields.get(
                    "ModifyTime", job.finish_ms if finished and job.finish_ms else now_ms
                )
            elif "ModifyTime" in fields:
                job.finish_ms = fields["ModifyTime"]
            if job.finish_ms is not None and job.finish_ms < job.create_ms:
                raise ValueError("ModifyTime must not be before CreateTime")
            state.jobs[job.id] = job
            state.listing = None
            return job.view(now_ms)

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
        fields: dict[str, Any] = {"Id": job_id, "Status": status}
        if error_code is not None:
            fields["ErrorCode"] = error_code
        if error_message is not None:
            fields["ErrorMessage"] = error_message
        if modify_time is not None:
            fields["ModifyTime"] = int(modify_time * 1000)
        with self._lock:
            if job_id not in self._state(self._check_region(region)).jobs:
                raise KeyError(job_id)
            return self.upsert_job(region, **fields)

    def remove_job(self, region: str, job_id: str) -> None:
        """Forget a job (as if retention dropped it); KeyError if unknown."""
        with self._lock:
            state = self._state(self._check_region(region))
            del state.jobs[job_id]
            state.listing = None

    # --- credentials -----------------------------------------------------------------------

    def issue_sts(self, ttl: float = 3600.0) -> tuple[str, str, str, float]:
        """Issue temporary credentials: (AccessKeyId, secret, SecurityToken, expires_at)."""
        access_key_id = "STS.NT" + "".join(
            secrets.choice(string.ascii_letters + string.digits) for _ in range(22)
        )
        secret = secrets.token_urlsafe(33)
        token = "CAIS" + base64.b64encode(secrets.token_bytes(240)).decode()
        with self._lock:
            expires_at = self._clock() + ttl
            self.sts_tokens[token] = (access_key_id, secret, expires_at)
            self._sts_ids[access_key_id] = token
        return access_key_id, secret, token, expires_at

    # --- STS and ECS metadata stand-ins ----------------------------------------------------
    # STS (`/sts/`): AssumeRole (V1-signed by a long-lived or STS key) and AssumeRoleWithOIDC
    # (unsigned), parameters in the query or a form body. ECS metadata (`/latest/...`): the
    # token flow and the RAM role credentials. Both issue keys with `issue_sts`, which the
    # ALB stand-in then requires with their security token. Real STS refuses
    # DurationSeconds < 900; `sts_ttl` overrides the lifetime issued so tests see expiry
    # within seconds.

    def identity_calls(self) -> list[dict[str, Any]]:
        """STS and metadata requests (no secrets: OIDC tokens as SHA-256 prefixes only)."""
        with self._lock:
            return [dict(c) for c in self._identity_calls]

    def identity_settings(self) -> dict[str, Any]:
        with self._lock:
            return {
                "sts_ttl": self.sts_ttl,
                "sts_error": self.sts_error,
                "deny_roles": sorted(self.deny_roles),
                "oidc_tokens": len(self.oidc_tokens),
                "imds_role": self.imds_role,
                "imds_v1": self.imds_v1,
                "imds_v2": self.imds_v2,
            }

    def set_identity(self, **settings: Any) -> None:
        """Set STS / metadata knobs: sts_ttl (seconds or None), sts_error (a code or None),
        deny_roles, oidc_tokens (accepted tokens; empty: any), imds_role, imds_v1, imds_v2."""
        unknown = set(settings) - set(self.identity_settings())
        if unknown:
            raise ValueError(f"unknown identity settings {sorted(unknown)}")
        with self._lock:
            if "sts_ttl" in settings:
                ttl = settings["sts_ttl"]
                self.sts_ttl = None if ttl is None else float(ttl)
            if "sts_error" in settings:
                code = settings["sts_error"] or None
                if code is not None and code not in _STS_ERRORS:
                    raise ValueError(f"sts_error: one of {', '.join(_STS_ERRORS)}")
                self.sts_error = code
            if "deny_roles" in settings:
                self.deny_roles = {str(r) for r in settings["deny_roles"] or ()}
            if "oidc_tokens" in settings:
                self.oidc_tokens = {str(t) for t in settings["oidc_tokens"] or ()}
            if "imds_role" in settings:
                self.imds_role = settings["imds_role"] or None
            for name in ("imds_v1", "imds_v2"):
                if name in settings:
                    setattr(self, name, bool(settings[name]))

    def _sts(self, request: SimRequest, raw_query: str) -> SimResponse:
        request_id = str(uuid.uuid4()).upper()
        params = {**signing.query_params(raw_query), **self._form(request)}
        action = params.get("Action", "")
        record: dict[str, Any] = {
            "time": self._clock(),
            "service": "sts",
            "action": action,
            "role_arn": params.get("RoleArn"),
            "session_name": params.get("RoleSessionName"),
            "caller": None,
            "token_sha256": None,
            "issued_key_id": None,
            "expiration": None,
        }
        with self._lock:
            try:
                if request.method not in ("GET", "POST"):
                    raise _Reject(
                        400, "UnsupportedHTTPMethod", "This http method is not supported."
                    )
                if action == "AssumeRole":
                    # The default region's clock_skew knob applies to STS as well.
                    record["caller"] = self._verify_v1(
                        request, params, self.default_region, check_action=False
                    )
                elif action == "AssumeRoleWithOIDC":
                    record["token_sha256"] = self._check_oidc(params)
                else:
                    raise _Reject(
                        404,
                        "InvalidAction.NotFound",
                        "Specified api is not found, please check your url and method.",
                    )
                if params.get("Version") != STS_API_VERSION:
                    raise _Reject(
                        404, "InvalidVersion", "Specified parameter Version is not valid."
                    )
                role_arn = params.get("RoleArn", "")
                if not role_arn:
                    raise _missing("RoleArn")
                if not _ROLE_ARN_RE.match(role_arn):
                    raise _Reject(
                        400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrong."
                    )
                if not params.get("RoleSessionName"):
                    raise _missing("RoleSessionName")
                duration = params.get("DurationSeconds", "3600")
                if not duration.isdigit() or not 900 <= int(duration) <= 43200:
                    raise _Reject(
                        400,
                        "InvalidParameter.DurationSeconds",
                        "The Min/Max value of DurationSeconds is 15min/12hr.",
                    )
                if self.sts_error is not None:
                    status, message = _STS_ERRORS[self.sts_error]
                    raise _Reject(status, self.sts_error, message)
                if role_arn in self.deny_roles:
                    raise _Reject(
                        403,
                        "NoPermission",
                        "You are not authorized to do this action. You should be authorized "
                        "by RAM.",
                    )
                ttl = self.sts_ttl if self.sts_ttl is not None else float(duration)
                key_id, secret, token, expires_at = self.issue_sts(ttl)
                status = 200
                body: dict[str, Any] = {
                    "RequestId": request_id,
                    "AssumedRoleUser": {
                        "Arn": f"{role_arn.replace(':role/', ':assumed-role/')}/"
                        f"{params['RoleSessionName']}",
                        "AssumedRoleId": f"3{secrets.randbelow(10**17):017d}:"
                        f"{params['RoleSessionName']}",
                    },
                    "Credentials": {
                        "AccessKeyId": key_id,
                        "AccessKeySecret": secret,
                        "SecurityToken": token,
                        # Whole seconds, rounded down: the client never believes in a
                        # longer life than the gateway grants.
                        "Expiration": _iso(int(expires_at * 1000)),
                    },
                }
                record.update(code="OK", issued_key_id=key_id, expiration=int(expires_at))
            except _Reject as err:
                status = err.status
                body = {
                    "RequestId": request_id,
                    "HostId": "sts.aliyuncs.com",
                    "Code": err.code,
                    "Message": err.message,
                    "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}"
                    f"&product=Sts&requestId={request_id}",
                }
                record["code"] = err.code
            record["status"] = status
            self._identity_calls.append(record)
        return SimResponse(status, (("Content-Type", _JSON),), _dumps(body))

    @staticmethod
    def _form(request: SimRequest) -> dict[str, str]:
        content_type = (request.header("content-type") or "").lower()
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return {}
        return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))

    def _check_oidc(self, params: Mapping[str, str]) -> str:
        for name in ("OIDCProviderArn", "OIDCToken"):
            if not params.get(name):
                raise _missing(name)
        if not _OIDC_PROVIDER_RE.match(params["OIDCProviderArn"]):
            raise _Reject(
                400, "InvalidParameter.OIDCProviderArn", "The parameter OIDCProviderArn is wrong."
            )
        token = params["OIDCToken"]
        fingerprint = hashlib.sha256(token.encode()).hexdigest()[:16]
        if self.oidc_tokens and token not in self.oidc_tokens:
            raise _Reject(400, "AuthenticationFail.OIDCToken.Invalid", "The OIDC token is invalid.")
        return fingerprint

    def _metadata(self, request: SimRequest, path: str) -> SimResponse:
        record: dict[str, Any] = {
            "time": self._clock(),
            "service": "metadata",
            "action": f"{request.method} {path}",
            "role_arn": None,
            "session_name": None,
            "caller": None,
            "token_sha256": None,
        }
        text = (("Content-Type", "text/plain"),)
        with self._lock:
            status, headers, body = self._metadata_answer(request, path)
            record["status"] = status
            record["code"] = "OK" if status == 200 else f"HTTP{status}"
            self._identity_calls.append(record)
        return SimResponse(status, headers or text, body)

    def _metadata_answer(
        self, request: SimRequest, path: str
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        now = self._clock()
        if path == "/latest/api/token":
            if request.method != "PUT":
                return 405, (), b"Method Not Allowed"
            if not self.imds_v2:
                return 404, (), b"Not Found"
            token_ttl = request.header("X-aliyun-ecs-metadata-token-ttl-seconds") or ""
            if not token_ttl.isdigit() or not 1 <= int(token_ttl) <= 21600:
                return 400, (), b"Bad Request"
            new_token = secrets.token_urlsafe(32)
            self._imds_tokens[new_token] = now + int(token_ttl)
            return 200, (), new_token.encode()
        token = request.header("X-aliyun-ecs-metadata-token")
        if token is not None:
            if self._imds_tokens.get(token, 0.0) <= now:
                return 401, (), b"Unauthorized"
        elif not self.imds_v1:
            return 401, (), b"Unauthorized"
        prefix = "/latest/meta-data/ram/security-credentials"
        if request.method != "GET" or not path.startswith(prefix):
            return 404, (), b"Not Found"
        name = path[len(prefix) :].strip("/")
        if self.imds_role is None or name not in ("", self.imds_role):
            return 404, (), b"Not Found"
        if not name:
            return 200, (), self.imds_role.encode()
        cached = self._imds_credentials.get(name)
        ttl = self.sts_ttl if self.sts_ttl is not None else 6 * 3600.0
        # Like ECS: the same keys are handed out until they near expiry, then new ones.
        if cached is None or cached[3] - now < ttl / 2:
            cached = self.issue_sts(ttl)
            self._imds_credentials[name] = cached
        key_id, secret, sts_token, expires_at = cached
        answer = {
            "AccessKeyId": key_id,
            "AccessKeySecret": secret,
            "SecurityToken": sts_token,
            "Expiration": _iso(int(expires_at * 1000)),
            "LastUpdated": _iso(int(now * 1000)),
            "Code": "Success",
        }
        return 200, (("Content-Type", "text/plain"),), _dumps(answer)

    # --- faults ----------------------------------------------------------------------------

    def set_faults(self, region: str | None = None, **knobs: object) -> None:
        """Set fault knobs globally or for one region (a value of None restores a default).

        Every-Nth counters restart, so `throttle_every=3` throttles the 3rd request after it.
        """
        parsed = {name: _coerce_knob(name, value) for name, value in knobs.items()}
        with self._lock:
            if region is None:
                target = self._global_faults
                for state in self._regions.values():
                    state.fault_counter = 0
            else:
                target = self._region_faults.setdefault(self._check_region(region), {})
                self._state(region).fault_counter = 0
            for name, value in parsed.items():
                if value == getattr(_DEFAULT_FAULTS, name):
                    target.pop(name, None)
                else:
                    target[name] = value

    def clear_faults(self, region: str | None = None) -> None:
        """Remove every fault knob (or only one region's own settings)."""
        with self._lock:
            if region is None:
                self._global_faults.clear()
                self._region_faults.clear()
            else:
                self._region_faults.pop(region, None)
            for state in self._regions.values():
                state.fault_counter = 0

    def faults(self, region: str | None = None) -> Faults:
        """The knobs in effect for a region (global settings overlaid by the region's)."""
        with self._lock:
            merged = {**self._global_faults, **self._region_faults.get(region or "", {})}
            return replace(_DEFAULT_FAULTS, **cast(Any, merged))

    # --- observation -----------------------------------------------------------------------

    def request_count(self, region: str | None = None) -> int:
        """ListAsynJobs requests received (whatever their outcome), for a region or all."""
        with self._lock:
            if region is None:
                return sum(s.requests for s in self._regions.values())
            state = self._regions.get(region)
            return state.requests if state else 0

    def last_params(self, region: str) -> dict[str, str] | None:
        """Business parameters (no signature, nonce, key or token) of the region's last request."""
        with self._lock:
            state = self._regions.get(region)
            return dict(state.last_params) if state and state.last_params is not None else None

    def requests(self, region: str | None = None) -> list[dict[str, Any]]:
        """The last requests (method, path, region, scheme, key id, params, status, code)."""
        with self._lock:
            return [dict(r) for r in self._requests if region is None or r["region"] == region]

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "now": self.now(),
                "frozen": self.frozen,
                "default_region": self.default_region,
                "regions": self.regions,
                "jobs_per_minute": self.jobs_per_minute,
                "faults": {
                    "global": dict(self._global_faults),
                    "regions": {r: dict(k) for r, k in self._region_faults.items() if k},
                },
                "request_counts": {r: s.requests for r, s in self._regions.items()},
            }

    # --- HTTP-level handling ---------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one HTTP request: the ALB API or a `/_sim/` control endpoint."""
        path, _, raw_query = request.target.partition("?")
        if path == "/_sim" or path.startswith("/_sim/"):
            return self._control(request, path, raw_query)
        if path in ("/sts", "/sts/"):
            return self._sts(request, raw_query)
        if path.startswith("/latest/"):
            return self._metadata(request, path)
        return self._api(request, path, raw_query)

    def _route(self, request: SimRequest, path: str) -> str | None:
        # Region by path (endpoint templates like http://127.0.0.1:PORT/{region}/), else by
        # the real host names, else the default region.
        segments = [s for s in path.split("/") if s]
        if len(segments) == 1 and _REGION_RE.match(segments[0]):
            return segments[0]
        if segments:
            return None
        host = (request.header("host") or "").lower()
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        match = _HOST_RE.match(host)
        if match and _REGION_RE.match(match.group(1)):
            return match.group(1)
        return self.default_region

    def _api(self, request: SimRequest, path: str, raw_query: str) -> SimResponse:
        request_id = str(uuid.uuid4()).upper()
        region = self._route(request, path)
        host_id = f"alb.{region or self.default_region}.aliyuncs.com"
        record: dict[str, Any] = {
            "time": self._clock(),
            "method": request.method,
            "path": path,
            "region": region,
            "scheme": None,
            "access_key_id": None,
            "params": {},
        }
        with self._lock:
            delay = 0.0
            try:
                if region is None:
                    raise _Reject(
                        404,
                        "InvalidApi.NotFound",
                        "Specified api is not found, please check your url and method.",
                    )
                state = self._state(region)
                state.requests += 1
                faults = self.faults(region)
                delay = faults.latency + faults.hang
                if request.method not in ("GET", "POST"):
                    raise _Reject(
                        400, "UnsupportedHTTPMethod", "This http method is not supported."
                    )
                query = signing.query_params(raw_query)
                form: dict[str, str] = {}
                content_type = (request.header("content-type") or "").lower()
                if content_type.startswith("application/x-www-form-urlencoded"):
                    # Older SDKs sent the parameters as a form body; both places are signed.
                    form = dict(
                        parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
                    )
                params = {**query, **form}
                business = {k: v for k, v in params.items() if k not in _V1_COMMON}
                record["params"] = business
                state.last_params = dict(business)
                authorization = request.header("authorization")
                record["scheme"] = "v1" if authorization is None else "v3"
                record["access_key_id"] = (
                    params.get("AccessKeyId")
                    if authorization is None
                    else _credential_of(authorization)
                )
                if authorization is None:
                    self._verify_v1(request, params, region)
                else:
                    self._verify_v3(request, path, query, authorization, region)
                self._inject_faults(state, faults)
                status, headers, body = self._list_jobs(state, business, faults, request_id)
            except _Reject as err:
                status, headers = err.status, err.headers
                body = _dumps(
                    {
                        "RequestId": request_id,
                        "HostId": host_id,
                        "Code": err.code,
                        "Message": err.message,
                        "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}"
                        f"&product=Alb&requestId={request_id}",
                        **err.extra,
                    }
                )
                headers = (("Content-Type", _JSON), *headers)
                record["code"] = err.code
            record["status"] = status
            record.setdefault("code", "OK" if status == 200 else None)
            self._requests.append(record)
        return SimResponse(status, (("x-acs-request-id", request_id), *headers), body, delay)

    # --- authentication --------------------------------------------------------------------

    def _check_action(
        self, action: str | None, version: str | None, names: tuple[str, str]
    ) -> None:
        if not action:
            raise _missing(names[0])
        if not version:
            raise _missing(names[1])
        if action != ACTION:
            raise _Reject(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        if version != API_VERSION:
            raise _Reject(404, "InvalidVersion", "Specified parameter Version is not valid.")

    def _check_time(self, timestamp: float, region: str) -> None:
        if abs(timestamp - self._gateway_time(region)) > TIMESTAMP_TOLERANCE_SECONDS:
            raise _Reject(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )

    def _secret_for(self, access_key_id: str, token: str | None) -> str:
        secret = self.credentials.get(access_key_id)
        token_required = False
        if secret is None and access_key_id in self._sts_ids:
            secret = self.sts_tokens[self._sts_ids[access_key_id]][1]
            token_required = True
        if secret is None:
            raise _Reject(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if token:
            entry = self.sts_tokens.get(token)
            if entry is None:
                raise _Reject(
                    400,
                    "InvalidSecurityToken.Malformed",
                    "The security token you provided is malformed.",
                )
            if entry[0] != access_key_id:
                raise _Reject(
                    400,
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "The security token you provided does not match your access key.",
                )
            if entry[2] <= self._clock():
                raise _Reject(
                    400,
                    "InvalidSecurityToken.Expired",
                    "The security token you provided has expired.",
                )
        elif token_required:
            raise _Reject(
                400,
                "MissingSecurityToken",
                "The security token is mandatory for a temporary access key.",
            )
        return secret

    def _use_nonce(self, access_key_id: str, nonce: str, region: str) -> None:
        # Checked only once the signature is valid, so forged requests cannot burn nonces.
        now = self._gateway_time(region)
        while self._nonces:
            _, seen = next(iter(self._nonces.items()))
            if seen >= now - NONCE_WINDOW_SECONDS:
                break
            self._nonces.popitem(last=False)
        key = (access_key_id, nonce)
        if key in self._nonces:
            raise _Reject(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces[key] = now

    def _mismatch(self, string_to_sign: str, extra: str = "") -> _Reject:
        # Like the real gateway: the message shows the server's string to sign (no secret in
        # it), which is how users debug canonicalisation differences.
        return _Reject(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. "
            f"server string to sign is:{string_to_sign}{extra}",
        )

    def _verify_v1(
        self,
        request: SimRequest,
        params: Mapping[str, str],
        region: str,
        *,
        check_action: bool = True,
    ) -> str:
        """A V1 (HMAC-SHA1) request, checked as the gateway does for ALB and for STS
        AssumeRole (`check_action=False`: STS routes on its own actions); the AccessKeyId."""
        for name in (
            "AccessKeyId",
            "SignatureMethod",
            "SignatureVersion",
            "SignatureNonce",
            "Timestamp",
        ):
            if not params.get(name):
                raise _missing(name)
        if "Signature" not in params:
            raise _incomplete("The Signature parameter is missing.")
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise _incomplete("SignatureMethod must be HMAC-SHA1 and SignatureVersion 1.0.")
        if check_action:
            self._check_action(params.get("Action"), params.get("Version"), ("Action", "Version"))
        self._check_time(_parse_timestamp(params["Timestamp"], "Timestamp"), region)
        access_key_id = params["AccessKeyId"]
        secret = self._secret_for(access_key_id, params.get("SecurityToken"))
        signed = {k: v for k, v in params.items() if k != "Signature"}
        expected = signing.v1_signature(request.method, signed, secret)
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            raise self._mismatch(signing.v1_string_to_sign(request.method, signed))
        self._use_nonce(access_key_id, params["SignatureNonce"], region)
        return access_key_id

    def _verify_v3(
        self,
        request: SimRequest,
        path: str,
        query: Mapping[str, str],
        authorization: str,
        region: str,
    ) -> str:
        algorithm, _, rest = authorization.strip().partition(" ")
        if algorithm != signing.V3_ALGORITHM:
            raise _incomplete(f"Unsupported signature algorithm {algorithm!r}.")
        parts: dict[str, str] = {}
        for item in rest.split(","):
            name, sep, value = item.strip().partition("=")
            if sep:
                parts[name] = value
        access_key_id = parts.get("Credential", "")
        signed_names = [h.strip().lower() for h in parts.get("SignedHeaders", "").split(";")]
        signed_names = [h for h in signed_names if h]
        signature = parts.get("Signature", "")
        if not (access_key_id and signed_names and signature):
            raise _incomplete("Authorization needs Credential, SignedHeaders and Signature.")
        sent = {k.lower() for k, _ in request.headers}
        unsigned = sorted(h for h in sent if h.startswith("x-acs-") and h not in signed_names)
        if "host" not in signed_names:
            unsigned.insert(0, "host")
        if unsigned:
            raise _incomplete(f"These headers must be signed: {', '.join(unsigned)}.")
        for name in ("x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"):
            if not request.header(name):
                raise _missing(name)
        absent = [h for h in signed_names if h not in sent]
        if absent:
            raise _incomplete(f"Signed headers are missing from the request: {', '.join(absent)}.")
        self._check_action(
            request.header("x-acs-action"),
            request.header("x-acs-version"),
            ("x-acs-action", "x-acs-version"),
        )
        self._check_time(_parse_timestamp(request.header("x-acs-date") or "", "x-acs-date"), region)
        secret = self._secret_for(access_key_id, request.header("x-acs-security-token"))
        content_sha = (request.header("x-acs-content-sha256") or "").lower()
        if content_sha != hashlib.sha256(request.body).hexdigest():
            raise _Reject(
                400,
                "SignatureDoesNotMatch",
                "The x-acs-content-sha256 header does not match the request body.",
            )
        # Repeated headers are signed as their sorted values joined by commas.
        headers = {h: ",".join(sorted(request.header_values(h))) for h in signed_names}
        # The canonical URI is the raw path; `v3_canonical_request` percent-encodes the
        # decoded path again, which reproduces it for every well-formed request.
        decoded_path = unquote(path)
        expected = signing.v3_authorization(
            request.method, decoded_path, query, headers, content_sha, access_key_id, secret
        )
        expected_signature = expected.rpartition("Signature=")[2]
        if not hmac.compare_digest(expected_signature.encode(), signature.lower().encode()):
            canonical, _ = signing.v3_canonical_request(
                request.method, decoded_path, query, headers, content_sha
            )
            hashed = hashlib.sha256(canonical.encode()).hexdigest()
            raise self._mismatch(
                f"{signing.V3_ALGORITHM}\n{hashed}", f" canonical request is:{canonical}"
            )
        self._use_nonce(access_key_id, request.header("x-acs-signature-nonce") or "", region)
        return access_key_id

    # --- faults and the listing ------------------------------------------------------------

    def _inject_faults(self, state: _Region, faults: Faults) -> None:
        state.fault_counter += 1
        n = state.fault_counter
        if faults.deny:
            raise _Reject(
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
            faults.throttle and self._fault_rng.random() < faults.throttle
        ):
            headers: tuple[tuple[str, str], ...] = ()
            if faults.retry_after_ms:
                headers = (("x-acs-retry-after", str(faults.retry_after_ms)),)
            raise _Reject(
                400, "Throttling.User", "Request was denied due to api flow control.", headers
            )
        if (faults.error_every and n % faults.error_every == 0) or (
            faults.error_rate and self._fault_rng.random() < faults.error_rate
        ):
            status, message = _SERVER_ERRORS[faults.error_code]
            raise _Reject(status, faults.error_code, message)

    def _int_param(self, params: Mapping[str, str], name: str) -> int | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise _Reject(
                400, "InvalidParameter", f"The parameter {name} is invalid: {raw!r}."
            ) from None

    def _token(self, offset: int, fingerprint: str) -> str:
        self._token_serial += 1
        payload = f"{offset}.{fingerprint}.{self._token_serial}.".encode()
        # Padded so the base64 text always ends in "=" (and often holds "+" or "/"): a
        # client that does not percent-encode NextToken breaks at once, not by chance.
        while (len(payload) + 16) % 3 != 1:
            payload += b"."
        mac = hmac.new(self._token_key, payload, hashlib.sha256).digest()[:16]
        return base64.b64encode(payload + mac).decode()

    def _untoken(self, token: str, fingerprint: str) -> int:
        bad = _Reject(400, "IllegalParam.NextToken", "The specified NextToken is invalid.")
        try:
            raw = base64.b64decode(token, validate=True)
        except ValueError:
            raise bad from None
        payload, mac = raw[:-16], raw[-16:]
        expected = hmac.new(self._token_key, payload, hashlib.sha256).digest()[:16]
        if len(raw) <= 16 or not hmac.compare_digest(mac, expected):
            raise bad
        offset, token_fingerprint, _ = payload.decode().split(".", 2)
        if token_fingerprint != fingerprint:  # issued for another query or region
            raise bad
        return int(offset)

    def _list_jobs(
        self, state: _Region, params: Mapping[str, str], faults: Faults, request_id: str
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        max_raw = params.get("MaxResults") or str(_MAX_RESULTS_DEFAULT)
        if not max_raw.isdigit() or not 1 <= int(max_raw) <= _MAX_RESULTS_LIMIT:
            raise _Reject(
                400,
                "IllegalParam.MaxResults",
                "The parameter MaxResults is illegal: it must be from 1 to 100.",
            )
        max_results = int(max_raw)
        begin = self._int_param(params, "BeginTime")
        end = self._int_param(params, "EndTime")
        arrays: dict[str, list[tuple[int, str]]] = {"JobIds": [], "ResourceIds": []}
        for name, value in params.items():
            match = _ARRAY_RE.match(name)
            if match:
                arrays[match.group(1)].append((int(match.group(2)), value))
        job_ids = {v for _, v in arrays["JobIds"]}
        resource_ids = {v for _, v in arrays["ResourceIds"]}
        resource_type = params.get("ResourceType") or None
        api_name = params.get("ApiName") or None
        fingerprint = hashlib.sha256(
            _dumps(
                [
                    state.name,
                    sorted(job_ids),
                    sorted(resource_ids),
                    resource_type,
                    api_name,
                    begin,
                    end,
                ]
            )
        ).hexdigest()[:16]
        token_in = params.get("NextToken") or ""
        offset = self._untoken(token_in, fingerprint) if token_in else 0

        now_ms = self._now_ms()
        listing, keys = self._listing(state)
        # `listing[lo:hi]` are the matching jobs when only CreateTime bounds filter (the
        # exporter's window listing): the listing is newest first, so bisect finds them.
        lo = bisect.bisect_left(keys, -now_ms)
        hi = len(listing)
        by_create = faults.begin_time_field != "ModifyTime"
        if by_create and end is not None:
            lo = max(lo, bisect.bisect_left(keys, -end))
        if by_create and begin is not None:
            hi = bisect.bisect_right(keys, -begin)
        if job_ids or resource_ids or resource_type or api_name or not by_create:
            # Other filters: checked job by job; a JobIds filter picks its few jobs by id.
            candidates = (
                sorted((state.jobs[i] for i in job_ids if i in state.jobs), key=self._order)
                if job_ids
                else listing[lo:hi]
            )
            listing = [
                j
                for j in candidates
                if j.create_ms <= now_ms
                and (not job_ids or j.id in job_ids)
                and (not resource_ids or j.resource_id in resource_ids)
                and (resource_type is None or j.resource_type == resource_type)
                and (api_name is None or j.api_name == api_name)
                and _in_time_range(j, now_ms, faults.begin_time_field, begin, end)
            ]
            lo, hi = 0, len(listing)
        total = max(0, hi - lo)
        start = offset
        overlap = faults.duplicate_across_pages or faults.status_flip_between_pages
        if overlap and offset > 0 and max_results > 1:
            # Offset paging while jobs arrive shifts the list: the previous page's last job
            # shows up again. The page still holds at most MaxResults jobs and moves on.
            start = offset - 1
        # Only the page is rendered: a job's status depends on the simulated time.
        page = [j.view(now_ms) for j in listing[lo + start : lo + min(start + max_results, total)]]
        next_offset = start + max_results
        more = next_offset < total
        if faults.status_flip_between_pages and more and max_results > 1 and page:
            last = page[-1]
            if last["Status"] != PROCESSING:
                # The job finished "between pages": stale here, its true state on the next.
                last.pop("ErrorCode", None)
                last.pop("ErrorMessage", None)
                last["Status"] = PROCESSING
                last["ModifyTime"] = last["CreateTime"]
        next_token = self._token(next_offset, fingerprint) if more else ""
        if faults.endless_next_token:
            next_token = self._token(min(next_offset, total), fingerprint)
        if faults.repeat_next_token and token_in:
            next_token = token_in
        body: dict[str, Any] = {
            "RequestId": request_id,
            "TotalCount": total,
            "MaxResults": max_results,
            "NextToken": next_token,
            "Jobs": page,
        }
        return self._render(body, faults.malformed)

    @staticmethod
    def _render(
        body: dict[str, Any], malformed: str
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        json_type = (("Content-Type", _JSON),)
        if malformed == "html502":
            # What a proxy or SLB in front of the API sends when the backend is gone.
            return 502, (("Content-Type", "text/html"),), _TENGINE_502
        if malformed == "not_json":
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?><ListAsynJobsResponse><RequestId>'
                f"{body['RequestId']}</RequestId></ListAsynJobsResponse>"
            )
            return 200, (("Content-Type", "text/xml;charset=utf-8"),), xml.encode()
        if malformed == "jobs_null":
            body["Jobs"] = None
        elif malformed == "missing_fields":
            del body["TotalCount"]
            for job in body["Jobs"]:
                job.pop("Status", None)
                job.pop("CreateTime", None)
        elif malformed == "wrong_types":
            body["TotalCount"] = str(body["TotalCount"])
            for job in body["Jobs"]:
                job["CreateTime"] = _iso(job["CreateTime"])
                job["ModifyTime"] = _iso(job["ModifyTime"])
        elif malformed == "extra_fields":
            # Not an error: fields a newer API version might add; clients must ignore them.
            body["ExtraInfo"] = {"Region": "simulated", "Hint": None}
            for job in body["Jobs"]:
                job["ResourceName"] = f"name-of-{job['ResourceId']}"
                job["Progress"] = 100 if job["Status"] != PROCESSING else 50
        data = _dumps(body)
        if malformed == "truncated":
            data = data[: len(data) // 2]
        return 200, json_type, data

    # --- control endpoints -----------------------------------------------------------------

    def _control(self, request: SimRequest, path: str, raw_query: str) -> SimResponse:
        try:
            if not _is_loopback(request.client):
                raise _ControlError(403, "control endpoints are loopback-only")
            query = dict(parse_qsl(raw_query, keep_blank_values=True))
            result = self._control_result(request.method, path, query, request.body)
            status = 200
        except _ControlError as err:
            status, result = err.status, {"error": str(err)}
        except (ValueError, TypeError, KeyError) as err:
            status, result = 400, {"error": f"{type(err).__name__}: {err}"}
        return SimResponse(status, (("Content-Type", "application/json"),), _dumps(result))

    @staticmethod
    def _json_body(body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            value = json.loads(body)
        except ValueError:
            raise _ControlError(400, "the body must be a JSON object") from None
        if not isinstance(value, dict):
            raise _ControlError(400, "the body must be a JSON object")
        return value

    def _control_result(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> Any:
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_sim/jobs"):
            return self.jobs(query.get("region"))
        if route == ("POST", "/_sim/jobs"):
            data = self._json_body(body)
            region = data.get("region") or self.default_region
            jobs = data.get("jobs")
            if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
                raise _ControlError(400, '"jobs" must be a list of objects')
            with self._lock:
                return {"region": region, "jobs": [self.upsert_job(region, **j) for j in jobs]}
        if route == ("DELETE", "/_sim/jobs"):
            region = query.get("region") or self.default_region
            try:
                self.remove_job(region, query.get("id", ""))
            except KeyError:
                raise _ControlError(404, f"no job {query.get('id')!r} in {region}") from None
            return {"region": region, "removed": query["id"]}
        if route == ("GET", "/_sim/state"):
            return self.state()
        if route == ("GET", "/_sim/requests"):
            return self.requests(query.get("region"))
        if route == ("POST", "/_sim/faults"):
            data = self._json_body(body)
            region = data.pop("region", None)
            self.set_faults(region, **data)
            return self.state()["faults"]
        if route == ("DELETE", "/_sim/faults"):
            self.clear_faults(query.get("region"))
            return self.state()["faults"]
        if route == ("POST", "/_sim/time"):
            data = self._json_body(body)
            unknown = set(data) - {"freeze", "advance"}
            if unknown:
                raise _ControlError(400, f"unknown keys {sorted(unknown)}")
            with self._lock:
                if data.get("freeze") is True:
                    self.freeze()
                elif data.get("freeze") is False:
                    self.unfreeze()
                if data.get("advance"):
                    self.advance(float(data["advance"]))
                return {"now": self.now(), "frozen": self.frozen}
        if route == ("POST", "/_sim/sts"):
            ttl = float(self._json_body(body).get("ttl", 3600))
            key_id, secret, token, expires_at = self.issue_sts(ttl)
            return {
                "AccessKeyId": key_id,
                "AccessKeySecret": secret,
                "SecurityToken": token,
                "Expiration": expires_at,
            }
        if route == ("GET", "/_sim/identity"):
            result = {**self.identity_settings(), "calls": self.identity_calls()}
            if query.get("secrets") == "1":
                # For leak tests: every temporary key issued so far, secrets included.
                with self._lock:
                    result["issued"] = [
                        {"AccessKeyId": key, "AccessKeySecret": secret, "SecurityToken": token}
                        for token, (key, secret, _) in self.sts_tokens.items()
                    ]
            return result
        if route == ("POST", "/_sim/identity"):
            self.set_identity(**self._json_body(body))
            return self.identity_settings()
        raise _ControlError(404, f"no control endpoint {method} {path}")


# --- the HTTP server -----------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads are joined on close; `SimulatorServer.shutdown` first shuts their
    # sockets down so idle keep-alive connections cannot hold the close up.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], owner: SimulatorServer, family: int) -> None:
        self.address_family = family
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that go away mid-answer (timeouts, shutdown) are expected, not errors.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Tengine"  # what Alibaba's API gateway says in its Server header
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped after this many seconds
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
    # would add ~40 ms to every answer.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        cast(_HTTPServer, self.server).owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            cast(_HTTPServer, self.server).owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        # The default logs the request line, whose query holds Signature and SecurityToken.
        pass

    def _dispatch(self) -> None:
        owner = cast(_HTTPServer, self.server).owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = SimRequest(
            method=self.command,
            target=self.path,
            headers=tuple(self.headers.items()),
            body=body,
            client=str(self.client_address[0]),
        )
        try:
            response = owner.simulator.handle(request)
        except Exception:
            log.exception("simulator failed on %s %s", self.command, self.path.partition("?")[0])
            response = SimResponse(500, (("Content-Type", _JSON),), b'{"Code":"InternalError"}')
        log.debug("%s %s -> %d", self.command, self.path.partition("?")[0], response.status)
        if response.delay > 0 and owner._stopping.wait(response.delay):
            self.close_connection = True
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if owner._stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch


class SimulatorServer:
    """Serves a `Simulator` over HTTP from a background thread.

    `SimulatorServer(sim, "127.0.0.1", 0).start()` binds (port 0: a free port) and serves;
    `.url`, `.port`, `.endpoint_template` describe it; `shutdown()` stops it, wakes hanging
    answers, closes every connection and joins every thread. Also a context manager.
    """

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self._host = host
        self._requested_port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def start(self) -> SimulatorServer:
        if self._httpd is not None:
            raise RuntimeError("already started")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        self._httpd = _HTTPServer((self._host, self._requested_port), self, family)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # how soon shutdown() is noticed
            name="alb-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if not add:
                self._conns.discard(conn)
            elif self._stopping.is_set():
                conn.shutdown(socket.SHUT_RDWR)  # accepted while stopping: serve nothing
            else:
                self._conns.add(conn)

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("not started")
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        if self._httpd is None:
            raise RuntimeError("not started")
        return str(self._httpd.server_address[0])

    @property
    def url(self) -> str:
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def endpoint_template(self) -> str:
        """An exporter `endpoint` that routes each region to its own simulated job set."""
        return self.url + "/{region}/"

    def shutdown(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> SimulatorServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


# --- command line --------------------------------------------------------------------------

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`30s`, `15m`, `2h`, `1d` or a number of seconds."""
    text = text.strip()
    unit = _UNITS.get(text[-1:].lower()) if text else None
    try:
        value = float(text[:-1]) * unit if unit else float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use 30s, 15m, 2h, 1d or seconds)") from None
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"not a duration: {text!r}")
    return value


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen wants HOST:PORT, [V6]:PORT or :PORT, not {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _parse_fault(text: str) -> tuple[str | None, str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--fault wants KNOB=VALUE or REGION:KNOB=VALUE, not {text!r}")
    region, _, knob = name.rpartition(":")
    _coerce_knob(knob, value)
    return region or None, knob, value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description=(
            "Simulated Alibaba Cloud ALB ListAsynJobs API (2020-06-16) for demos and tests: "
            "real V1/V3 signature checks, evolving jobs per region, fault knobs and a "
            "loopback-only control API under /_sim/. Prints 'listening on http://HOST:PORT' "
            "as its first line. Regions are routed by path (/<region>/) or by Host header "
            "(alb.<region>.aliyuncs.com); '/' on another host is the first region."
        ),
        epilog=(
            f"fault knobs: {', '.join(FAULT_KNOBS)}. "
            f"malformed: {', '.join(_MALFORMED)}. "
            "Control: GET /_sim/jobs?region=R, GET /_sim/state, GET /_sim/requests, "
            'POST|DELETE /_sim/faults, POST /_sim/time {"freeze":true,"advance":60}, '
            'POST /_sim/jobs, DELETE /_sim/jobs?region=R&id=ID, POST /_sim/sts {"ttl":900}, '
            "GET|POST /_sim/identity (STS and metadata knobs, their request log). "
            "Stand-ins: STS AssumeRole / AssumeRoleWithOIDC at /sts/, ECS instance metadata "
            "at /latest/ (token flow and RAM role credentials)."
        ),
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="address to serve on; port 0 picks a free port (default %(default)s)",
    )
    parser.add_argument(
        "--regions",
        default="cn-hangzhou,cn-shanghai",
        metavar="R1,R2",
        help="regions created up front; the first answers '/' "
        "(others are created on first use) (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="RNG seed (default %(default)s)")
    parser.add_argument(
        "--jobs-per-minute",
        type=float,
        default=6.0,
        metavar="N",
        help="job arrival rate per region (default %(default)s)",
    )
    parser.add_argument(
        "--history",
        default="2h",
        metavar="DURATION",
        help="jobs pre-populated into the past: 30m, 2h, ... (default %(default)s)",
    )
    parser.add_argument(
        "--retention",
        default="24h",
        metavar="DURATION",
        help="generated jobs older than this are forgotten (default %(default)s)",
    )
    parser.add_argument(
        "--access-key-id",
        action="append",
        default=[],
        metavar="ID",
        help="accepted AccessKeyId; repeat together with --access-key-secret "
        f"for several keys (default: {DEMO_ACCESS_KEY_ID})",
    )
    parser.add_argument(
        "--access-key-secret",
        action="append",
        default=[],
        metavar="SECRET",
        help=f"the secret of the matching --access-key-id (default: {DEMO_ACCESS_KEY_SECRET})",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="[REGION:]KNOB=VALUE",
        help="set a fault knob at start, e.g. throttle_every=3 or "
        "cn-shanghai:malformed=html502 (repeatable)",
    )
    parser.add_argument("--frozen", action="store_true", help="start with simulated time frozen")
    parser.add_argument(
        "--sts-ttl",
        default="",
        metavar="DURATION",
        help="lifetime of keys issued by the STS and metadata stand-ins, e.g. 20s "
        "(default: the requested DurationSeconds, 6h for metadata; real STS grants >= 15m)",
    )
    parser.add_argument(
        "--imds-role",
        default="",
        metavar="NAME",
        help="RAM role attached to the simulated ECS instance (default: none)",
    )
    parser.add_argument(
        "--oidc-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="an OIDC token AssumeRoleWithOIDC accepts (repeatable; default: any)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="requests are logged at debug, without query strings or secrets",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = _parse_listen(args.listen)
        regions = [r.strip() for r in args.regions.split(",") if r.strip()]
        history = parse_duration(args.history)
        retention = parse_duration(args.retention)
        faults = [_parse_fault(f) for f in args.fault]
        if len(args.access_key_id) != len(args.access_key_secret):
            raise ValueError("give each --access-key-id its own --access-key-secret")
        credentials = dict(zip(args.access_key_id, args.access_key_secret, strict=True)) or None
        simulator = Simulator(
            regions or DEFAULT_REGIONS,
            seed=args.seed,
            jobs_per_minute=args.jobs_per_minute,
            history_seconds=history,
            retention_seconds=retention or 1.0,
            credentials=credentials,
        )
        for region, knob, value in faults:
            simulator.set_faults(region, **{knob: value})
        simulator.set_identity(
            sts_ttl=parse_duration(args.sts_ttl) if args.sts_ttl else None,
            imds_role=args.imds_role or None,
            oidc_tokens=args.oidc_token,
        )
    except ValueError as err:
        parser.error(str(err))  # exits 2 with a one-line message
    logging.basicConfig(
        level=args.log_level.upper(),
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        stream=sys.stderr,
    )
    if args.frozen:
        simulator.freeze()

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d received, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        server = SimulatorServer(simulator, host, port).start()
    except OSError as err:
        print(f"simulator: cannot listen on {args.listen}: {err}", file=sys.stderr)
        return 1
    print(f"listening on {server.url}", flush=True)
    log.info(
        "simulating regions %s (seed %d, %.3g jobs/min per region); key ids: %s",
        ",".join(simulator.regions),
        args.seed,
        args.jobs_per_minute,
        ",".join(simulator.credentials),
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
    log.info("simulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
