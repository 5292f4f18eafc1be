"""Stand-ins for the identity services the exporter's credential providers call.

STS (`/sts/`): AssumeRole (V1-signed by a long-lived or STS key) and AssumeRoleWithOIDC
(unsigned), parameters in the query or a form body. ECS metadata (`/latest/...`): the token
flow and the RAM role credentials. Both issue keys with `Keys.issue`, which the ALB stand-in
then requires with their security token. Real STS refuses DurationSeconds < 900; `sts_ttl`
overrides the lifetime issued so tests see expiry within seconds.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any

from exporter.alibaba import signing
from exporter.simulator.messages import (
    JSON,
    REQUEST_LOG_SIZE,
    Reject,
    SimRequest,
    SimResponse,
    dumps,
    form_params,
    iso,
    missing,
)
from exporter.simulator.parts import Parts

STS_API_VERSION = "2015-04-01"
_ROLE_ARN_RE = re.compile(r"^acs:ram::\d+:role/\S+$")
_OIDC_PROVIDER_RE = re.compile(r"^acs:ram::\d+:oidc-provider/\S+$")
# `sts_error` knob -> (HTTP status, message), as STS answers them.
STS_ERRORS = {
    "EntityNotExist.Role": (404, "The role not exists."),
    "NoPermission": (
        403,
        "You are not authorized to do this action. You should be authorized by RAM.",
    ),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (500, "The request processing has failed due to some unknown error."),
}


class Identity:
    """The STS and ECS metadata stand-ins: their knobs and the log of their requests."""

    def __init__(self, parts: Parts, default_region: str) -> None:
        self._parts = parts
        self._default_region = default_region
        # Knobs (`Simulator.set_identity`); the Simulator's attributes of these names are them.
        self.sts_ttl: float | None = None  # lifetime of issued keys; None: DurationSeconds
        self.sts_error: str | None = None  # every STS call fails with this code
        self.deny_roles: set[str] = set()  # AssumeRole* of these roles: NoPermission
        self.oidc_tokens: set[str] = set()  # accepted OIDC tokens; empty: any
        self.imds_role: str | None = None  # the instance's RAM role; None: none attached
        self.imds_v1 = True  # requests without a metadata token are answered
        self.imds_v2 = True  # PUT /latest/api/token is answered
        self._imds_tokens: dict[str, float] = {}
        self._imds_credentials: dict[str, tuple[str, str, str, float]] = {}
        self._calls: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def calls(self) -> list[dict[str, Any]]:
        """STS and metadata requests (no secrets: OIDC tokens as SHA-256 prefixes only)."""
        with self._parts.lock:
            return [dict(c) for c in self._calls]

    def settings(self) -> dict[str, Any]:
        """The knobs, as `GET /_sim/identity` shows them (OIDC tokens only counted)."""
        with self._parts.lock:
            return {
                "sts_ttl": self.sts_ttl,
                "sts_error": self.sts_error,
                "deny_roles": sorted(self.deny_roles),
                "oidc_tokens": len(self.oidc_tokens),
                "imds_role": self.imds_role,
                "imds_v1": self.imds_v1,
                "imds_v2": self.imds_v2,
            }

    def set(self, **settings: Any) -> None:
        """Set STS / metadata knobs: sts_ttl (seconds or None), sts_error (a code or None),
        deny_roles, oidc_tokens (accepted tokens; empty: any), imds_role, imds_v1, imds_v2."""
        unknown = set(settings) - set(self.settings())
        if unknown:
            raise ValueError(f"unknown identity settings {sorted(unknown)}")
        with self._parts.lock:
            if "sts_ttl" in settings:
                ttl = settings["sts_ttl"]
                self.sts_ttl = None if ttl is None else float(ttl)
            if "sts_error" in settings:
                code = settings["sts_error"] or None
                if code is not None and code not in STS_ERRORS:
                    raise ValueError(f"sts_error: one of {', '.join(STS_ERRORS)}")
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

    def sts(self, request: SimRequest, raw_query: str) -> SimResponse:
        """Answer one request to the STS stand-in, as STS answers it."""
        request_id = str(uuid.uuid4()).upper()
        params = {**signing.query_params(raw_query), **form_params(request)}
        action = params.get("Action", "")
        record: dict[str, Any] = {
            "time": self._parts.clock(),
            "service": "sts",
            "action": action,
            "role_arn": params.get("RoleArn"),
            "session_name": params.get("RoleSessionName"),
            "caller": None,
            "token_sha256": None,
            "issued_key_id": None,
            "expiration": None,
        }
        with self._parts.lock:
            try:
                if request.method not in ("GET", "POST"):
                    raise Reject(400, "UnsupportedHTTPMethod", "This http method is not supported.")
                if action == "AssumeRole":
                    # The default region's clock_skew knob applies to STS as well.
                    record["caller"] = self._parts.gateway.verify_v1(
                        request, params, self._default_region, check_action=False
                    )
                elif action == "AssumeRoleWithOIDC":
                    record["token_sha256"] = self._check_oidc(params)
                else:
                    raise Reject(
                        404,
                        "InvalidAction.NotFound",
                        "Specified api is not found, please check your url and method.",
                    )
                if params.get("Version") != STS_API_VERSION:
                    raise Reject(404, "InvalidVersion", "Specified parameter Version is not valid.")
                role_arn = params.get("RoleArn", "")
                if not role_arn:
                    raise missing("RoleArn")
                if not _ROLE_ARN_RE.match(role_arn):
                    raise Reject(400, "InvalidParameter.RoleArn", "The parameter RoleArn is wrong.")
                if not params.get("RoleSessionName"):
                    raise missing("RoleSessionName")
                duration = params.get("DurationSeconds", "3600")
                if not duration.isdigit() or not 900 <= int(duration) <= 43200:
                    raise Reject(
                        400,
                        "InvalidParameter.DurationSeconds",
                        "The Min/Max value of DurationSeconds is 15min/12hr.",
                    )
                if self.sts_error is not None:
                    status, message = STS_ERRORS[self.sts_error]
                    raise Reject(status, self.sts_error, message)
                if self._parts.directory.role_refused(role_arn):
                    raise Reject(404, "EntityNotExist.Role", "The role not exists.")
                if role_arn in self.deny_roles:
                    raise Reject(
                        403,
                        "NoPermission",
                        "You are not authorized to do this action. You should be authorized "
                        "by RAM.",
                    )
                ttl = self.sts_ttl if self.sts_ttl is not None else float(duration)
                key_id, secret, token, expires_at = self._parts.keys.issue(ttl)
                member = self._parts.directory.account_of(role_arn)
                if member is not None and member in self._parts.directory.members:
                    self._parts.keys.owners[key_id] = member
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
                        "Expiration": iso(int(expires_at * 1000)),
                    },
                }
                record.update(code="OK", issued_key_id=key_id, expiration=int(expires_at))
            except Reject as err:
                status = err.status
                body = err.body(request_id, "sts.aliyuncs.com", "Sts")
                record["code"] = err.code
            record["status"] = status
            self._calls.append(record)
        return SimResponse(status, (("Content-Type", JSON),), dumps(body))

    def _check_oidc(self, params: Mapping[str, str]) -> str:
        for name in ("OIDCProviderArn", "OIDCToken"):
            if not params.get(name):
                raise missing(name)
        if not _OIDC_PROVIDER_RE.match(params["OIDCProviderArn"]):
            raise Reject(
                400, "InvalidParameter.OIDCProviderArn", "The parameter OIDCProviderArn is wrong."
            )
        token = params["OIDCToken"]
        fingerprint = hashlib.sha256(token.encode()).hexdigest()[:16]
        if self.oidc_tokens and token not in self.oidc_tokens:
            raise Reject(400, "AuthenticationFail.OIDCToken.Invalid", "The OIDC token is invalid.")
        return fingerprint

    def metadata(self, request: SimRequest, path: str) -> SimResponse:
        """Answer one request to the ECS metadata stand-in (a path under /latest/)."""
        record: dict[str, Any] = {
            "time": self._parts.clock(),
            "service": "metadata",
            "action": f"{request.method} {path}",
            "role_arn": None,
            "session_name": None,
            "caller": None,
            "token_sha256": None,
        }
        text = (("Content-Type", "text/plain"),)
        with self._parts.lock:
            status, headers, body = self._metadata_answer(request, path)
            record["status"] = status
            record["code"] = "OK" if status == 200 else f"HTTP{status}"
            self._calls.append(record)
        return SimResponse(status, headers or text, body)

    def _metadata_answer(
        self, request: SimRequest, path: str
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        now = self._parts.clock()
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
            cached = self._parts.keys.issue(ttl)
            self._imds_credentials[name] = cached
        key_id, secret, sts_token, expires_at = cached
        answer = {
            "AccessKeyId": key_id,
            "AccessKeySecret": secret,
            "SecurityToken": sts_token,
            "Expiration": iso(int(expires_at * 1000)),
            "LastUpdated": iso(int(now * 1000)),
            "Code": "Success",
        }
        return 200, (("Content-Type", "text/plain"),), dumps(answer)
