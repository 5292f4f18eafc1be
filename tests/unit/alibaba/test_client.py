"""ListAsynJobsClient against httpx.MockTransport: wire format, paging, errors, retries.

The transport is the only fake; requests are signed by the real signers and the V3
signature is re-verified on the "server" side, so a test also fails if the query that is
sent differs from the query that was signed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import errors
from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.signing import (
    Credential,
    make_signer,
    query_params,
    v1_signature,
    v3_authorization,
)
from exporter.errors import MalformedResponseError
from exporter.jobs.model import Job, JobQuery
from exporter.wire import ACTION, API_VERSION, MAX_IDS_PER_CALL

BASE_URL = "https://alb.cn-hangzhou.aliyuncs.com"
CRED = Credential("testid", "testsecret")
T0_MS = 1_700_000_000_000

Handler = Callable[[httpx.Request], httpx.Response]


# --- helpers -----------------------------------------------------------------------------


def api_job(job_id: str, status: str = "Succeeded", **fields: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "Id": job_id,
        "ApiName": "CreateLoadBalancer",
        "OperateType": "Create",
        "ResourceType": "loadbalancer",
        "ResourceId": "alb-1",
        "Status": status,
        "ErrorCode": "",
        "ErrorMessage": "",
        "CreateTime": T0_MS,
        "ModifyTime": T0_MS + 1500,
    }
    job.update(fields)
    return job


def page(*jobs: dict[str, Any], token: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"RequestId": "req-1", "TotalCount": len(jobs), "Jobs": list(jobs)}
    if token is not None:
        body["NextToken"] = token
    return httpx.Response(200, json=body)


def api_error(
    status: int, code: str, message: str = "boom", headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"RequestId": "req-err", "HostId": "alb.cn-hangzhou.aliyuncs.com", "Code": code}
    body["Message"] = message
    return httpx.Response(status, json=body, headers=headers)


def verify_v3(request: httpx.Request, cred: Credential = CRED) -> None:
    """What the gateway does: recompute the signature over what actually arrived."""
    scheme, _, fields = request.headers["authorization"].partition(" ")
    assert scheme == "ACS3-HMAC-SHA256"
    parts = dict(field.split("=", 1) for field in fields.split(","))
    signed = {name: request.headers[name] for name in parts["SignedHeaders"].split(";")}
    expected = v3_authorization(
        request.method,
        request.url.path,
        query_params(request.url.query),
        signed,
        request.headers["x-acs-content-sha256"],
        cred.access_key_id,
        cred.access_key_secret,
    )
    assert request.headers["authorization"] == expected


class FakeApi:
    """Scripted answers (responses, exceptions or callables), recording every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if "authorization" in request.headers:
            verify_v3(request)
        # The last answer repeats, so "always fails" needs one entry.
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    def params(self, index: int) -> dict[str, str]:
        return query_params(self.requests[index].url.query)


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.observed: list[tuple[str, float]] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def observe(self, code: str, seconds: float) -> None:
        self.observed.append((code, seconds))

    @property
    def codes(self) -> list[str]:
        return [code for code, _ in self.observed]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def make_client(rec: Recorder) -> Iterator[Callable[..., ListAsynJobsClient]]:
    made: list[ListAsynJobsClient] = []

    def make(
        api: Handler,
        *,
        base_url: str = BASE_URL,
        auth: httpx.Auth | None = None,
        **kwargs: Any,
    ) -> ListAsynJobsClient:
        kwargs.setdefault("rng", lambda: 0.5)
        client = ListAsynJobsClient(
            base_url,
            auth or make_signer("v3", lambda: CRED, action=ACTION, version=API_VERSION),
            transport=httpx.MockTransport(api),
            sleep=rec.sleep,
            observer=rec.observe,
            **kwargs,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


# --- wire format -------------------------------------------------------------------------


def test_request_is_a_signed_post_with_the_exact_rfc3986_query(make_client: Any) -> None:
    api = FakeApi(page(api_job("job-a")))
    query = JobQuery(
        begin_time_ms=T0_MS,
        end_time_ms=T0_MS + 600_000,
        job_ids=("job-a", "job b*~"),
        resource_type="loadbalancer",
        api_name="CreateLoadBalancer",
        resource_ids=("alb-1",),
    )
    jobs = make_client(api).list_jobs(query)

    assert [job.id for job in jobs] == ["job-a"]
    (request,) = api.requests
    assert request.method == "POST"
    assert request.url.scheme == "https"
    assert request.url.host == "alb.cn-hangzhou.aliyuncs.com"
    assert request.url.path == "/"
    assert request.url.query == (
        b"ApiName=CreateLoadBalancer&BeginTime=1700000000000&EndTime=1700000600000"
        b"&JobIds.1=job-a&JobIds.2=job%20b%2A~&MaxResults=100&ResourceIds.1=alb-1"
        b"&ResourceType=loadbalancer"
    )
    assert request.content == b""
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"] == "alb-jobs-exporter"
    assert request.headers["x-acs-action"] == "ListAsynJobs"
    assert request.headers["x-acs-version"] == "2020-06-16"


def test_empty_filters_are_not_sent_and_page_size_is_max_results(make_client: Any) -> None:
    api = FakeApi(page())
    make_client(api, page_size=7, user_agent="alb-jobs-exporter/1.2.3").list_jobs(JobQuery())
    assert api.requests[0].url.query == b"MaxResults=7"
    assert api.requests[0].headers["user-agent"] == "alb-jobs-exporter/1.2.3"


def test_base_url_path_and_port_are_kept(make_client: Any) -> None:
    api = FakeApi(page())
    make_client(api, base_url="http://127.0.0.1:8080/cn-hangzhou/").list_jobs(JobQuery())
    url = api.requests[0].url
    assert (url.scheme, url.host, url.port, url.path) == (
        "http",
        "127.0.0.1",
        8080,
        "/cn-hangzhou/",
    )
    assert api.requests[0].headers["host"] == "127.0.0.1:8080"


def test_second_page_matches_the_listasynjobs_v3_vector(make_client: Any) -> None:
    # alibaba-api.md §4.4: the NextToken exercises every RFC 3986 special case.
    token = "ab+/=c d~*"
    api = FakeApi(page(api_job("job-a"), token=token), page(api_job("job-b")))
    signer = make_signer(
        "v3",
        lambda: CRED,
        action=ACTION,
        version=API_VERSION,
        clock=lambda: 1_704_067_200.0,  # 2024-01-01T00:00:00Z
        nonce=lambda: "0123456789abcdef0123456789abcdef",
    )
    client = make_client(api, auth=signer)
    client.list_jobs(JobQuery(job_ids=("job-a", "job-b"), resource_type="loadbalancer"))

    second = api.requests[1]
    assert second.url.query == (
        b"JobIds.1=job-a&JobIds.2=job-b&MaxResults=100&NextToken=ab%2B%2F%3Dc%20d~%2A"
        b"&ResourceType=loadbalancer"
    )
    assert second.headers["authorization"] == (
        "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;"
        "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=a84b1899bffe8984935654c3f44883071ef7af888f9a6d773faff02205c08475"
    )


def test_v1_signer_query_carries_our_params_and_a_valid_signature(make_client: Any) -> None:
    api = FakeApi(page())
    signer = make_signer("v1", lambda: CRED, action=ACTION, version=API_VERSION)
    make_client(api, auth=signer).list_jobs(JobQuery(job_ids=("job-a",)))
    params = api.params(0)
    assert params["JobIds.1"] == "job-a"
    assert params["MaxResults"] == "100"
    assert params["Action"] == "ListAsynJobs"
    assert params["Signature"] == v1_signature("POST", params, "testsecret")


# --- paging ------------------------------------------------------------------------------


def test_pages_through_next_tokens_until_absent(make_client: Any) -> None:
    api = FakeApi(
        page(api_job("j1"), api_job("j2"), token="t1"),
        page(api_job("j3"), token="t2"),
        page(api_job("j4")),
    )
    jobs = make_client(api).list_jobs(JobQuery(begin_time_ms=T0_MS))
    assert [job.id for job in jobs] == ["j1", "j2", "j3", "j4"]
    assert [api.params(i).get("NextToken") for i in range(3)] == [None, "t1", "t2"]
    # Every page repeats the filters.
    assert all(api.params(i)["BeginTime"] == str(T0_MS) for i in range(3))


@pytest.mark.parametrize("last", [{"Jobs": [], "NextToken": ""}, {"Jobs": []}, {"TotalCount": 0}])
def test_an_empty_or_absent_next_token_ends_the_listing(make_client: Any, last: Any) -> None:
    api = FakeApi(page(api_job("j1"), token="t1"), httpx.Response(200, json=last))
    assert [job.id for job in make_client(api).list_jobs(JobQuery())] == ["j1"]
    assert len(api.requests) == 2


def test_jobs_are_deduplicated_across_pages_last_version_wins(make_client: Any) -> None:
    api = FakeApi(
        page(api_job("j1", "Processing"), api_job("j2"), token="t1"),
        page(api_job("j3"), api_job("j1", "Failed", ErrorCode="506"), token="t2"),
        page(api_job("j2")),
    )
    jobs = make_client(api).list_jobs(JobQuery())
    assert [(job.id, job.status) for job in jobs] == [
        ("j1", "Failed"),
        ("j2", "Succeeded"),
        ("j3", "Succeeded"),
    ]
    assert jobs[0].error_code == "506"


def test_a_repeated_next_token_stops_with_paging_error(make_client: Any) -> None:
    api = FakeApi(page(token="t1"), page(token="t2"), page(token="t1"))
    with pytest.raises(errors.PagingError, match="NextToken already used"):
        make_client(api).list_jobs(JobQuery())
    assert len(api.requests) == 3


def test_endless_tokens_stop_at_max_pages(make_client: Any) -> None:
    counter = iter(range(1_000))
    api = FakeApi(lambda request: page(api_job(f"j{next(counter)}"), token=f"t{len(api.requests)}"))
    with pytest.raises(errors.PagingError) as caught:
        make_client(api, max_pages=5).list_jobs(JobQuery())
    assert str(caught.value) == (
        "ListAsynJobs stopped after 5 pages; raise max_pages or narrow filters"
    )
    assert len(api.requests) == 5


def test_more_than_max_ids_are_split_into_listings(make_client: Any) -> None:
    ids = tuple(f"job-{i:02d}" for i in range(45))

    def answer(request: httpx.Request) -> httpx.Response:
        params = query_params(request.url.query)
        return page(*(api_job(v) for k, v in sorted(params.items()) if k.startswith("JobIds.")))

    api = FakeApi(answer)
    jobs = make_client(api).list_jobs(JobQuery(job_ids=ids, resource_type="listener"))

    assert len(api.requests) == 3
    batches = [
        [api.params(i)[f"JobIds.{n}"] for n in range(1, 100) if f"JobIds.{n}" in api.params(i)]
        for i in range(3)
    ]
    assert [len(batch) for batch in batches] == [MAX_IDS_PER_CALL, MAX_IDS_PER_CALL, 5]
    assert [job_id for batch in batches for job_id in batch] == list(ids)
    assert all(api.params(i)["ResourceType"] == "listener" for i in range(3))
    assert sorted(job.id for job in jobs) == sorted(ids)


def test_long_job_and_resource_id_lists_are_crossed(make_client: Any) -> None:
    api = FakeApi(page())
    query = JobQuery(
        job_ids=tuple(f"j{i}" for i in range(21)), resource_ids=tuple(f"r{i}" for i in range(21))
    )
    make_client(api).list_jobs(query)
    shapes = {
        (api.params(i)["JobIds.1"], api.params(i)["ResourceIds.1"])
        for i in range(len(api.requests))
    }
    assert shapes == {("j0", "r0"), ("j0", "r20"), ("j20", "r0"), ("j20", "r20")}


def test_repeated_ids_are_sent_once(make_client: Any) -> None:
    api = FakeApi(page())
    make_client(api).list_jobs(JobQuery(job_ids=("a", "b", "a")))
    assert api.requests[0].url.query == b"JobIds.1=a&JobIds.2=b&MaxResults=100"


# --- error mapping -----------------------------------------------------------------------

ERROR_TABLE = [
    (400, "Throttling", errors.ThrottledError),
    (400, "Throttling.User", errors.ThrottledError),
    (400, "Throttling.Api", errors.ThrottledError),
    (400, "Rejected.Throttling", errors.ThrottledError),
    (503, "Throttling.User", errors.ThrottledError),  # the Code wins over the status
    (400, "SystemBusy", errors.ServerError),
    (400, "ServiceUnavailable", errors.ServerError),  # the Code wins over the status
    (503, "ServiceUnavailable", errors.ServerError),
    (500, "InternalError", errors.ServerError),
    (500, "UnknownError", errors.ServerError),
    (404, "InvalidAccessKeyId.NotFound", errors.AuthError),
    (400, "InvalidAccessKeyId.Inactive", errors.AuthError),
    (400, "SignatureDoesNotMatch", errors.AuthError),
    (403, "SignatureDoesNotMatch", errors.AuthError),
    (400, "IncompleteSignature", errors.AuthError),
    (400, "InvalidTimeStamp.Expired", errors.AuthError),
    (400, "InvalidTimeStamp.Format", errors.AuthError),
    (400, "SignatureNonceUsed", errors.AuthError),
    (400, "InvalidSecurityToken.Expired", errors.AuthError),
    (403, "InvalidSecurityToken.MismatchWithAccessKey", errors.AuthError),
    (400, "MissingSecurityToken", errors.AuthError),
    (403, "Forbidden.RAM", errors.AuthError),
    (403, "Forbidden.NoPermission", errors.AuthError),
    (400, "Forbidden.AccessKeyDisabled", errors.AuthError),
    (400, "InvalidParameter", errors.RequestError),
    (400, "IllegalParam.JobIds", errors.RequestError),
    (404, "InvalidApi.NotFound", errors.RequestError),
    (404, "ResourceNotFound.JobId", errors.RequestError),
    (500, "InternalError.Dispatch", errors.ServerError),  # unlisted Code: a 5xx is transient
    (200, "Throttling.User", errors.ThrottledError),  # Code without Jobs: not an empty page
]


@pytest.mark.parametrize(("status", "code", "expected"), ERROR_TABLE)
def test_error_bodies_are_mapped_by_code(
    make_client: Any, rec: Recorder, status: int, code: str, expected: type[errors.ApiError]
) -> None:
    api = FakeApi(api_error(status, code, "the message"))
    with pytest.raises(errors.ApiError) as caught:
        make_client(api, max_attempts=1).list_jobs(JobQuery())
    err = caught.value
    assert type(err) is expected
    assert (err.code, err.api_message, err.http_status, err.request_id) == (
        code,
        "the message",
        status,
        "req-err",
    )
    assert rec.codes == [code]


def test_lowercase_code_and_message_keys_are_read(make_client: Any) -> None:
    api = FakeApi(httpx.Response(400, json={"code": "Throttling", "message": "slow down"}))
    with pytest.raises(errors.ThrottledError) as caught:
        make_client(api, max_attempts=1).list_jobs(JobQuery())
    assert caught.value.api_message == "slow down"


def test_long_messages_are_truncated_and_secrets_stay_out(make_client: Any) -> None:
    api = FakeApi(
        api_error(400, "SignatureDoesNotMatch", "server string to sign is: " + "x" * 5000)
    )
    with pytest.raises(errors.AuthError) as caught:
        make_client(api).list_jobs(JobQuery())
    assert len(caught.value.api_message) <= 300
    assert "RequestId req-err" in str(caught.value)
    assert "testsecret" not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "attempts"),
    [
        (502, b"<html><body>Bad Gateway</body></html>", 3),
        (504, b"", 3),
        (503, b'{"error": "no code here"}', 3),
        (429, b"slow down", 3),
        (404, b"<html>Not Found</html>", 1),  # a wrong endpoint will not heal on a retry
    ],
)
def test_answers_without_an_api_code_are_transport_errors(
    make_client: Any, rec: Recorder, status: int, body: bytes, attempts: int
) -> None:
    api = FakeApi(httpx.Response(status, content=body))
    with pytest.raises(errors.TransportError) as caught:
        make_client(api).list_jobs(JobQuery())
    assert type(caught.value) is errors.TransportError
    assert caught.value.code == "TransportError"
    assert f"HTTP {status}" in str(caught.value)
    assert len(api.requests) == attempts
    assert rec.codes == ["TransportError"] * attempts


