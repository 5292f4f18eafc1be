"""Tests for exporter.alibaba.signing: official vectors, what the signers put on the wire, and a
differential test against the official SDK's signing functions (a test-only oracle).

Expected strings are copied from /work/shared/alibaba-api.md §3.3, §4.3 and §4.4; they were
produced independently of this code base.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import string
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import httpx
import pytest
from alibabacloud_tea_openapi.utils import Utils, get_canonical_query_string
from darabonba.request import DaraRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.alibaba.signing import (
    Credential,
    V1Signer,
    V3Signer,
    canonical_query,
    make_signer,
    percent_encode,
    v1_signature,
    v1_string_to_sign,
    v3_authorization,
    v3_canonical_request,
)

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ALB_URL = "https://alb.cn-hangzhou.aliyuncs.com/"
LIST_JOBS_PARAMS = {
    "JobIds.1": "job-a",
    "JobIds.2": "job-b",
    "MaxResults": "100",
    "NextToken": "ab+/=c d~*",
    "ResourceType": "loadbalancer",
}
NONCE_C = "0123456789abcdef0123456789abcdef"
V3_REQUIRED_SIGNED = {
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
}
AUTH_RE = re.compile(
    r"ACS3-HMAC-SHA256 Credential=(?P<ak>[^,]+),"
    r"SignedHeaders=(?P<signed>[^,]+),Signature=(?P<sig>[0-9a-f]{64})"
)


def at(timestamp: str) -> Callable[[], float]:
    """A frozen clock reading the given UTC `YYYY-MM-DDThh:mm:ssZ` instant."""
    epoch = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    return lambda: epoch


def static(access_key_id: str, secret: str, token: str | None = None) -> Callable[[], Credential]:
    cred = Credential(access_key_id, secret, security_token=token)
    return lambda: cred


def list_jobs_signer(
    scheme: str,
    credentials: Callable[[], Credential],
    *,
    clock: Callable[[], float] | None = None,
    nonce: Callable[[], str] = lambda: NONCE_C,
) -> httpx.Auth:
    """A signer for the ListAsynJobs call, as the exporter builds it (vectors C and 4.4);
    by default at vector C's instant and with its nonce."""
    return make_signer(
        scheme,
        credentials,
        action="ListAsynJobs",
        version="2020-06-16",
        clock=clock or at("2024-01-01T00:00:00Z"),
        nonce=nonce,
    )


def list_jobs_request() -> httpx.Request:
    """A fresh request (the signers change it in place) for vector C's parameters."""
    return httpx.Request("POST", ALB_URL + "?" + canonical_query(LIST_JOBS_PARAMS))


def send(auth: httpx.Auth, request: httpx.Request, attempts: int = 1) -> list[httpx.Request]:
    """Send `request` through a real httpx.Client and return what the transport received.

    Every attempt re-sends the same request object, as a retry loop around `client.send`
    would; each capture is a snapshot because the signers mutate the request in place.
    """
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(httpx.Request(req.method, req.url, headers=req.headers, content=req.read()))
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handler), trust_env=False) as client:
        for _ in range(attempts):
            client.send(request, auth=auth)
    assert len(seen) == attempts
    return seen


def wire_params(request: httpx.Request) -> dict[str, str]:
    raw = request.url.query.decode("ascii")
    # RFC 3986 encoding never leaves a literal "+", so reading "+" as a space cannot bite.
    assert "+" not in raw
    pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=bool(raw))
    params = dict(pairs)
    assert len(params) == len(pairs), "duplicate query keys"
    return params


def sdk_verify_v1(request: httpx.Request, secret: str) -> dict[str, str]:
    """Check the wire request with the SDK's V1 signer; return the signed parameters."""
    params = wire_params(request)
    signature = params.pop("Signature")
    assert signature == Utils.get_rpcsignature(params, request.method, secret)
    return params


