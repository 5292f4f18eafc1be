"""The gateway checks: nonces, timestamps, keys, STS tokens, signature parts, body hashes."""

from __future__ import annotations

import time
from collections.abc import Generator

import httpx
import pytest

from exporter.alibaba.signing import Credential, canonical_query, make_signer
from exporter.simulator import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    Simulator,
    SimulatorServer,
)
from exporter.wire import ACTION, API_VERSION
from tests.support import loopback
from tests.unit.simulator.helpers import KEY, SECRET, ShiftableClock, api_error, call, ok


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
    api_error(loopback.post(server.url + "/"), 400, "MissingParameter")
    api_error(
        loopback.post(server.url + "/", headers={"Authorization": "ACS3-HMAC-SHA256 x"}),
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
    api_error(
        loopback.post(server.url + "/?" + canonical_query(params)), 400, "IncompleteSignature"
    )
    body = api_error(
        loopback.post(server.url + "/?" + canonical_query({**params, "Timestamp": ""})),
        400,
        "MissingParameter",
    )
    assert '"Timestamp"' in body["Message"]
    bad_time = {**params, "Timestamp": "yesterday", "Signature": "x"}
    api_error(
        loopback.post(server.url + "/?" + canonical_query(bad_time)), 400, "InvalidTimeStamp.Format"
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
    r = loopback.post(server.url + "/", auth=auth)
    body = api_error(r, 400, "SignatureDoesNotMatch")
    assert "x-acs-content-sha256" in body["Message"]


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_only_list_asyn_jobs_2020_06_16_exists(server: SimulatorServer, scheme: str) -> None:
    api_error(call(server, scheme=scheme, action="DescribeRegions"), 404, "InvalidAction.NotFound")
    api_error(call(server, scheme=scheme, version="2014-05-26"), 404, "InvalidVersion")
