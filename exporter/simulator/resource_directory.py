"""The Resource Directory endpoint (`/rd/`, the stand-in for the global
resourcedirectory.aliyuncs.com): ListAccounts, V1- or V3-signed, checked by the gateway
like ListAsynJobs, with the directory's fault knobs."""

from __future__ import annotations

from collections import deque
from typing import Any

from exporter.alibaba import signing
from exporter.simulator.alb import business_params
from exporter.simulator.directory import new_request_id
from exporter.simulator.gateway import credential_of
from exporter.simulator.messages import (
    JSON,
    REQUEST_LOG_SIZE,
    Reject,
    SimRequest,
    SimResponse,
    dumps,
    form_params,
)
from exporter.simulator.parts import Parts
from exporter.wire import LIST_ACCOUNTS, RD_API_VERSION

_RD_ACTIONS = {LIST_ACCOUNTS: RD_API_VERSION}


class ResourceDirectoryApi:
    """ListAccounts as Resource Directory answers it, and the log of its requests."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self._requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def handle(self, request: SimRequest, path: str, raw_query: str) -> SimResponse:
        request_id = new_request_id()
        record: dict[str, Any] = {"time": self._parts.clock(), "access_key_id": None}
        delay = 0.0
        with self._parts.lock:
            directory = self._parts.directory
            cut = directory.cleared()
            region = self._parts.world.default_region  # for the gateway's clock-skew knob
            try:
                if request.method not in ("GET", "POST"):
                    raise Reject(400, "UnsupportedHTTPMethod", "This http method is not supported.")
                query = signing.query_params(raw_query)
                params = {**query, **form_params(request)}
                authorization = request.header("authorization")
                if authorization is None:
                    caller = self._parts.gateway.verify_v1(
                        request, params, region, actions=_RD_ACTIONS
                    )
                else:
                    record["access_key_id"] = credential_of(authorization)
                    caller = self._parts.gateway.verify_v3(
                        request, path, query, authorization, region, actions=_RD_ACTIONS
                    )
                record["access_key_id"] = caller
                record["params"] = business_params(params)
                body, delay = directory.list_accounts(params, caller, request_id)
                status = 200
                record["code"] = "OK"
            except Reject as err:
                status = err.status
                body = dumps(
                    err.body(
                        request_id, "resourcedirectory.aliyuncs.com", "ResourceDirectoryMaster"
                    )
                )
                record["code"] = err.code
            record["status"] = status
            self._requests.append(record)
        return SimResponse(
            status, (("x-acs-request-id", request_id), ("Content-Type", JSON)), body, delay, cut
        )

    def requests(self) -> list[dict[str, Any]]:
        with self._parts.lock:
            return [dict(r) for r in self._requests]