# --- retries -----------------------------------------------------------------------------


def test_throttling_is_retried_with_jittered_exponential_backoff(
    make_client: Any, rec: Recorder
) -> None:
    api = FakeApi(
        api_error(400, "Throttling.User"), api_error(503, "SystemBusy"), page(api_job("j"))
    )
    jobs = make_client(api).list_jobs(JobQuery())
    assert [job.id for job in jobs] == ["j"]
    assert len(api.requests) == 3
    # rng() == 0.5: 0.75 of base * 2**n.
    assert rec.sleeps == pytest.approx([0.15, 0.3])
    assert rec.codes == ["Throttling.User", "SystemBusy", "OK"]


@pytest.mark.parametrize(("rng", "factor"), [(0.0, 0.5), (0.999999, 1.0)])
def test_backoff_is_capped_and_jitter_keeps_at_least_half(
    make_client: Any, rec: Recorder, rng: float, factor: float
) -> None:
    api = FakeApi(api_error(500, "InternalError"))
    client = make_client(api, max_attempts=5, backoff_base=1.0, backoff_cap=3.0, rng=lambda: rng)
    with pytest.raises(errors.ServerError):
        client.list_jobs(JobQuery())
    assert len(api.requests) == 5
    assert rec.sleeps == pytest.approx([f * factor for f in (1.0, 2.0, 3.0, 3.0)], rel=1e-5)


