"""Hostile values: API strings built to break the exposition, and API answers built to break
the parser or to smuggle secrets into logs.

Label values are the API's strings, escaped by the exposition and capped by one documented
rule (`collector.cap_label`, docs/reliability.md): at most 256 characters (code points);
a longer value keeps its first 255 and ends with "…"; lone surrogates become U+FFFD.
The end-to-end counterparts (the real exporter and simulator) are in
tests/e2e/faults/test_answer_faults.py.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter import errors
from exporter.alibaba.answers import parse_page
from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.signing import Credential, make_signer, percent_encode
from exporter.errors import MalformedResponseError
from exporter.jobs.model import Job, JobQuery
from exporter.jobs.snapshot import StoreSnapshot
from exporter.jobs.store import JobStore
from exporter.jobs.target import TargetStatus
from exporter.metrics.self_metrics import SelfMetrics
from exporter.metrics.table import MAX_LABEL_VALUE_LENGTH, cap_label
from exporter.wire import ACTION, API_VERSION, FAILED, PROCESSING, SUCCEEDED
from tests.support import promtool
from tests.support.exemplars import carried, exemplars
from tests.unit.metrics.fakes import published

T0 = 1_700_000_000.0
# Any code point, lone surrogates included (JSON can carry them: "\ud800").
CHARS = st.characters() | st.characters(categories=["Cs"])
LONG = "L" * 10_240

HOSTILE = [
    'quote"d',
    "back\\slash",
    "trailing backslash\\",
    "new\nline",
    "carriage\rreturn",
    "tab\tand\x00nul\x7fdel",
    "unicode Größe 负载均衡 🚀",
    "line\u2028separator",
    "} 1\nfake_metric 1",
    '# HELP x "',
    "",
    " ",
    LONG,
    LONG + "-other",  # equal to LONG once capped
    "é" * 300,  # over the cap in code points, far over it in bytes
    "lone \ud800 surrogate",
]


# --- the cap rule ------------------------------------------------------------------------


def test_values_up_to_the_cap_are_kept_unchanged() -> None:
    for value in ("", "a", "x" * MAX_LABEL_VALUE_LENGTH, "负" * MAX_LABEL_VALUE_LENGTH):
        assert cap_label(value) == value


def test_longer_values_keep_255_characters_and_end_with_an_ellipsis() -> None:
    value = "y" * (MAX_LABEL_VALUE_LENGTH + 1)
    assert cap_label(value) == "y" * (MAX_LABEL_VALUE_LENGTH - 1) + "…"
    assert cap_label(LONG) == "L" * 255 + "…"
    assert len(cap_label("é" * 300)) == MAX_LABEL_VALUE_LENGTH  # code points, not bytes


def test_lone_surrogates_become_replacement_characters() -> None:
    assert cap_label("a\ud800b") == "a\ufffdb"
    assert cap_label("\ud83d\ude80") == "🚀"  # a valid pair (JSON "\ud83d\ude80") joins


@given(st.text(CHARS) | st.text(max_size=600))
def test_cap_label_is_bounded_encodable_idempotent_and_keeps_the_prefix(value: str) -> None:
    capped = cap_label(value)
    assert len(capped) <= MAX_LABEL_VALUE_LENGTH
    capped.encode("utf-8")
    assert cap_label(capped) == capped
    if value.encode("utf-8", "surrogatepass") == value.encode("utf-8", "replace"):
        assert value.startswith(capped.removesuffix("…"))


# --- the exposition with hostile label values --------------------------------------------


class View:
    def __init__(self, store: JobStore) -> None:
        self.account = "acct"
        self.region = "cn-hangzhou"
        self._store = store

    def snapshot(self) -> StoreSnapshot:
        return self._store.snapshot()

    def status(self) -> TargetStatus:
        return TargetStatus(tried=True, up=True, last_success=T0, refresh_duration=0.5)


def registry_with(values: Iterable[str]) -> CollectorRegistry:
    """Every job-label family and the request counter, fed `values` wherever the API's
    strings go: job fields (gauges, counters, histogram, recent failures) and error codes."""
    values = list(values)
    store = JobStore(lookback=3600, recent_failures=100)
    store.update([], [], T0)  # primed: the jobs below are counted
    jobs = []
    for i, value in enumerate(values):
        for status in (PROCESSING, SUCCEEDED, FAILED):
            jobs.append(
                Job(
                    id=f"{status}-{i}-{value}",
                    api_name=value,
                    operate_type=value,
                    resource_type=value,
                    resource_id=value,
                    status=status,
                    error_code=value,
                    error_message=value,
                    create_time=T0 + 1,
                    modify_time=T0 + 1 if status == PROCESSING else T0 + 3,
                )
            )
    store.update(jobs, [], T0 + 10)
    registry = CollectorRegistry()
    registry.register(published([View(store)]))
    observe = SelfMetrics(registry).request_observer("acct", "cn-hangzhou")
    for value in values:
        observe(value, 0.01)
    return registry


def parsed_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def exemplar_ids(openmetrics: str) -> tuple[set[str], str]:
    found, rest = exemplars(openmetrics)
    return {e.job_id for e in found}, rest


def carried_ids(values: list[str]) -> set[str]:
    """The ids of `registry_with`'s counted jobs that exemplars carry (SPEC "Exemplars"):
    whole, within 128 characters with the label name, and encodable."""
    ids = {
        f"{status}-{i}-{value}" for i, value in enumerate(values) for status in (SUCCEEDED, FAILED)
    }
    return {i for i in ids if carried(i)}


def check_exposition(registry: CollectorRegistry, values: list[str]) -> list[Any]:
    text = generate_latest(registry).decode("utf-8")
    assert exemplars(text)[0] == [], "the text format carries none"
    samples = parsed_samples(text)
    ids, rest = exemplar_ids(generate_openmetrics(registry).decode("utf-8"))
    # Each series carries its newest job's id (of several alike, only one), and never an
    # id that is cut or over the limit.
    assert ids <= carried_ids(values)
    list(parse_openmetrics(rest))
    series = [(name, tuple(sorted(labels.items()))) for name, labels, _ in samples]
    assert len(series) == len(set(series)), "duplicate series"
    for _, labels, _ in samples:
        assert all(len(v) <= MAX_LABEL_VALUE_LENGTH for v in labels.values())
    api_names = {labels["api_name"] for name, labels, _ in samples if name == "alb_async_jobs"}
    assert api_names == {cap_label(v) for v in values}
    codes = {
        labels["code"] for name, labels, _ in samples if name == "alb_exporter_api_requests_total"
    }
    assert codes == {"OK"} | {cap_label(v) for v in values}
    return samples


def test_hostile_values_parse_back_to_their_capped_selves() -> None:
    samples = check_exposition(registry_with(HOSTILE), HOSTILE)
    # Every hostile value makes series of its own: each counted job is an exemplar, but
    # for the ids too long, not encodable, or needing escapes.
    ids, _ = exemplar_ids(generate_openmetrics(registry_with(HOSTILE)).decode("utf-8"))
    assert ids == carried_ids(HOSTILE)
    assert {"Failed-6-unicode Größe 负载均衡 🚀", "Succeeded-10-", "Failed-11- "} <= ids
    assert not {'Failed-0-quote"d', "Failed-1-back\\slash", "Failed-3-new\nline"} & ids
    jobs = {
        labels["api_name"]: value
        for name, labels, value in samples
        if name == "alb_async_jobs" and labels["status"] == SUCCEEDED
    }
    # LONG and LONG-other share a capped label set: one series holding both jobs.
    assert jobs[cap_label(LONG)] == 2.0
    assert jobs['quote"d'] == 1.0 and jobs["new\nline"] == 1.0 and jobs[""] == 1.0


@pytest.mark.tools
def test_promtool_accepts_the_hostile_exposition() -> None:
    text = generate_latest(registry_with(HOSTILE)).decode("utf-8")
    assert not promtool.problems(text)


def test_error_messages_and_job_ids_never_become_labels_outside_recent_failures() -> None:
    samples = parsed_samples(generate_latest(registry_with(["msg-marker"])).decode("utf-8"))
    for name, labels, _ in samples:
        if name != "alb_async_job_recent_failure_timestamp_seconds":
            assert not any(v.startswith(("Failed-", "Succeeded-")) for v in labels.values())
            assert "job_id" not in labels and "resource_id" not in labels


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(CHARS, max_size=300), min_size=1, max_size=4))
def test_any_strings_give_a_valid_exposition(values: list[str]) -> None:
    check_exposition(registry_with(values), values)


# --- hostile API answers -----------------------------------------------------------------

CRED = Credential("STS.testid", "testsecret", "CAIS+token/with=padding+" + "Q" * 40)
TOKEN = CRED.security_token or ""


def client_for(*responses: httpx.Response, observed: list[str] | None = None) -> Any:
    answers = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return ListAsynJobsClient(
        "https://alb.cn-hangzhou.aliyuncs.com",
        make_signer("v1", lambda: CRED, action=ACTION, version=API_VERSION),
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
        observer=(lambda code, _s: observed.append(code)) if observed is not None else None,
    )


def error_body(code: str, message: str, status: int = 400) -> httpx.Response:
    return httpx.Response(status, json={"RequestId": "r", "Code": code, "Message": message})


@pytest.mark.parametrize(
    "message",
    [
        # V1: the gateway quotes its string to sign, i.e. the query percent-encoded again.
        "Specified signature is not matched with our calculation. server string to sign is:"
        "POST&%2F&AccessKeyId%3DSTS.testid%26Action%3DListAsynJobs%26SecurityToken%3D"
        + percent_encode(percent_encode(TOKEN))
        + "%26SignatureMethod%3DHMAC-SHA1",
        # V3: the canonical request, whose signed headers include the token.
        "Specified signature is not matched with our calculation. canonical request is:POST\n/\n"
        f"\nhost:alb.cn-hangzhou.aliyuncs.com\nx-acs-security-token:{TOKEN}\nx-acs-version:x",
        f"echoing the URL ?SecurityToken={percent_encode(TOKEN)}&Signature=abc",
    ],
    ids=["v1-string-to-sign", "v3-canonical-request", "url"],
)
def test_api_messages_quoting_the_security_token_are_redacted(message: str) -> None:
    client = client_for(error_body("SignatureDoesNotMatch", message))
    with client, pytest.raises(errors.AuthError) as caught:
        client.list_jobs(JobQuery())
    text = str(caught.value) + caught.value.api_message
    for form in (TOKEN, percent_encode(TOKEN), percent_encode(percent_encode(TOKEN))):
        assert form[:16] not in text
        assert form[-16:] not in text
    assert "REDACTED" in text
    assert "SignatureDoesNotMatch" in text  # still says what went wrong


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ('Forbidden."quoted"', 'Forbidden."quoted"'),
        ("  Throttling.User\n", "Throttling.User"),
        ("X" * 10_240, "X" * 100),
        ("   ", "TransportError"),
        ("", "TransportError"),
    ],
    ids=["quotes", "padded", "10kB", "blank", "empty"],
)
def test_hostile_error_codes_are_stripped_and_cut(code: str, label: str) -> None:
    observed: list[str] = []
    client = client_for(error_body(code, "m", status=403), observed=observed)
    with client, pytest.raises(errors.ExporterError):
        client.list_jobs(JobQuery())
    assert set(observed) == {label}


@pytest.mark.parametrize("total", [1, 57, "3"])
def test_jobs_null_while_total_count_counts_jobs_is_malformed(total: object) -> None:
    for body in ({"Jobs": None, "TotalCount": total}, {"TotalCount": total}):
        with pytest.raises(MalformedResponseError, match="TotalCount"):
            parse_page(body)


@pytest.mark.parametrize("total", [None, 0, "0", "", -1, True, 1.5, "many"])
def test_jobs_null_without_a_positive_total_count_is_an_empty_page(total: object) -> None:
    body: dict[str, Any] = {"Jobs": None}
    if total is not None:
        body["TotalCount"] = total
    assert parse_page(body) == ([], None)


# --- fuzzing the response parser with the fields it reads and their neighbours ----------

KEYS = [
    "Jobs",
    "NextToken",
    "TotalCount",
    "MaxResults",
    "RequestId",
    "Code",
    "Message",
    "Id",
    "Status",
    "CreateTime",
    "ModifyTime",
    "ErrorCode",
    "ApiName",
    "ResourceType",
    "OperateType",
    "ResourceId",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**310)
    | st.floats()
    | st.text(CHARS, max_size=12)
    | st.sampled_from(["Succeeded", "Failed", "Processing", "1700000000000", "", "NaN", "-1"])
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), children, max_size=8)
    ),
    max_leaves=30,
)
JOBLIKE = st.fixed_dictionaries(
    {"Id": SCALARS, "Status": SCALARS, "CreateTime": SCALARS},
    optional={key: SCALARS for key in KEYS[10:]},
)
PAGES = st.fixed_dictionaries(
    {"Jobs": st.none() | st.lists(JOBLIKE | DOCUMENTS, max_size=5)},
    optional={"TotalCount": SCALARS, "NextToken": SCALARS, "Code": SCALARS},
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(DOCUMENTS | PAGES)
def test_parse_page_returns_jobs_or_raises_malformed_only(body: Any) -> None:
    try:
        jobs, token = parse_page(body)
    except MalformedResponseError:
        return
    assert token is None or (isinstance(token, str) and token)
    for job in jobs:
        assert isinstance(job, Job) and job.id and job.status
        assert math.isfinite(job.create_time) and math.isfinite(job.modify_time)
        assert all(
            isinstance(v, str)
            for v in (job.api_name, job.operate_type, job.resource_type, job.error_code)
        )


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from([200, 200, 400, 403, 404, 500, 502, 503]),
    body=(DOCUMENTS | PAGES).map(lambda b: json.dumps(b, allow_nan=True).encode())
    | st.binary(max_size=80),
)
def test_any_answer_is_jobs_or_a_typed_error(status: int, body: bytes) -> None:
    observed: list[str] = []
    client = client_for(httpx.Response(status, content=body), observed=observed)
    with client, contextlib.suppress(errors.ExporterError):
        client.list_jobs(JobQuery())
    assert observed and all(isinstance(code, str) and code.strip() for code in observed)
    assert all(len(code) <= 100 for code in observed)
