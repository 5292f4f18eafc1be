"""ListAsynJobs answers: paging, NextTokens, filters, error fields.

Two independent oracles: the official Alibaba SDK (it must accept the simulator as if it were
ALB), and our own signers (`exporter.alibaba.signing.make_signer`) for everything the SDK cannot
provoke: paging details, auth failures, faults. Expected jobs always come from the
simulator's own truth (`Simulator.jobs`), filtered here in the test.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from exporter.simulator import Simulator, SimulatorServer
from tests.unit.simulator.helpers import KEY, SECRET, Job, all_pages, api_error, call, jobs_of, ok

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