def test_retry_after_header_is_honoured(make_client: Any, rec: Recorder) -> None:
    throttled = api_error(400, "Throttling.User", headers={"x-acs-retry-after": "1500"})
    api = FakeApi(throttled, page())
    make_client(api).list_jobs(JobQuery())
    assert rec.sleeps == [1.5]


def test_retry_after_is_exposed_on_the_error(make_client: Any) -> None:
    throttled = api_error(400, "Throttling", headers={"x-acs-retry-after": "250"})
    with pytest.raises(errors.ThrottledError) as caught:
        make_client(FakeApi(throttled), max_attempts=1).list_jobs(JobQuery())
    assert caught.value.retry_after == 0.25


@pytest.mark.parametrize("header", ["0", "-5", "soon", "1.5", "9" * 5000])
def test_unusable_retry_after_values_are_ignored(make_client: Any, header: str) -> None:
    throttled = api_error(400, "Throttling", headers={"x-acs-retry-after": header})
    with pytest.raises(errors.ThrottledError) as caught:
        make_client(FakeApi(throttled), max_attempts=1).list_jobs(JobQuery())
    assert caught.value.retry_after is None


def test_a_retry_after_beyond_the_cap_fails_fast(make_client: Any, rec: Recorder) -> None:
    throttled = api_error(400, "Throttling.User", headers={"x-acs-retry-after": "60000"})
    api = FakeApi(throttled, page())
    with pytest.raises(errors.ThrottledError):
        make_client(api).list_jobs(JobQuery())
    assert len(api.requests) == 1
    assert rec.sleeps == []


