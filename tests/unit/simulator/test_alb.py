"""The ALB endpoint: routing by path or host, methods, form bodies, and the request log."""

from __future__ import annotations

import logging
import time

import pytest

from exporter.alibaba.signing import canonical_query
from exporter.simulator import Simulator, SimulatorServer
from exporter.wire import ACTION, API_VERSION
from tests.support import loopback
from tests.unit.simulator.helpers import (
    KEY,
    REGIONS,
    SECRET,
    all_pages,
    api_error,
    call,
    control,
    jobs_of,
    ok,
)


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
    r = loopback.post(server.url + "/not/a/region")
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
    r = loopback.post(
        server.url + "/?" + canonical_query(common),
        content=canonical_query(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ok(r)["Jobs"] == [j for j in sim.jobs() if j["ApiName"] == "CreateRule"][:100]
    form["ApiName"] = "DeleteRule"  # a body changed after signing
    r = loopback.post(
        server.url + "/?" + canonical_query({**common, "SignatureNonce": "form-nonce-2"}),
        content=canonical_query(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    api_error(r, 400, "SignatureDoesNotMatch")


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
