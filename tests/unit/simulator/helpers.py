"""What the simulator tests share: keys, regions, one signed ListAsynJobs request (`call`), paging
and error helpers, and the control API over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from exporter.alibaba.signing import Credential, canonical_query, make_signer
from exporter.simulator import SimulatorServer
from exporter.wire import ACTION, API_VERSION
from tests.support import loopback

KEY = "LTAI5tSimTestKey00000001"
SECRET = "sim-test-Secret-7c1e9a"
REGIONS = ("cn-hangzhou", "cn-shanghai")
ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}
REPO = Path(__file__).resolve().parents[3]

Job = dict[str, Any]


class ShiftableClock:
    """Real time plus an adjustable shift: lets a test age STS tokens without faking the
    signers' clock."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


# One keep-alive client per test module (conftest.py sets it): creating one per request
# costs an SSL context.
_HTTP: list[httpx.Client] = []


def call(
    server: SimulatorServer | str,
    params: Mapping[str, str] | None = None,
    *,
    scheme: str = "v3",
    region: str | None = None,
    key: str = KEY,
    secret: str = SECRET,
    token: str | None = None,
    clock: Callable[[], float] = time.time,
    nonce: str | None = None,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    action: str = ACTION,
    version: str = API_VERSION,
    timeout: float = 5.0,
) -> httpx.Response:
    """One ListAsynJobs request signed by our own signer, like the exporter's client sends it."""
    credential = Credential(key, secret, token)
    extra = {"nonce": lambda: nonce} if nonce else {}
    auth = make_signer(
        scheme, lambda: credential, action=action, version=version, clock=clock, **extra
    )
    url = (server if isinstance(server, str) else server.url) + (f"/{region}/" if region else "/")
    query = canonical_query(params or {})
    if query:
        url += "?" + query
    return _HTTP[0].request(
        method, url, auth=auth, headers=headers, content=content, timeout=timeout
    )


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["x-acs-request-id"] == response.json()["RequestId"]
    return response.json()


def api_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= ERROR_KEYS, body
    assert body["Code"] == code, body
    assert body["RequestId"] == response.headers["x-acs-request-id"]
    assert body["HostId"].startswith("alb.") and body["HostId"].endswith(".aliyuncs.com")
    assert code in body["Recommend"] and body["RequestId"] in body["Recommend"]
    return body


def all_pages(
    server: SimulatorServer,
    params: Mapping[str, str] | None = None,
    *,
    max_results: int = 100,
    limit: int = 200,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    token = ""
    for _ in range(limit):
        query = {**(params or {}), "MaxResults": str(max_results)}
        if token:
            query["NextToken"] = token
        body = ok(call(server, query, **kwargs))
        pages.append(body)
        token = body["NextToken"]
        if not token:
            return pages
    raise AssertionError("paging did not end")


def jobs_of(pages: list[dict[str, Any]]) -> list[Job]:
    return [job for page in pages for job in page["Jobs"]]


def control(server: SimulatorServer, method: str, path: str, body: object = None) -> Any:
    r = loopback.request(method, server.url + path, json=body, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()