def test_retryable_errors_give_up_after_max_attempts(make_client: Any, rec: Recorder) -> None:
    api = FakeApi(api_error(503, "ServiceUnavailable"))
    with pytest.raises(errors.ServerError):
        make_client(api, max_attempts=4).list_jobs(JobQuery())
    assert len(api.requests) == 4
    assert len(rec.sleeps) == 3


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "SignatureDoesNotMatch"), (403, "Forbidden.RAM"), (400, "InvalidParameter")],
)
def test_auth_and_request_errors_are_not_retried(
    make_client: Any, rec: Recorder, status: int, code: str
) -> None:
    api = FakeApi(api_error(status, code), page())
    with pytest.raises(errors.ApiError):
        make_client(api).list_jobs(JobQuery())
    assert len(api.requests) == 1
    assert rec.sleeps == []


def test_retries_are_per_page(make_client: Any, rec: Recorder) -> None:
    api = FakeApi(
        page(api_job("j1"), token="t1"),
        api_error(400, "Throttling"),
        api_error(400, "Throttling"),
        page(api_job("j2")),
    )
    jobs = make_client(api).list_jobs(JobQuery())
    assert [job.id for job in jobs] == ["j1", "j2"]
    assert [api.params(i).get("NextToken") for i in range(4)] == [None, "t1", "t1", "t1"]


