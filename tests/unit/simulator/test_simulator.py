"""The ALB simulator over real loopback HTTP.

Two independent oracles: the official Alibaba SDK (it must accept the simulator as if it were
ALB), and our own signers (`exporter.signing.make_signer`) for everything the SDK cannot
provoke: paging details, auth failures, faults. Expected jobs always come from the
simulator's own truth (`Simulator.jobs`), filtered here in the test.
"""

from __future__ import annotations

import base64
import itertools
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.alibaba.signing import Credential, canonical_query, make_signer
from exporter.simulator import (
    ACTION,
    API_VERSION,
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    FAULT_KNOBS,
    SimRequest,
    Simulator,
    SimulatorServer,
    parse_duration,
)

KEY = "LTAI5tSimTestKey00000001"
SECRET = "sim-test-Secret-7c1e9a"
REGIONS = ("cn-hangzhou", "cn-shanghai")
ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}
REPO = Path(__file__).resolve().parents[3]

Job = dict[str, Any]


# --- fixtures and helpers ------------------------------------------------------------------


class ShiftableClock:
    """Real time plus an adjustable shift: lets a test age STS tokens without faking the
    signers' clock."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


# One keep-alive client for the whole module: creating one per request costs an SSL context.
_HTTP: list[httpx.Client] = []


@pytest.fixture(scope="module", autouse=True)
def _http_client() -> Iterator[None]:
    with httpx.Client(timeout=5.0) as client:
        _HTTP.append(client)
        yield
        _HTTP.clear()


@pytest.fixture
def clock() -> ShiftableClock:
    return ShiftableClock()


@pytest.fixture
def sim(clock: ShiftableClock) -> Simulator:
    s = Simulator(
        REGIONS,
        seed=7,
        credentials={KEY: SECRET, DEMO_ACCESS_KEY_ID: DEMO_ACCESS_KEY_SECRET},
        clock=clock,
    )
    s.freeze()  # jobs stand still unless a test advances them; signing still uses real time
    return s


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as srv:
        yield srv


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
    r = httpx.request(method, server.url + path, json=body, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


# --- the official SDK as an oracle ---------------------------------------------------------

sdk_client = pytest.importorskip("alibabacloud_alb20200616.client")
sdk_models = pytest.importorskip("alibabacloud_alb20200616.models")
tea_models = pytest.importorskip("alibabacloud_tea_openapi.models")
tea_exceptions = pytest.importorskip("alibabacloud_tea_openapi.exceptions")


def sdk(server: SimulatorServer, algorithm: str | None, secret: str = SECRET) -> Any:
    config = tea_models.Config(
        access_key_id=KEY,
        access_key_secret=secret,
        endpoint=f"127.0.0.1:{server.port}",
        protocol="http",
        signature_algorithm=algorithm,  # None: V3 (ACS3-HMAC-SHA256); "v2": V1 (HMAC-SHA1)
        read_timeout=5000,
        connect_timeout=5000,
    )
    return sdk_client.Client(config)


def sdk_list(client: Any, **request: Any) -> list[Job]:
    jobs: list[Job] = []
    token = None
    for _ in range(100):
        req = sdk_models.ListAsynJobsRequest(max_results=50, next_token=token, **request)
        body = client.list_asyn_jobs(req).body.to_map()
        jobs.extend(body["Jobs"])
        token = body.get("NextToken")
        if not token:
            return jobs
    raise AssertionError("SDK paging did not end")


def _sdk_filters(sim: Simulator) -> dict[str, tuple[dict[str, Any], Callable[[Job], bool]]]:
    truth = sim.jobs()
    some = truth[3:6]
    begin, end = truth[40]["CreateTime"], truth[10]["CreateTime"]
    return {
        "none": ({}, lambda j: True),
        "resource_type": (
            {"resource_type": "servergroup"},
            lambda j: j["ResourceType"] == "servergroup",
        ),
        "api_name": ({"api_name": "CreateRule"}, lambda j: j["ApiName"] == "CreateRule"),
        "job_ids": ({"job_ids": [j["Id"] for j in some]}, lambda j: j in some),
        "resource_ids": (
            {"resource_ids": [some[0]["ResourceId"]]},
            lambda j: j["ResourceId"] == some[0]["ResourceId"],
        ),
        "time_window": (
            {"begin_time": begin, "end_time": end},
            lambda j: begin <= j["CreateTime"] <= end,
        ),
    }


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["v3", "v1"])
@pytest.mark.parametrize(
    "name", ["none", "resource_type", "api_name", "job_ids", "resource_ids", "time_window"]
)
def test_official_sdk_lists_exactly_the_truth(
    sim: Simulator, server: SimulatorServer, algorithm: str | None, name: str
) -> None:
    request, wanted = _sdk_filters(sim)[name]
    expected = [j for j in sim.jobs() if wanted(j)]
    assert expected, "the filter should select something"
    assert sdk_list(sdk(server, algorithm), **request) == expected
    assert sim.requests()[-1]["scheme"] == ("v1" if algorithm else "v3")


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["v3", "v1"])
def test_official_sdk_surfaces_signature_mismatch(
    server: SimulatorServer, algorithm: str | None
) -> None:
    client = sdk(server, algorithm, secret="not-the-secret")
    with pytest.raises(tea_exceptions.ClientException) as info:
        client.list_asyn_jobs(sdk_models.ListAsynJobsRequest())
    assert info.value.code == "SignatureDoesNotMatch"
    assert info.value.status_code == 400
    assert "server string to sign is:" in info.value.message
    assert "not-the-secret" not in info.value.message


# --- listing semantics with our own signer -------------------------------------------------


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_paging_by_seven_reconstructs_the_full_list(
    sim: Simulator, server: SimulatorServer, scheme: str
) -> None:
    truth = sim.jobs()
    pages = all_pages(server, max_results=7, scheme=scheme)
    assert jobs_of(pages) == truth
    assert len(pages) == -(-len(truth) // 7)
    assert all(len(p["Jobs"]) == 7 for p in pages[:-1])
    assert {p["TotalCount"] for p in pages} == {len(truth)}
    assert {p["MaxResults"] for p in pages} == {7}
    assert pages[-1]["NextToken"] == ""
    # Newest first, ties broken by Id.
    assert truth == sorted(truth, key=lambda j: (-j["CreateTime"], j["Id"]))


def test_default_page_size_is_20_and_bounds_are_enforced(server: SimulatorServer) -> None:
    body = ok(call(server))
    assert body["MaxResults"] == 20 and len(body["Jobs"]) == 20
    assert ok(call(server, {"MaxResults": "100"}))["MaxResults"] == 100
    for bad in ("0", "101", "x", "-1"):
        api_error(call(server, {"MaxResults": bad}), 400, "IllegalParam.MaxResults")
    for name in ("BeginTime", "EndTime"):
        api_error(call(server, {name: "2024-01-01T00:00:00Z"}), 400, "InvalidParameter")


def test_next_token_is_opaque_and_bound_to_its_query(
    sim: Simulator, server: SimulatorServer
) -> None:
    first = ok(call(server, {"MaxResults": "5", "ResourceType": "listener"}))
    token = first["NextToken"]
    assert token and not token.isdigit() and token.endswith("=")
    base64.b64decode(token, validate=True)
    # The same token continues its own query ...
    second = ok(call(server, {"MaxResults": "5", "ResourceType": "listener", "NextToken": token}))
    expected = [j for j in sim.jobs() if j["ResourceType"] == "listener"][5:10]
    assert second["Jobs"] == expected
    # ... and MaxResults may change between pages, as in the real API.
    ok(call(server, {"MaxResults": "9", "ResourceType": "listener", "NextToken": token}))
    # Any other query, another region, a forged or mangled token: rejected.
    for params, region in (
        ({"ResourceType": "rule"}, None),
        ({}, None),
        ({"ResourceType": "listener"}, "cn-shanghai"),
    ):
        api_error(
            call(server, {**params, "NextToken": token}, region=region),
            400,
            "IllegalParam.NextToken",
        )
    raw = bytearray(base64.b64decode(token))
    raw[0] ^= 1
    for bad in (base64.b64encode(bytes(raw)).decode(), "5", "not base64!"):
        api_error(
            call(server, {"ResourceType": "listener", "NextToken": bad}),
            400,
            "IllegalParam.NextToken",
        )


def test_each_filter_selects_what_it_names(sim: Simulator, server: SimulatorServer) -> None:
    truth = sim.jobs()
    a, b = truth[2], truth[11]
    cases: list[tuple[dict[str, str], Callable[[Job], bool]]] = [
        ({"JobIds.1": a["Id"], "JobIds.2": b["Id"]}, lambda j: j["Id"] in (a["Id"], b["Id"])),
        ({"ResourceIds.1": a["ResourceId"]}, lambda j: j["ResourceId"] == a["ResourceId"]),
        ({"ResourceType": "acl"}, lambda j: j["ResourceType"] == "acl"),
        (
            {"ApiName": "AddServersToServerGroup"},
            lambda j: j["ApiName"] == "AddServersToServerGroup",
        ),
        # Inclusive bounds on CreateTime, epoch milliseconds.
        (
            {"BeginTime": str(b["CreateTime"]), "EndTime": str(a["CreateTime"])},
            lambda j: b["CreateTime"] <= j["CreateTime"] <= a["CreateTime"],
        ),
        ({"BeginTime": str(a["CreateTime"] + 1)}, lambda j: j["CreateTime"] > a["CreateTime"]),
        ({"ResourceType": "listener", "ApiName": "CreateRule"}, lambda j: False),
        ({"JobIds.1": "00000000-0000-4000-8000-000000000000"}, lambda j: False),
    ]
    for params, wanted in cases:
        expected = [j for j in truth if wanted(j)]
        got = jobs_of(all_pages(server, params))
        assert got == expected, params
    assert a in jobs_of(all_pages(server, {"EndTime": str(a["CreateTime"])}))


def test_failed_jobs_alone_carry_error_fields(sim: Simulator, server: SimulatorServer) -> None:
    jobs = jobs_of(all_pages(server))
    assert {j["Status"] for j in jobs} == {"Succeeded", "Failed", "Processing"}
    for job in jobs:
        has_error = "ErrorCode" in job or "ErrorMessage" in job
        assert has_error == (job["Status"] == "Failed"), job
        assert isinstance(job["CreateTime"], int) and isinstance(job["ModifyTime"], int)


@pytest.mark.parametrize("via", ["path", "host", "vpc-host", "default"])
def test_regions_are_routed_by_path_or_host(
    sim: Simulator, server: SimulatorServer, via: str
) -> None:
    region, headers = "cn-shanghai", None
    if via == "host":
        headers = {"Host": "alb.cn-shanghai.aliyuncs.com"}
    elif via == "vpc-host":
        headers = {"Host": "alb-vpc.cn-shanghai.aliyuncs.com"}
    elif via == "default":
        region = "cn-hangzhou"
    got = ok(
        call(
            server,
            {"MaxResults": "100"},
            region="cn-shanghai" if via == "path" else None,
            headers=headers,
        )
    )
    assert got["Jobs"] == sim.jobs(region)[:100]
    assert sim.last_params(region) == {"MaxResults": "100"}


def test_unknown_regions_are_created_on_first_use(sim: Simulator, server: SimulatorServer) -> None:
    assert "eu-central-1" not in sim.regions
    got = jobs_of(all_pages(server, region="eu-central-1"))
    assert got and got == sim.jobs("eu-central-1")
    assert sim.regions == [*REGIONS, "eu-central-1"]
    assert {j["Id"] for j in got}.isdisjoint(j["Id"] for j in sim.jobs("cn-hangzhou"))
    r = httpx.post(server.url + "/not/a/region")
    api_error(r, 404, "InvalidApi.NotFound")


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_get_is_accepted_and_signed_with_its_own_method(
    sim: Simulator, server: SimulatorServer, scheme: str
) -> None:
    assert (
        ok(call(server, {"MaxResults": "3"}, scheme=scheme, method="GET"))["Jobs"]
        == (sim.jobs()[:3])
    )


def test_form_body_parameters_are_read_and_signed(sim: Simulator, server: SimulatorServer) -> None:
    # V3: the body is covered by x-acs-content-sha256.
    r = call(
        server,
        content=b"ResourceType=rule&MaxResults=100",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ok(r)["Jobs"] == [j for j in sim.jobs() if j["ResourceType"] == "rule"][:100]
    # V1 as older SDKs sent it: common parameters in the query, the rest in the body, the
    # signature over both.
    from exporter.alibaba.signing import format_timestamp, v1_signature

    common = {
        "Action": ACTION,
        "Version": API_VERSION,
        "Format": "JSON",
        "AccessKeyId": KEY,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": "form-nonce-1",
        "Timestamp": format_timestamp(time.time()),
    }
    form = {"ApiName": "CreateRule", "MaxResults": "100"}
    common["Signature"] = v1_signature("POST", {**common, **form}, SECRET)
    r = httpx.post(
        server.url + "/?" + canonical_query(common),
        content=canonical_query(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ok(r)["Jobs"] == [j for j in sim.jobs() if j["ApiName"] == "CreateRule"][:100]
    form["ApiName"] = "DeleteRule"  # a body changed after signing
    r = httpx.post(
        server.url + "/?" + canonical_query({**common, "SignatureNonce": "form-nonce-2"}),
        content=canonical_query(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    api_error(r, 400, "SignatureDoesNotMatch")


# --- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_nonce_reuse_is_rejected(server: SimulatorServer, scheme: str) -> None:
    ok(call(server, scheme=scheme, nonce="0123456789abcdef"))
    api_error(call(server, scheme=scheme, nonce="0123456789abcdef"), 400, "SignatureNonceUsed")
    # Another key may use the same nonce.
    ok(
        call(
            server,
            scheme=scheme,
            nonce="0123456789abcdef",
            key=DEMO_ACCESS_KEY_ID,
            secret=DEMO_ACCESS_KEY_SECRET,
        )
    )


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_timestamps_more_than_15_minutes_off_are_rejected(
    server: SimulatorServer, scheme: str
) -> None:
    for offset in (-16 * 60, 16 * 60):
        r = call(server, scheme=scheme, clock=lambda o=offset: time.time() + o)  # type: ignore[misc]
        api_error(r, 400, "InvalidTimeStamp.Expired")
    ok(call(server, scheme=scheme, clock=lambda: time.time() - 14 * 60))


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_unknown_key_and_wrong_secret(server: SimulatorServer, scheme: str) -> None:
    body = api_error(
        call(server, scheme=scheme, key="LTAInobody"), 404, "InvalidAccessKeyId.NotFound"
    )
    body = api_error(call(server, scheme=scheme, secret="wrong"), 400, "SignatureDoesNotMatch")
    assert "server string to sign is:" in body["Message"]
    expected_start = "POST&%2F&" if scheme == "v1" else "ACS3-HMAC-SHA256\n"
    assert expected_start in body["Message"]
    assert SECRET not in body["Message"] and "wrong" not in body["Message"]


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_sts_tokens(
    sim: Simulator, server: SimulatorServer, clock: ShiftableClock, scheme: str
) -> None:
    key_id, secret, token, expires = sim.issue_sts(ttl=300)
    assert expires == pytest.approx(time.time() + 300, abs=5)
    assert sim.sts_tokens[token] == (key_id, secret, expires)
    ok(call(server, scheme=scheme, key=key_id, secret=secret, token=token))
    api_error(call(server, scheme=scheme, key=key_id, secret=secret), 400, "MissingSecurityToken")
    api_error(
        call(server, scheme=scheme, key=key_id, secret=secret, token="CAISforged"),
        400,
        "InvalidSecurityToken.Malformed",
    )
    other_id, other_secret, _, _ = sim.issue_sts(ttl=300)
    api_error(
        call(server, scheme=scheme, key=other_id, secret=other_secret, token=token),
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
    )
    api_error(
        call(server, scheme=scheme, token=token), 400, "InvalidSecurityToken.MismatchWithAccessKey"
    )
    clock.shift = 301  # the gateway's clock passes the expiry; requests stay within 15 min
    api_error(
        call(server, scheme=scheme, key=key_id, secret=secret, token=token),
        400,
        "InvalidSecurityToken.Expired",
    )


def test_incomplete_or_missing_signature_parts(server: SimulatorServer) -> None:
    api_error(httpx.post(server.url + "/"), 400, "MissingParameter")
    api_error(
        httpx.post(server.url + "/", headers={"Authorization": "ACS3-HMAC-SHA256 x"}),
        400,
        "IncompleteSignature",
    )
    # An x-acs-* header that is sent but not signed.
    api_error(call(server, headers={"x-acs-extra": "1"}), 400, "IncompleteSignature")
    # V1 without the Signature parameter.
    from exporter.alibaba.signing import format_timestamp

    params = {
        "Action": ACTION,
        "Version": API_VERSION,
        "AccessKeyId": KEY,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": "n1",
        "Timestamp": format_timestamp(time.time()),
    }
    api_error(httpx.post(server.url + "/?" + canonical_query(params)), 400, "IncompleteSignature")
    body = api_error(
        httpx.post(server.url + "/?" + canonical_query({**params, "Timestamp": ""})),
        400,
        "MissingParameter",
    )
    assert '"Timestamp"' in body["Message"]
    bad_time = {**params, "Timestamp": "yesterday", "Signature": "x"}
    api_error(
        httpx.post(server.url + "/?" + canonical_query(bad_time)), 400, "InvalidTimeStamp.Format"
    )


def test_body_hash_must_match(server: SimulatorServer) -> None:
    class Tamper(httpx.Auth):
        def __init__(self, inner: httpx.Auth) -> None:
            self.inner = inner

        def auth_flow(
            self, request: httpx.Request
        ) -> Generator[httpx.Request, httpx.Response, None]:
            signed = next(self.inner.auth_flow(request))
            signed.headers["x-acs-content-sha256"] = "0" * 64
            yield signed

    credential = Credential(KEY, SECRET)
    auth = Tamper(make_signer("v3", lambda: credential, action=ACTION, version=API_VERSION))
    r = httpx.post(server.url + "/", auth=auth)
    body = api_error(r, 400, "SignatureDoesNotMatch")
    assert "x-acs-content-sha256" in body["Message"]


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_only_list_asyn_jobs_2020_06_16_exists(server: SimulatorServer, scheme: str) -> None:
    api_error(call(server, scheme=scheme, action="DescribeRegions"), 404, "InvalidAction.NotFound")
    api_error(call(server, scheme=scheme, version="2014-05-26"), 404, "InvalidVersion")


# --- faults --------------------------------------------------------------------------------


def test_throttle_every_nth_with_retry_after(sim: Simulator, server: SimulatorServer) -> None:
    sim.set_faults(throttle_every=3, retry_after_ms=1500)
    responses = [call(server) for _ in range(6)]
    assert [r.status_code for r in responses] == [200, 200, 400, 200, 200, 400]
    r = responses[2]
    body = api_error(r, 400, "Throttling.User")
    assert body["Message"] == "Request was denied due to api flow control."
    assert r.headers["x-acs-retry-after"] == "1500"


def test_faults_switch_while_running_via_control_endpoint(
    sim: Simulator, server: SimulatorServer
) -> None:
    control(server, "POST", "/_sim/faults", {"throttle": 1.0})
    api_error(call(server), 400, "Throttling.User")
    assert "x-acs-retry-after" not in call(server).headers
    control(server, "POST", "/_sim/faults", {"throttle": 0, "error_every": 1})
    api_error(call(server), 503, "ServiceUnavailable")
    control(server, "POST", "/_sim/faults", {"error_code": "InternalError"})
    api_error(call(server), 500, "InternalError")
    # Per region: only cn-shanghai is affected.
    control(server, "DELETE", "/_sim/faults")
    state = control(server, "POST", "/_sim/faults", {"region": "cn-shanghai", "error_rate": 1})
    assert state == {"global": {}, "regions": {"cn-shanghai": {"error_rate": 1.0}}}
    api_error(call(server, region="cn-shanghai"), 503, "ServiceUnavailable")
    ok(call(server, region="cn-hangzhou"))
    assert sim.faults("cn-shanghai").error_rate == 1.0 and sim.faults("cn-hangzhou").error_rate == 0
    control(server, "DELETE", "/_sim/faults?region=cn-shanghai")
    ok(call(server, region="cn-shanghai"))
    bad = httpx.post(server.url + "/_sim/faults", json={"throttel": 1})
    assert bad.status_code == 400 and "throttel" in bad.json()["error"]
    assert httpx.post(server.url + "/_sim/faults", json={"throttle": 2}).status_code == 400


def test_deny_answers_403_with_access_denied_detail(
    sim: Simulator, server: SimulatorServer
) -> None:
    sim.set_faults(deny="Forbidden.RAM")
    body = api_error(call(server), 403, "Forbidden.RAM")
    assert body["AccessDeniedDetail"]["AuthAction"] == "alb:ListAsynJobs"
    sim.clear_faults()
    ok(call(server))


def test_clock_skew_shifts_the_timestamp_check(sim: Simulator, server: SimulatorServer) -> None:
    sim.set_faults(clock_skew=3600)
    api_error(call(server), 400, "InvalidTimeStamp.Expired")
    ok(call(server, clock=lambda: time.time() + 3600))
    sim.set_faults(clock_skew=0)
    ok(call(server))


def test_latency_and_hang(sim: Simulator, server: SimulatorServer) -> None:
    sim.set_faults(latency=0.3)
    started = time.monotonic()
    ok(call(server))
    assert time.monotonic() - started >= 0.3
    sim.set_faults(latency=0, hang=30)
    with pytest.raises(httpx.ReadTimeout):
        call(server, timeout=0.3)
    # The server shuts down promptly even with an answer still hanging.
    started = time.monotonic()
    server.shutdown()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "html502",
        "jobs_null",
        "missing_fields",
        "wrong_types",
        "extra_fields",
        "not_json",
    ],
)
def test_malformed_answers(sim: Simulator, server: SimulatorServer, kind: str) -> None:
    sim.set_faults(malformed=kind)
    r = call(server)
    if kind == "html502":
        assert r.status_code == 502 and r.headers["content-type"] == "text/html"
        assert "502 Bad Gateway" in r.text
        return
    assert r.status_code == 200
    if kind in ("truncated", "not_json"):
        with pytest.raises(ValueError):
            r.json()
        return
    body = r.json()
    if kind == "jobs_null":
        assert body["Jobs"] is None
    elif kind == "missing_fields":
        assert "TotalCount" not in body
        assert all("Status" not in j and "CreateTime" not in j for j in body["Jobs"])
    elif kind == "wrong_types":
        assert isinstance(body["TotalCount"], str)
        assert all(isinstance(j["CreateTime"], str) for j in body["Jobs"])
    else:
        assert "ExtraInfo" in body and all("ResourceName" in j for j in body["Jobs"])
        assert [
            {k: v for k, v in j.items() if k not in ("ResourceName", "Progress")}
            for j in body["Jobs"]
        ] == sim.jobs()[:20]


def test_endless_and_repeated_next_tokens(sim: Simulator, server: SimulatorServer) -> None:
    sim.set_faults(endless_next_token=True)
    pages: list[dict[str, Any]] = []
    token, seen = "", set()
    for _ in range(12):
        body = ok(call(server, {"MaxResults": "100", **({"NextToken": token} if token else {})}))
        pages.append(body)
        token = body["NextToken"]
        assert token and token not in seen
        seen.add(token)
    assert jobs_of(pages) == sim.jobs()  # past the end, pages are empty but tokens keep coming
    assert pages[-1]["Jobs"] == []

    sim.set_faults(endless_next_token=False, repeat_next_token=True)
    first = ok(call(server, {"MaxResults": "10"}))
    second = ok(call(server, {"MaxResults": "10", "NextToken": first["NextToken"]}))
    assert second["NextToken"] == first["NextToken"]


def test_duplicates_and_status_flips_between_pages(sim: Simulator, server: SimulatorServer) -> None:
    truth = sim.jobs()
    sim.set_faults(duplicate_across_pages=True)
    pages = all_pages(server, max_results=10)
    jobs = jobs_of(pages)
    assert len(jobs) > len(truth)
    assert all(p["Jobs"][0] == q["Jobs"][-1] for q, p in itertools.pairwise(pages))
    assert list({j["Id"]: j for j in jobs}.values()) == truth

    sim.set_faults(duplicate_across_pages=False, status_flip_between_pages=True)
    jobs = jobs_of(all_pages(server, max_results=10))
    statuses: dict[str, set[str]] = {}
    for job in jobs:
        statuses.setdefault(job["Id"], set()).add(job["Status"])
    assert any(len(s) > 1 for s in statuses.values())
    last_seen = {j["Id"]: j for j in jobs}  # the newest version of each job is the truth
    assert sorted(last_seen.values(), key=lambda j: (-j["CreateTime"], j["Id"])) == truth


def test_fault_knobs_are_validated_and_listed(sim: Simulator) -> None:
    assert "throttle_every" in FAULT_KNOBS and "status_flip_between_pages" in FAULT_KNOBS
    for bad in (
        {"throttle": 1.5},
        {"malformed": "garbled"},
        {"error_code": "Oops"},
        {"throttle_every": -1},
        {"endless_next_token": "maybe"},
        {"nope": 1},
    ):
        with pytest.raises(ValueError):
            sim.set_faults(**bad)
    sim.set_faults(throttle_every="3", endless_next_token="true", latency="0.5")
    assert sim.faults().throttle_every == 3 and sim.faults().endless_next_token is True
    sim.set_faults(throttle_every=None)
    assert sim.state()["faults"]["global"] == {"endless_next_token": True, "latency": 0.5}


# --- evolution and explicit control --------------------------------------------------------


def test_jobs_arrive_and_finish_as_simulated_time_advances(sim: Simulator) -> None:
    before = {j["Id"]: j for j in sim.jobs()}
    processing = [j for j in before.values() if j["Status"] == "Processing"]
    assert processing
    sim.advance(3600)
    after = {j["Id"]: j for j in sim.jobs()}
    new = set(after) - set(before)
    assert 250 < len(new) < 480  # about 6 per minute
    finished = [j for j in processing if after[j["Id"]]["Status"] != "Processing"]
    assert finished
    now_ms = int(sim.now() * 1000)
    for job in after.values():
        if job["Status"] == "Processing":
            assert job["ModifyTime"] == job["CreateTime"]
        else:
            assert job["CreateTime"] < job["ModifyTime"] <= now_ms
    # Stuck jobs: still Processing long after any normal job would have finished.
    stuck = [
        j
        for j in after.values()
        if j["Status"] == "Processing" and now_ms - j["CreateTime"] > 20 * 60_000
    ]
    assert stuck
    sim.advance(6 * 3600)
    later = {j["Id"]: j for j in sim.jobs()}
    assert all(later[j["Id"]]["Status"] == "Processing" for j in stuck)


def test_evolution_over_http_time_control(sim: Simulator, server: SimulatorServer) -> None:
    state = control(server, "GET", "/_sim/state")
    assert state["frozen"] is True and state["regions"] == list(REGIONS)
    count = len(control(server, "GET", "/_sim/jobs?region=cn-shanghai"))
    moved = control(server, "POST", "/_sim/time", {"advance": 600})
    assert moved["now"] == pytest.approx(state["now"] + 600)
    assert len(control(server, "GET", "/_sim/jobs?region=cn-shanghai")) > count
    assert control(server, "POST", "/_sim/time", {"freeze": False})["frozen"] is False
    assert sim.now() == pytest.approx(state["now"] + 600, abs=2)
    assert len(jobs_of(all_pages(server, region="cn-shanghai"))) >= count


def test_job_sets_are_deterministic_whatever_the_viewing_pattern() -> None:
    def make(seed: int) -> Simulator:
        s = Simulator(REGIONS, seed=seed, clock=lambda: 1_700_000_000.0)
        s.freeze()
        return s

    one, two, other = make(5), make(5), make(6)
    assert one.jobs() == two.jobs() and one.jobs() != other.jobs()
    for _ in range(10):
        one.advance(60)
        one.jobs()  # looked at every minute ...
    two.advance(600)  # ... or once: the same jobs in the same states
    assert one.jobs() == two.jobs()
    assert one.jobs("cn-shanghai") == two.jobs("cn-shanghai") != one.jobs()


def test_generated_jobs_look_like_alb_jobs(sim: Simulator) -> None:
    jobs = sim.jobs()
    assert 600 < len(jobs) < 850  # two hours at 6 per minute
    prefixes = {
        "loadbalancer": "alb-",
        "listener": "lsn-",
        "servergroup": "sgp-",
        "rule": "rule-",
        "acl": "acl-",
        "securitypolicy": "spy-",
    }
    uuid_upper = re.compile(
        r"^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$"
    )
    for job in jobs:
        assert uuid_upper.match(job["Id"])
        assert re.match(rf"^{prefixes[job['ResourceType']]}[a-z0-9]{{18}}$", job["ResourceId"])
        assert job["OperateType"] in ("Create", "Update", "Delete")
        assert job["ApiName"].startswith(job["OperateType"]) or job["OperateType"] == "Update"
    failed = [j for j in jobs if j["Status"] == "Failed"]
    assert 0.05 < len(failed) / len(jobs) < 0.16
    assert {"Conflict.Lock"} < {j["ErrorCode"] for j in failed}
    assert all(j["ErrorMessage"] for j in failed)
    assert len({(j["ApiName"], j["ResourceType"]) for j in jobs}) >= 15


def test_explicit_job_control(sim: Simulator, server: SimulatorServer) -> None:
    region = "cn-hangzhou"
    now_ms = int(sim.now() * 1000)
    job = sim.upsert_job(
        region,
        Id="JOB-1",
        ApiName="CreateAcl",
        OperateType="Create",
        ResourceType="acl",
        CreateTime=now_ms - 5000,
    )
    assert job["Status"] == "Processing" and job["ModifyTime"] == now_ms - 5000
    assert job["ResourceId"].startswith("acl-")

    def current(job_id: str) -> Job:
        return {j["Id"]: j for j in sim.jobs(region)}[job_id]

    assert current("JOB-1") == job
    sim.advance(3600)
    assert current("JOB-1")["Status"] == "Processing"  # explicit Processing stays so

    failed = sim.set_status(
        region, "JOB-1", "Failed", error_code="QuotaExceeded.AclsNum", error_message="too many"
    )
    assert failed["ErrorCode"] == "QuotaExceeded.AclsNum" and failed["ErrorMessage"] == "too many"
    assert failed["ModifyTime"] == int(sim.now() * 1000)
    assert ok(call(server, {"JobIds.1": "JOB-1"}))["Jobs"] == [failed]
    # A future ModifyTime means "Processing until then".
    later = sim.set_status(region, "JOB-1", "Succeeded", modify_time=sim.now() + 60)
    assert later["Status"] == "Processing" and "ErrorCode" not in later
    sim.advance(60)
    assert current("JOB-1")["Status"] == "Succeeded"
    # A failed job without an ErrorCode (the exporter must label it error_code="").
    bare = sim.upsert_job(region, Id="JOB-2", Status="Failed")
    assert bare["Status"] == "Failed" and "ErrorCode" not in bare
    sim.remove_job(region, "JOB-1")
    assert "JOB-1" not in {j["Id"] for j in sim.jobs(region)}
    with pytest.raises(KeyError):
        sim.set_status(region, "JOB-1", "Failed")
    with pytest.raises(KeyError):
        sim.remove_job(region, "JOB-1")
    with pytest.raises(ValueError):
        sim.upsert_job(region, Id="JOB-3", Stauts="Failed")
    with pytest.raises(ValueError):
        sim.upsert_job(region, Id="JOB-3", Status="Done")


def test_job_control_over_http(sim: Simulator, server: SimulatorServer) -> None:
    now_ms = int(sim.now() * 1000)
    result = control(
        server,
        "POST",
        "/_sim/jobs",
        {
            "region": "cn-shanghai",
            "jobs": [
                {
                    "Id": "HTTP-1",
                    "Status": "Failed",
                    "ErrorCode": "506",
                    "CreateTime": now_ms - 10_000,
                    "ModifyTime": now_ms - 4000,
                },
            ],
        },
    )
    job = result["jobs"][0]
    assert job["ErrorCode"] == "506" and job["ModifyTime"] == now_ms - 4000
    assert job in control(server, "GET", "/_sim/jobs?region=cn-shanghai")
    bad = httpx.post(server.url + "/_sim/jobs", json={"jobs": [{"Bogus": 1}]})
    assert bad.status_code == 400
    control(server, "DELETE", "/_sim/jobs?region=cn-shanghai&id=HTTP-1")
    assert job not in control(server, "GET", "/_sim/jobs?region=cn-shanghai")
    assert httpx.delete(server.url + "/_sim/jobs?region=cn-shanghai&id=HTTP-1").status_code == 404
    assert httpx.get(server.url + "/_sim/nope").status_code == 404
    sts = control(server, "POST", "/_sim/sts", {"ttl": 60})
    ok(
        call(
            server,
            key=sts["AccessKeyId"],
            secret=sts["AccessKeySecret"],
            token=sts["SecurityToken"],
        )
    )


def test_control_endpoints_are_loopback_only(sim: Simulator) -> None:
    remote = sim.handle(SimRequest("GET", "/_sim/state", client="192.0.2.7"))
    assert remote.status == 403
    assert sim.handle(SimRequest("GET", "/_sim/state", client="::1")).status == 200


def test_request_log_counts_and_keeps_no_secrets(
    sim: Simulator, server: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.simulator")
    key_id, secret, token, _ = sim.issue_sts()
    ok(call(server, {"ResourceType": "rule"}, scheme="v1", key=key_id, secret=secret, token=token))
    call(server, {"ApiName": "CreateRule"}, region="cn-shanghai", secret="wrong")
    assert sim.request_count() == 2
    assert sim.request_count("cn-hangzhou") == 1 and sim.request_count("cn-shanghai") == 1
    assert sim.request_count("eu-west-1") == 0
    assert sim.last_params("cn-hangzhou") == {"ResourceType": "rule"}
    assert sim.last_params("cn-shanghai") == {"ApiName": "CreateRule"}
    records = control(server, "GET", "/_sim/requests")
    assert [(r["region"], r["scheme"], r["status"], r["code"]) for r in records] == [
        ("cn-hangzhou", "v1", 200, "OK"),
        ("cn-shanghai", "v3", 400, "SignatureDoesNotMatch"),
    ]
    assert records[0]["access_key_id"] == key_id
    assert control(server, "GET", "/_sim/state")["request_counts"] == {
        "cn-hangzhou": 1,
        "cn-shanghai": 1,
    }
    text = str(records) + caplog.text
    assert "POST / -> 200" in caplog.text
    for leaked in (secret, token, SECRET, "Signature="):
        assert leaked not in text


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("30s", "15m", "2h", "1d", "90", "0.5h")] == [
        30,
        900,
        7200,
        86400,
        90,
        1800,
    ]
    for bad in ("", "h", "5x", "-1m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# --- the standalone command ----------------------------------------------------------------


def _first_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    assert proc.stdout is not None
    stream = proc.stdout
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()))
    reader.start()
    reader.join(timeout)
    assert line, "the simulator printed nothing"
    return line[0]


def test_cli_serves_until_sigterm() -> None:
    args = [
        sys.executable,
        "-m",
        "exporter.simulator",
        "--listen",
        "127.0.0.1:0",
        "--regions",
        "cn-hangzhou,cn-shanghai",
        "--seed",
        "1",
        "--history",
        "10m",
        "--access-key-id",
        KEY,
        "--access-key-secret",
        SECRET,
        "--fault",
        "cn-shanghai:throttle_every=2",
        "--log-level",
        "debug",
    ]
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        first = _first_line(proc)
        match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)\n", first)
        assert match, first
        url = f"http://127.0.0.1:{match.group(1)}"
        body = ok(call(url, {"MaxResults": "100"}, region="cn-shanghai"))
        assert 40 < body["TotalCount"] < 100
        api_error(call(url, region="cn-shanghai"), 400, "Throttling.User")
        ok(call(url, region="cn-hangzhou", scheme="v1"))
        state = httpx.get(url + "/_sim/state").json()
        assert state["regions"] == ["cn-hangzhou", "cn-shanghai"]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
        assert proc.returncode == 0, stderr
        assert SECRET not in stderr and "Signature" not in stderr
        assert "POST /cn-shanghai/ -> 400" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_help_and_bad_arguments() -> None:
    run = [sys.executable, "-m", "exporter.simulator"]
    helped = subprocess.run(
        [*run, "--help"], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    assert helped.returncode == 0
    assert "--fault" in helped.stdout and "throttle_every" in helped.stdout
    bad = subprocess.run(
        [*run, "--fault", "nope=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "unknown fault knob" in bad.stderr
    assert "Traceback" not in bad.stderr