def sdk_verify_v3(request: httpx.Request, access_key_id: str, secret: str) -> list[str]:
    """Check the wire request with the SDK's V3 signer; return the signed header names."""
    match = AUTH_RE.fullmatch(request.headers["authorization"])
    assert match is not None, request.headers["authorization"]
    assert match["ak"] == access_key_id
    signed = match["signed"].split(";")
    assert set(signed) >= V3_REQUIRED_SIGNED
    payload_hash = hashlib.sha256(request.content).hexdigest()
    assert request.headers["x-acs-content-sha256"] == payload_hash
    sdk_request = DaraRequest()
    sdk_request.method = request.method
    sdk_request.pathname = request.url.path
    sdk_request.query = wire_params(request)
    sdk_request.headers = {name: request.headers[name] for name in signed}
    expected = Utils.get_authorization(
        sdk_request, "ACS3-HMAC-SHA256", payload_hash, access_key_id, secret
    )
    assert request.headers["authorization"] == expected
    return signed


# --- percent encoding --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("AZaz09-_.~", "AZaz09-_.~"),
        (" ", "%20"),
        ("*", "%2A"),
        ("+/=", "%2B%2F%3D"),
        (":&%", "%3A%26%25"),
        ("中", "%E4%B8%AD"),
        ("🙂", "%F0%9F%99%82"),
    ],
)
def test_percent_encode_is_rfc3986(raw: str, encoded: str) -> None:
    assert percent_encode(raw) == encoded


# --- V1 official and self-derived vectors --------------------------------------------------

VECTOR_A_PARAMS = {
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "Format": "XML",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "SignatureVersion": "1.0",
    "Timestamp": "2016-02-23T12:46:24Z",
    "Version": "2014-05-26",
}
VECTOR_B_PARAMS = {
    "AccessKeyId": "testid",
    "Action": "DescribeDedicatedHosts",
    "Format": "JSON",
    "RegionId": "cn-beijing",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "edb2b34af0af9a6d14deaf7c1a5315eb",
    "SignatureVersion": "1.0",
    "Timestamp": "2023-03-13T08:34:30Z",
    "Version": "2014-05-26",
}
VECTOR_B_CQS = (
    "AccessKeyId=testid&Action=DescribeDedicatedHosts&Format=JSON&RegionId=cn-beijing"
    "&SignatureMethod=HMAC-SHA1&SignatureNonce=edb2b34af0af9a6d14deaf7c1a5315eb"
    "&SignatureVersion=1.0&Timestamp=2023-03-13T08%3A34%3A30Z&Version=2014-05-26"
)
VECTOR_C_CQS = (
    "AccessKeyId=testid&Action=ListAsynJobs&Format=JSON&JobIds.1=job-a&JobIds.2=job-b"
    "&MaxResults=100&NextToken=ab%2B%2F%3Dc%20d~%2A&ResourceType=loadbalancer"
    "&SignatureMethod=HMAC-SHA1&SignatureNonce=0123456789abcdef0123456789abcdef"
    "&SignatureVersion=1.0&Timestamp=2024-01-01T00%3A00%3A00Z&Version=2020-06-16"
)