def test_every_attempt_is_signed_with_a_fresh_nonce(make_client: Any) -> None:
    api = FakeApi(api_error(400, "Throttling"), api_error(500, "InternalError"), page())
    make_client(api).list_jobs(JobQuery())
    nonces = [request.headers["x-acs-signature-nonce"] for request in api.requests]
    assert len(nonces) == 3
    assert len(set(nonces)) == 3


def test_timeouts_are_retried_then_raised(make_client: Any, rec: Recorder) -> None:
    api = FakeApi(httpx.ReadTimeout("read timed out"))
    with pytest.raises(errors.RequestTimeoutError) as caught:
        make_client(api).list_jobs(JobQuery())
    assert caught.value.code == "Timeout"
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert len(api.requests) == 3
    assert rec.codes == ["Timeout"] * 3
    assert len(rec.sleeps) == 2


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("server disconnected without sending a response"),
    ],
)
def test_connection_failures_become_transport_errors(
    make_client: Any, rec: Recorder, exc: Exception
) -> None:
    api = FakeApi(exc, page(api_job("j")))
    assert [job.id for job in make_client(api).list_jobs(JobQuery())] == ["j"]
    assert rec.codes == ["TransportError", "OK"]

    with pytest.raises(errors.TransportError) as caught:
        make_client(FakeApi(exc), max_attempts=1).list_jobs(JobQuery())
    assert type(caught.value) is errors.TransportError
    assert caught.value.__cause__ is exc


