"""The ALB endpoint: routes a request to its region, authenticates it, injects the faults,
answers ListAsynJobs and logs the request (without secrets)."""

from __future__ import annotations

import re
import uuid
from collections import deque
from typing import Any

from exporter.alibaba import signing
from exporter.simulator.gateway import credential_of
from exporter.simulator.listing import Listing
from exporter.simulator.messages import (
    JSON,
    REGION_RE,
    REQUEST_LOG_SIZE,
    Reject,
    SimRequest,
    SimResponse,
    dumps,
    form_params,
)
from exporter.simulator.parts import Parts
from exporter.wire import DESCRIBE_REGIONS

_HOST_RE = re.compile(r"^alb(?:-vpc)?\.([a-z0-9-]+)\.aliyuncs\.com$")
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


def business_params(params: dict[str, str]) -> dict[str, str]:
    """The parameters without V1's authentication ones (for logs and fingerprints)."""
    return {k: v for k, v in params.items() if k not in _V1_COMMON}


class AlbApi:
    """ListAsynJobs as the gateway and ALB answer it, and the log of the requests received."""

    def __init__(self, parts: Parts, listing: Listing) -> None:
        self._parts = parts
        self._listing = listing
        self._requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def _route(self, request: SimRequest, path: str) -> str | None:
        # Region by path (endpoint templates like http://127.0.0.1:PORT/{region}/), else by
        # the real host names, else the default region.
        segments = [s for s in path.split("/") if s]
        if len(segments) == 1 and REGION_RE.match(segments[0]):
            return segments[0]
        if segments:
            return None
        host = (request.header("host") or "").lower()
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        match = _HOST_RE.match(host)
        if match and REGION_RE.match(match.group(1)):
            return match.group(1)
        return self._parts.world.default_region

    def handle(self, request: SimRequest, path: str, raw_query: str) -> SimResponse:
        """Answer one request for the ALB API (any path outside /_sim/, /sts/, /latest/)."""
        request_id = str(uuid.uuid4()).upper()
        region = self._route(request, path)
        host_id = f"alb.{region or self._parts.world.default_region}.aliyuncs.com"
        record: dict[str, Any] = {
            "time": self._parts.clock(),
            "method": request.method,
            "path": path,
            "region": region,
            "scheme": None,
            "access_key_id": None,
            "account_id": None,
            "params": {},
        }
        with self._parts.lock:
            delay = 0.0
            cut = self._parts.faults.cleared()
            try:
                if region is None:
                    raise Reject(
                        404,
                        "InvalidApi.NotFound",
                        "Specified api is not found, please check your url and method.",
                    )
                query = signing.query_params(raw_query)
                # Older SDKs sent the parameters as a form body; both places are signed.
                params = {**query, **form_params(request)}
                authorization = request.header("authorization")
                action = params.get("Action") or request.header("x-acs-action")
                record["action"] = action
                # DescribeRegions is discovery's: it has its own knobs (the directory's)
                # and does not count among the region's ListAsynJobs requests.
                regions_call = action == DESCRIBE_REGIONS
                state = self._parts.world.state(region)
                faults = self._parts.faults.effective(region)
                if not regions_call:
                    state.requests += 1
                    delay = faults.latency + faults.hang
                if request.method not in ("GET", "POST"):
                    raise Reject(400, "UnsupportedHTTPMethod", "This http method is not supported.")
                business = business_params(params)
                record["params"] = business
                if not regions_call:
                    state.last_params = dict(business)
                record["scheme"] = "v1" if authorization is None else "v3"
                record["access_key_id"] = (
                    params.get("AccessKeyId")
                    if authorization is None
                    else credential_of(authorization)
                )
                if authorization is None:
                    self._parts.gateway.verify_v1(request, params, region)
                else:
                    self._parts.gateway.verify_v3(request, path, query, authorization, region)
                record["account_id"] = self._parts.keys.owners.get(record["access_key_id"] or "")
                if regions_call:
                    body, delay = self._parts.directory.describe_regions(
                        list(self._parts.world.configured), request_id
                    )
                    status = 200
                    headers: tuple[tuple[str, str], ...] = (("Content-Type", JSON),)
                    cut = self._parts.directory.cleared()
                else:
                    self._parts.faults.inject(state, faults)
                    status, headers, body = self._listing.answer(
                        state, business, faults, request_id
                    )
            except Reject as err:
                status, headers = err.status, err.headers
                body = dumps(err.body(request_id, host_id, "Alb"))
                headers = (("Content-Type", JSON), *headers)
                record["code"] = err.code
            record["status"] = status
            record.setdefault("code", "OK" if status == 200 else None)
            self._requests.append(record)
        return SimResponse(status, (("x-acs-request-id", request_id), *headers), body, delay, cut)

    def request_count(self, region: str | None = None) -> int:
        """ListAsynJobs requests received (whatever their outcome), for a region or all;
        DescribeRegions calls are not among them."""
        with self._parts.lock:
            if region is None:
                return sum(s.requests for s in self._parts.world.regions.values())
            state = self._parts.world.regions.get(region)
            return state.requests if state else 0

    def last_params(self, region: str) -> dict[str, str] | None:
        """Business parameters (no signature, nonce, key or token) of the region's last request."""
        with self._parts.lock:
            state = self._parts.world.regions.get(region)
            return dict(state.last_params) if state and state.last_params is not None else None

    def requests(self, region: str | None = None) -> list[dict[str, Any]]:
        """The last requests (method, path, region, scheme, key id, params, status, code)."""
        with self._parts.lock:
            return [dict(r) for r in self._requests if region is None or r["region"] == region]