def test_v1_vector_a_string_to_sign_and_signature() -> None:
    assert v1_string_to_sign("GET", VECTOR_A_PARAMS) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
        "%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
        "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
    )
    assert v1_signature("GET", VECTOR_A_PARAMS, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    # The method is part of the string to sign (POST variant self-computed in the doc).
    assert v1_signature("POST", VECTOR_A_PARAMS, "testsecret") == "MxbnVAM4w6sft9xjVpe/GCKueuk="


def test_v1_vector_b_canonical_query_and_signature() -> None:
    assert canonical_query(VECTOR_B_PARAMS) == VECTOR_B_CQS
    assert v1_signature("GET", VECTOR_B_PARAMS, "testsecret") == "9NaGiOspFP5UPcwX8Iwt2YJXXuk="
    assert v1_signature("POST", VECTOR_B_PARAMS, "testsecret") == "ZvQ9xGiFnquSJRvj+WE6kdSpTwU="


def test_v1_signer_reproduces_vector_b_on_the_wire() -> None:
    signer = make_signer(
        "v1",
        static("testid", "testsecret"),
        action="DescribeDedicatedHosts",
        version="2014-05-26",
        clock=at("2023-03-13T08:34:30Z"),
        nonce=lambda: "edb2b34af0af9a6d14deaf7c1a5315eb",
    )
    (wire,) = send(signer, httpx.Request("GET", "https://ecs.aliyuncs.com/?RegionId=cn-beijing"))
    assert wire.method == "GET"
    assert wire.url.query.decode() == VECTOR_B_CQS.replace(
        "&SignatureMethod=", "&Signature=9NaGiOspFP5UPcwX8Iwt2YJXXuk%3D&SignatureMethod="
    )


def test_v1_signer_reproduces_vector_c_on_the_wire() -> None:
    signer = list_jobs_signer(
        "v1",
        static("testid", "testsecret"),
    )
    assert isinstance(signer, V1Signer)
    (wire,) = send(signer, list_jobs_request())
    assert str(wire.url) == ALB_URL + "?" + VECTOR_C_CQS.replace(
        "&SignatureMethod=", "&Signature=TRclqBfQfCQJscEgAJhZMRwV%2Fgc%3D&SignatureMethod="
    )
    assert wire_params(wire)["Signature"] == "TRclqBfQfCQJscEgAJhZMRwV/gc="
    assert "authorization" not in wire.headers
    assert wire.content == b""


# --- V3 official and self-derived vectors --------------------------------------------------

RUN_INSTANCES_QUERY = {
    "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
    "RegionId": "cn-shanghai",
}
RUN_INSTANCES_HEADERS = {
    "host": "ecs.cn-shanghai.aliyuncs.com",
    "x-acs-action": "RunInstances",
    "x-acs-version": "2014-05-26",
    "x-acs-date": "2023-10-26T10:22:32Z",
    "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
    "x-acs-content-sha256": EMPTY_SHA256,
}
RUN_INSTANCES_CANONICAL = (
    "POST\n"
    "/\n"
    "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n"
    "host:ecs.cn-shanghai.aliyuncs.com\n"
    "x-acs-action:RunInstances\n"
    "x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
    "x-acs-date:2023-10-26T10:22:32Z\n"
    "x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n"
    "x-acs-version:2014-05-26\n"
    "\n"
    "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)
RUN_INSTANCES_AUTHORIZATION = (
    "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
    "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;"
    "x-acs-version,"
    "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
)
LIST_JOBS_AUTHORIZATION = (
    "ACS3-HMAC-SHA256 Credential=testid,"
    "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;"
    "x-acs-version,"
    "Signature=a84b1899bffe8984935654c3f44883071ef7af888f9a6d773faff02205c08475"
)


def test_v3_official_run_instances_vector() -> None:
    canonical, signed_headers = v3_canonical_request(
        "POST", "/", RUN_INSTANCES_QUERY, RUN_INSTANCES_HEADERS, EMPTY_SHA256
    )
    assert canonical == RUN_INSTANCES_CANONICAL
    assert signed_headers == (
        "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    )
    assert (
        hashlib.sha256(canonical.encode()).hexdigest()
        == "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    authorization = v3_authorization(
        "POST",
        "/",
        RUN_INSTANCES_QUERY,
        RUN_INSTANCES_HEADERS,
        EMPTY_SHA256,
        "YourAccessKeyId",
        "YourAccessKeySecret",
    )
    assert authorization == RUN_INSTANCES_AUTHORIZATION


def test_v3_signer_reproduces_run_instances_vector_on_the_wire() -> None:
    signer = make_signer(
        "v3",
        static("YourAccessKeyId", "YourAccessKeySecret"),
        action="RunInstances",
        version="2014-05-26",
        clock=at("2023-10-26T10:22:32Z"),
        nonce=lambda: "3156853299f313e23d1673dc12e1703d",
    )
    url = "https://ecs.cn-shanghai.aliyuncs.com/?" + canonical_query(RUN_INSTANCES_QUERY)
    (wire,) = send(signer, httpx.Request("POST", url))
    assert wire.headers["authorization"] == RUN_INSTANCES_AUTHORIZATION
    for name, value in RUN_INSTANCES_HEADERS.items():
        assert wire.headers[name] == value


def test_v3_list_jobs_vector_canonical_request() -> None:
    headers = {
        "host": "alb.cn-hangzhou.aliyuncs.com",
        "x-acs-action": "ListAsynJobs",
        "x-acs-version": "2020-06-16",
        "x-acs-date": "2024-01-01T00:00:00Z",
        "x-acs-signature-nonce": NONCE_C,
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    canonical, _ = v3_canonical_request("POST", "/", LIST_JOBS_PARAMS, headers, EMPTY_SHA256)
    assert canonical.split("\n")[2] == (
        "JobIds.1=job-a&JobIds.2=job-b&MaxResults=100&NextToken=ab%2B%2F%3Dc%20d~%2A"
        "&ResourceType=loadbalancer"
    )
    assert (
        hashlib.sha256(canonical.encode()).hexdigest()
        == "a068e0dcad70b6b6ed5d28c943fab0b99e3c79a01416272572ad262aa23c39d0"
    )


def test_v3_signer_reproduces_list_jobs_vector_on_the_wire() -> None:
    signer = list_jobs_signer(
        "v3",
        static("testid", "testsecret"),
    )
    assert isinstance(signer, V3Signer)
    (wire,) = send(signer, list_jobs_request())
    # V3 leaves the query alone: it must stay exactly what was signed.
    assert wire.url.query.decode() == (
        "JobIds.1=job-a&JobIds.2=job-b&MaxResults=100&NextToken=ab%2B%2F%3Dc%20d~%2A"
        "&ResourceType=loadbalancer"
    )
    assert wire.headers["host"] == "alb.cn-hangzhou.aliyuncs.com"
    assert wire.headers["x-acs-action"] == "ListAsynJobs"
    assert wire.headers["x-acs-version"] == "2020-06-16"
    assert wire.headers["x-acs-date"] == "2024-01-01T00:00:00Z"
    assert wire.headers["x-acs-signature-nonce"] == NONCE_C
    assert wire.headers["x-acs-content-sha256"] == EMPTY_SHA256
    assert wire.headers["authorization"] == LIST_JOBS_AUTHORIZATION
    assert "x-acs-security-token" not in wire.headers
    assert "x-acs-accesskey-id" not in wire.headers


def test_scheme_picks_the_signer() -> None:
    signer = make_signer("v3", static("a", "b"), action="ListAsynJobs", version="2020-06-16")
    assert isinstance(signer, V3Signer)
    signer = make_signer("v1", static("a", "b"), action="ListAsynJobs", version="2020-06-16")
    assert isinstance(signer, V1Signer)


@pytest.mark.parametrize("scheme", ["", "V3", "v2", "hmac-sha1", "v3 "])
def test_unknown_scheme_is_an_error_not_v3(scheme: str) -> None:
    with pytest.raises(ValueError, match="unknown signature scheme"):
        make_signer(scheme, static("a", "b"), action="ListAsynJobs", version="2020-06-16")


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_prepare_asks_for_the_credential_without_signing(scheme: str) -> None:
    calls: list[int] = []

    def credentials() -> Credential:
        calls.append(1)
        return Credential("id", "secret")

    signer = make_signer(scheme, credentials, action="ListAsynJobs", version="2020-06-16")
    signer.prepare()
    assert len(calls) == 1


# --- every attempt is signed afresh -------------------------------------------------------


def counting_clock(start: str) -> Callable[[], float]:
    first = at(start)()
    ticks: Iterator[int] = itertools.count()
    return lambda: first + next(ticks)


def counting_nonce() -> Callable[[], str]:
    ticks: Iterator[int] = itertools.count(1)
    return lambda: f"nonce-{next(ticks)}"


def test_v1_each_attempt_gets_fresh_nonce_and_timestamp() -> None:
    signer = list_jobs_signer(
        "v1",
        static("testid", "testsecret"),
        clock=counting_clock("2024-01-01T00:00:00Z"),
        nonce=counting_nonce(),
    )
    first, second = send(signer, list_jobs_request(), attempts=2)
    p1 = sdk_verify_v1(first, "testsecret")
    p2 = sdk_verify_v1(second, "testsecret")
    assert (p1["SignatureNonce"], p1["Timestamp"]) == ("nonce-1", "2024-01-01T00:00:00Z")
    assert (p2["SignatureNonce"], p2["Timestamp"]) == ("nonce-2", "2024-01-01T00:00:01Z")
    assert wire_params(first)["Signature"] != wire_params(second)["Signature"]
    # Re-signing must not accumulate parameters from the previous attempt.
    assert (
        set(p1)
        == set(p2)
        == set(LIST_JOBS_PARAMS)
        | {
            "Action",
            "Version",
            "Format",
            "AccessKeyId",
            "SignatureMethod",
            "SignatureVersion",
            "SignatureNonce",
            "Timestamp",
        }
    )


def test_v3_each_attempt_gets_fresh_nonce_and_timestamp() -> None:
    signer = list_jobs_signer(
        "v3",
        static("testid", "testsecret"),
        clock=counting_clock("2024-01-01T00:00:00Z"),
        nonce=counting_nonce(),
    )
    first, second = send(signer, list_jobs_request(), attempts=2)
    assert sdk_verify_v3(first, "testid", "testsecret") == sdk_verify_v3(
        second, "testid", "testsecret"
    )
    assert first.headers["x-acs-signature-nonce"] == "nonce-1"
    assert second.headers["x-acs-signature-nonce"] == "nonce-2"
    assert first.headers["x-acs-date"] == "2024-01-01T00:00:00Z"
    assert second.headers["x-acs-date"] == "2024-01-01T00:00:01Z"
    assert first.headers["authorization"] != second.headers["authorization"]
    assert first.url == second.url


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_credentials_are_read_on_every_attempt(scheme: str) -> None:
    rotation = iter([Credential("old-id", "old-secret"), Credential("new-id", "new-secret")])
    signer = list_jobs_signer(
        scheme, lambda: next(rotation), clock=at("2024-01-01T00:00:00Z"), nonce=counting_nonce()
    )
    first, second = send(signer, httpx.Request("POST", ALB_URL), attempts=2)
    if scheme == "v1":
        assert sdk_verify_v1(first, "old-secret")["AccessKeyId"] == "old-id"
        assert sdk_verify_v1(second, "new-secret")["AccessKeyId"] == "new-id"
    else:
        sdk_verify_v3(first, "old-id", "old-secret")
        sdk_verify_v3(second, "new-id", "new-secret")


# --- STS credentials ----------------------------------------------------------------------


def test_v3_sts_token_is_sent_and_signed() -> None:
    signer = list_jobs_signer(
        "v3",
        static("STS.testid", "testsecret", token="tok+en/=="),
    )
    (wire,) = send(signer, list_jobs_request())
    assert wire.headers["x-acs-security-token"] == "tok+en/=="
    assert wire.headers["x-acs-accesskey-id"] == "STS.testid"
    signed = sdk_verify_v3(wire, "STS.testid", "testsecret")
    assert {"x-acs-security-token", "x-acs-accesskey-id"} <= set(signed)
    # The token changes the signature: it is covered, not merely attached.
    assert wire.headers["authorization"] != LIST_JOBS_AUTHORIZATION.replace(
        "Credential=testid", "Credential=STS.testid"
    )


def test_v1_sts_token_is_sent_and_signed() -> None:
    signer = list_jobs_signer(
        "v1",
        static("testid", "testsecret", token="tok+en/=="),
    )
    (wire,) = send(signer, list_jobs_request())
    assert "SecurityToken=tok%2Ben%2F%3D%3D" in wire.url.query.decode().split("&")
    params = sdk_verify_v1(wire, "testsecret")
    assert params["SecurityToken"] == "tok+en/=="
    # Without the token the parameters are vector C's, whose signature must now differ.
    assert wire_params(wire)["Signature"] != "TRclqBfQfCQJscEgAJhZMRwV/gc="
    assert "x-acs-security-token" not in wire.headers


# --- differential tests against the official SDK -----------------------------------------

SPECIAL_CHARS = " *~+/=&%?#:;,@!$'()[]\"\\<>^`{|}\t\n\x00中文字日本語🙂🚀é\u00a0\u2028"
text_char = st.one_of(st.sampled_from(SPECIAL_CHARS), st.characters(codec="utf-8"))
any_text = st.text(alphabet=text_char, max_size=24)
# Characters that RFC 3986 leaves unencoded; see the V3 notes below.
unreserved_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.~", min_size=1)
api_keys = st.one_of(
    st.sampled_from(
        ["NextToken", "MaxResults", "ApiName", "ResourceType", "BeginTime", "EndTime", "Status"]
    ),
    st.integers(1, 30).map(lambda n: f"JobIds.{n}"),
    st.integers(1, 30).map(lambda n: f"ResourceIds.{n}"),
)
api_params = st.dictionaries(api_keys, any_text, max_size=8)
# Header-safe ASCII for values that travel as HTTP headers (access key id, STS token).
header_token = st.text(alphabet=string.ascii_letters + string.digits + "+/=.", min_size=1)
alb_urls = st.sampled_from(
    [ALB_URL, "https://alb.ap-southeast-1.aliyuncs.com/", "http://127.0.0.1:18080/"]
)


# The SDK does not skip a `Signature` key (it is never given one); ours drops it because it is
# the output field, so generated keys exclude it. The SDK uses the method verbatim while we
# upper-case it, so only upper-case methods are generated.
@pytest.mark.slow
@settings(max_examples=200)
@given(
    params=st.dictionaries(
        st.text(alphabet=text_char, min_size=1, max_size=12).filter(lambda k: k != "Signature"),
        any_text,
        max_size=8,
    ),
    method=st.sampled_from(["GET", "POST"]),
    secret=any_text,
)
def test_v1_signature_matches_sdk(params: dict[str, str], method: str, secret: str) -> None:
    assert v1_signature(method, params, secret) == Utils.get_rpcsignature(params, method, secret)


@pytest.mark.slow
@settings(max_examples=200)
@given(params=api_params, secret=any_text, token=st.none() | any_text.filter(bool))
def test_v1_signer_on_the_wire_matches_sdk(
    params: dict[str, str], secret: str, token: str | None
) -> None:
    signer = list_jobs_signer(
        "v1",
        static("testid", secret, token=token),
    )
    (wire,) = send(signer, httpx.Request("POST", ALB_URL + "?" + canonical_query(params)))
    signed = sdk_verify_v1(wire, secret)
    # Every caller parameter survives the round trip through the URL unchanged.
    assert {k: signed[k] for k in params} == params
    assert signed.get("SecurityToken") == token
    # The query on the wire is the SDK's canonical form (sorted, RFC 3986) of what was signed.
    assert wire.url.query.decode() == get_canonical_query_string(wire_params(wire))


# The SDK's V3 canonical query does not percent-encode keys, and it uses the pathname verbatim,
# so keys and path segments are drawn from RFC 3986 unreserved characters, where encoding is
# the identity. Header names are distinct lower-case names: the SDK merges repeated names,
# which a str-keyed mapping cannot express anyway.
@pytest.mark.slow
@settings(max_examples=200)
@given(
    query=st.dictionaries(unreserved_text, any_text, max_size=8),
    path=st.lists(unreserved_text, max_size=3).map(lambda parts: "/" + "/".join(parts)),
    headers=st.dictionaries(
        st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=12),
        any_text,
        min_size=1,
        max_size=8,
    ),
    method=st.sampled_from(["GET", "POST"]),
    body=st.binary(max_size=64),
    access_key_id=any_text,
    secret=any_text,
)
def test_v3_authorization_matches_sdk(
    query: dict[str, str],
    path: str,
    headers: dict[str, str],
    method: str,
    body: bytes,
    access_key_id: str,
    secret: str,
) -> None:
    payload_hash = hashlib.sha256(body).hexdigest()
    sdk_request = DaraRequest()
    sdk_request.method = method
    sdk_request.pathname = path
    sdk_request.query = query
    sdk_request.headers = headers
    expected = Utils.get_authorization(
        sdk_request, "ACS3-HMAC-SHA256", payload_hash, access_key_id, secret
    )
    ours = v3_authorization(method, path, query, headers, payload_hash, access_key_id, secret)
    assert ours == expected


@pytest.mark.slow
@settings(max_examples=200)
@given(
    params=api_params,
    url=alb_urls,
    body=st.binary(max_size=64),
    access_key_id=header_token,
    secret=any_text,
    token=st.none() | header_token,
)
def test_v3_signer_on_the_wire_matches_sdk(
    params: dict[str, str],
    url: str,
    body: bytes,
    access_key_id: str,
    secret: str,
    token: str | None,
) -> None:
    signer = list_jobs_signer(
        "v3",
        static(access_key_id, secret, token=token),
    )
    request = httpx.Request("POST", url + "?" + canonical_query(params), content=body)
    (wire,) = send(signer, request)
    signed = sdk_verify_v3(wire, access_key_id, secret)
    assert wire_params(wire) == params
    assert wire.content == body
    assert wire.headers["x-acs-date"] == "2024-01-01T00:00:00Z"
    assert ("x-acs-security-token" in signed) == (token is not None)
    if token is not None:
        assert wire.headers["x-acs-security-token"] == token
        assert wire.headers["x-acs-accesskey-id"] == access_key_id