def test_signed_urls_are_redacted_from_transport_error_messages(make_client: Any) -> None:
    sts = Credential("testid", "testsecret", security_token="sts-token-value")
    signer = make_signer("v1", lambda: sts, action=ACTION, version=API_VERSION)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect for {request.url}")

    with pytest.raises(errors.TransportError) as caught:
        make_client(FakeApi(refuse), auth=signer, max_attempts=1).list_jobs(JobQuery())
    message = str(caught.value)
    assert "SecurityToken=REDACTED" in message
    assert "sts-token-value" not in message
    signature = query_params(str(caught.value.__cause__).split("?", 1)[1])["Signature"]
    assert signature not in message


def test_observer_sees_every_attempt_in_order(make_client: Any, rec: Recorder) -> None:
    api = FakeApi(
        api_error(400, "Throttling.User"),
        page(api_job("j1"), token="t1"),
        httpx.ReadTimeout("slow"),
        httpx.Response(502, content=b"<html>bad gateway</html>"),
        page(api_job("j2")),
    )
    client = make_client(api, max_attempts=4)
    client.list_jobs(JobQuery())
    assert rec.codes == ["Throttling.User", "OK", "Timeout", "TransportError", "OK"]
    assert all(isinstance(s, float) and s >= 0 for _, s in rec.observed)


class SlowFetch:
    """A provider that takes `delay` seconds to fetch (as STS or instance metadata can) and
    then serves its cached credential at once, until invalidated."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.fetches = 0
        self.cached: Credential | None = None

    def get(self) -> Credential:
        if self.cached is None:
            time.sleep(self.delay)
            self.fetches += 1
            self.cached = CRED
        return self.cached

    def invalidate(self) -> None:
        self.cached = None


def test_a_slow_credential_fetch_is_not_counted_as_api_latency(
    make_client: Any, rec: Recorder
) -> None:
    provider = SlowFetch(0.3)
    api = FakeApi(
        api_error(400, "InvalidSecurityToken.Expired"), page(api_job("j1"), token="t"), page()
    )
    client = make_client(
        api,
        auth=make_signer("v3", provider.get, action=ACTION, version=API_VERSION),
        on_auth_expired=provider.invalidate,
    )
    started = time.perf_counter()
    client.list_jobs(JobQuery())
    elapsed = time.perf_counter() - started

    # Two slow fetches (the first, and the one after the expired token), both outside
    # every observed request.
    assert provider.fetches == 2 and elapsed >= 0.6
    assert rec.codes == ["InvalidSecurityToken.Expired", "OK", "OK"]
    assert all(seconds < 0.15 for _, seconds in rec.observed), rec.observed


def test_a_credential_failure_is_not_an_api_request(make_client: Any, rec: Recorder) -> None:
    def broken() -> Credential:
        raise errors.CredentialsError("account prod: no credentials found")

    api = FakeApi(page())
    client = make_client(api, auth=make_signer("v3", broken, action=ACTION, version=API_VERSION))
    with pytest.raises(errors.CredentialsError):
        client.list_jobs(JobQuery())
    assert api.requests == [] and rec.observed == []


class HeaderAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-test-auth"] = "1"
        yield request


def test_any_httpx_auth_still_works(make_client: Any, rec: Recorder) -> None:
    api = FakeApi(page(api_job("j1")))
    client = make_client(api, auth=HeaderAuth())
    assert [job.id for job in client.list_jobs(JobQuery())] == ["j1"]
    assert api.requests[0].headers["x-test-auth"] == "1"
    assert rec.codes == ["OK"]


# --- response parsing --------------------------------------------------------------------


def test_job_fields_and_times_are_parsed(make_client: Any) -> None:
    raw = api_job(
        "job-1",
        "Failed",
        ErrorCode="506",
        ErrorMessage="AllocateEipAddress Failed",
        CreateTime=1_700_000_000_123,
        ModifyTime="1700000005000",
        Unexpected={"nested": [1, 2]},
    )
    (job,) = make_client(FakeApi(page(raw))).list_jobs(JobQuery())
    assert job == Job(
        id="job-1",
        api_name="CreateLoadBalancer",
        operate_type="Create",
        resource_type="loadbalancer",
        resource_id="alb-1",
        status="Failed",
        error_code="506",
        error_message="AllocateEipAddress Failed",
        create_time=1_700_000_000.123,
        modify_time=1_700_000_005.0,
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"Jobs": None}, []),
        ({"RequestId": "r", "TotalCount": 0}, []),
        ({"Jobs": [], "NextToken": None}, []),
        (
            {"Jobs": [{"Id": "j", "Status": "Processing", "CreateTime": T0_MS}]},
            [("j", "Processing", "", "", T0_MS / 1000, T0_MS / 1000)],
        ),
        (
            {"Jobs": [api_job("j", ErrorCode=506, ModifyTime=None, CreateTime="1.7e12")]},
            [("j", "Succeeded", "506", "", 1.7e9, 1.7e9)],
        ),
    ],
    ids=["jobs-null", "jobs-missing", "token-null", "only-required", "lenient-types"],
)
def test_tolerated_body_shapes(make_client: Any, body: Any, expected: list[Any]) -> None:
    jobs = make_client(FakeApi(httpx.Response(200, json=body))).list_jobs(JobQuery())
    got = [
        (j.id, j.status, j.error_code, j.error_message, j.create_time, j.modify_time) for j in jobs
    ]
    assert got == expected


MALFORMED = [
    ("truncated", b'{"Jobs": [{"Id": "a", "Status": "Succ', True),
    ("html", b"<html>oops</html>", True),
    ("empty", b"", True),
    # Bad UTF-8 is read as U+FFFD (one bad byte must not blind a target): the shape is wrong.
    ("not-utf8", b'{"Jobs": "\xff"}', False),
    ("array", b"[]", False),
    ("string", b'"hello"', False),
    ("null", b"null", False),
    ("number", b"42", False),
    ("jobs-object", b'{"Jobs": {"Job": []}}', False),
    ("jobs-string", b'{"Jobs": "none"}', False),
    ("token-number", b'{"Jobs": [], "NextToken": 7}', False),
    # Not a ListAsynJobs answer (a proxy's own JSON): reading it as "no jobs" would make
    # every tracked Processing job look vanished.
    ("no-jobs-no-total", b'{"RequestId": "r"}', False),
    ("empty-object", b"{}", False),
    ("job-not-object", b'{"Jobs": ["job-1"]}', False),
    ("no-id", b'{"Jobs": [{"Status": "Failed", "CreateTime": 1}]}', False),
    ("empty-id", b'{"Jobs": [{"Id": "", "Status": "Failed", "CreateTime": 1}]}', False),
    ("no-status", b'{"Jobs": [{"Id": "a", "CreateTime": 1}]}', False),
    ("id-array", b'{"Jobs": [{"Id": ["a"], "Status": "Failed", "CreateTime": 1}]}', False),
    ("no-create-time", b'{"Jobs": [{"Id": "a", "Status": "Failed"}]}', False),
    (
        "create-time-text",
        b'{"Jobs": [{"Id": "a", "Status": "Failed", "CreateTime": "today"}]}',
        False,
    ),
    ("create-time-bool", b'{"Jobs": [{"Id": "a", "Status": "Failed", "CreateTime": true}]}', False),
    ("create-time-nan", b'{"Jobs": [{"Id": "a", "Status": "Failed", "CreateTime": NaN}]}', False),
    ("create-time-inf", b'{"Jobs": [{"Id": "a", "Status": "Failed", "CreateTime": 1e400}]}', False),
    ("create-time-neg", b'{"Jobs": [{"Id": "a", "Status": "Failed", "CreateTime": -1}]}', False),
    (
        "create-time-huge",
        b'{"Jobs": [{"Id": "a", "Status": "Failed", "CreateTime": 1' + b"0" * 400 + b"}]}",
        False,
    ),
    (
        "modify-time-object",
        b'{"Jobs": [{"Id": "a", "Status": "Failed", "CreateTime": 1, "ModifyTime": {}}]}',
        False,
    ),
    (
        "api-name-object",
        b'{"Jobs": [{"Id": "a", "Status": "Failed", "CreateTime": 1, "ApiName": {}}]}',
        False,
    ),
    ("deep", b"[" * 100_000 + b"]" * 100_000, True),
]


@pytest.mark.parametrize(
    ("body", "retried"), [(b, r) for _, b, r in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_200_bodies_are_malformed_responses(
    make_client: Any, rec: Recorder, body: bytes, retried: bool
) -> None:
    api = FakeApi(httpx.Response(200, content=body))
    with pytest.raises(MalformedResponseError) as caught:
        make_client(api).list_jobs(JobQuery())
    assert isinstance(caught.value, errors.TransportError)
    assert caught.value.code == "MalformedResponse"
    assert str(caught.value).startswith("malformed ListAsynJobs response: ")
    # An unparsable body may be a truncated transfer; a wrong shape will not change.
    attempts = 3 if retried else 1
    assert len(api.requests) == attempts
    assert rec.codes == ["MalformedResponse"] * attempts


def test_a_malformed_later_page_discards_the_listing(make_client: Any) -> None:
    api = FakeApi(page(api_job("j1"), token="t1"), httpx.Response(200, content=b'{"Jobs": 1}'))
    with pytest.raises(MalformedResponseError, match="Jobs is a JSON number"):
        make_client(api).list_jobs(JobQuery())


# Keys the parser looks at, so generated objects reach past the first checks.
INTERESTING_KEYS = ["Jobs", "NextToken", "Id", "Status", "CreateTime", "ModifyTime", "Code"]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["Succeeded", "1700000000000", ""]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(INTERESTING_KEYS) | st.text(max_size=5),
            children,
            max_size=6,
        )
    ),
    max_leaves=25,
)


def _job_like() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"Id": st.text(max_size=4), "Status": st.text(max_size=4)},
        optional={
            "CreateTime": JSON,
            "ModifyTime": JSON,
            "ErrorCode": JSON,
            "ApiName": JSON,
            "ResourceId": JSON,
        },
    )


def _outcome(client: ListAsynJobsClient) -> None:
    try:
        jobs = client.list_jobs(JobQuery())
    except errors.ExporterError:
        return
    assert all(isinstance(job, Job) for job in jobs)
    for job in jobs:
        assert job.id and job.status
        assert math.isfinite(job.create_time) and math.isfinite(job.modify_time)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    body=JSON
    | st.fixed_dictionaries(
        {"Jobs": st.lists(_job_like() | JSON, max_size=4)}, optional={"NextToken": JSON}
    )
)
def test_any_json_200_body_gives_jobs_or_an_exporter_error(body: Any) -> None:
    api = FakeApi(httpx.Response(200, content=json.dumps(body).encode()))
    with ListAsynJobsClient(
        BASE_URL,
        make_signer("v3", lambda: CRED, action=ACTION, version=API_VERSION),
        transport=httpx.MockTransport(api),
        sleep=lambda _: None,
        max_pages=3,
    ) as client:
        _outcome(client)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(status=st.integers(100, 599), body=st.binary(max_size=64) | JSON.map(json.dumps))
def test_any_status_and_body_gives_jobs_or_an_exporter_error(status: int, body: Any) -> None:
    content = body if isinstance(body, bytes) else body.encode()
    api = FakeApi(httpx.Response(status, content=content))
    with ListAsynJobsClient(
        BASE_URL,
        make_signer("v3", lambda: CRED, action=ACTION, version=API_VERSION),
        transport=httpx.MockTransport(api),
        sleep=lambda _: None,
    ) as client:
        _outcome(client)


# --- construction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"max_pages": 0}, "max_pages"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"base_url": "ftp://alb.example.com/"}, "http"),
        ({"base_url": "alb.cn-hangzhou.aliyuncs.com"}, "http"),
        ({"base_url": "https://alb.example.com/?Action=x"}, "query"),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    base_url = kwargs.pop("base_url", BASE_URL)
    signer = make_signer("v3", lambda: CRED, action=ACTION, version=API_VERSION)
    with pytest.raises(ValueError, match=message):
        ListAsynJobsClient(base_url, signer, **kwargs)


def test_credentials_in_base_url_are_rejected_without_echoing_them() -> None:
    signer = make_signer("v3", lambda: CRED, action=ACTION, version=API_VERSION)
    with pytest.raises(ValueError, match="credentials") as caught:
        ListAsynJobsClient("https://ak:hunter2@alb.example.com/", signer)
    assert "hunter2" not in str(caught.value)


def test_close_releases_the_http_client(make_client: Any) -> None:
    api = FakeApi(page())
    client = make_client(api)
    client.list_jobs(JobQuery())
    client.close()
    with pytest.raises(RuntimeError):
        client.list_jobs(JobQuery())
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (
            httpx.ConnectError("[Errno -2] Name or service not known"),
            "ListAsynJobs request to alb.cn-hangzou.aliyuncs.com failed: ConnectError:"
            " [Errno -2] Name or service not known",
        ),
        (
            httpx.ReadTimeout("timed out"),
            "ListAsynJobs to alb.cn-hangzou.aliyuncs.com got no answer within",
        ),
    ],
)
def test_transport_errors_name_the_host(
    make_client: Any, raised: httpx.RequestError, expected: str
) -> None:
    # The resolver's message does not say which name failed; a region typo shows here.
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    client = make_client(
        FakeApi(fail), base_url="https://alb.cn-hangzou.aliyuncs.com", max_attempts=1
    )
    with pytest.raises(errors.ExporterError) as caught:
        client.list_jobs(JobQuery())
    assert str(caught.value).startswith(expected)
