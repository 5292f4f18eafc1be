"""Look-ups by id (`JobIds.N`) checked against what was asked (issue 23): an answer that
contradicts its TotalCount, omits ids it says it has, or answers ids never asked is a
MalformedResponse, observed as such, and not retried; consistent answers pass, under
either reading of TotalCount (the whole listing, or the page: alibaba-api.md says the
API's choice is unconfirmed)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from exporter.errors import MalformedResponseError
from exporter.jobs.model import JobQuery
from tests.unit.alibaba.test_client import FakeApi, Recorder, api_job, make_client, rec

__all__ = ["make_client", "rec"]  # fixtures


def body(*ids: str, total: Any, token: str | None = None) -> httpx.Response:
    answer: dict[str, Any] = {
        "RequestId": "r",
        "TotalCount": total,
        "Jobs": [api_job(i) for i in ids],
    }
    if token is not None:
        answer["NextToken"] = token
    return httpx.Response(200, json=answer)


BAD_SINGLE_PAGES = [
    pytest.param(body(total=2), "no jobs while TotalCount says 2", id="empty-page-total-2"),
    pytest.param(body(total="3"), "no jobs while TotalCount says 3", id="total-as-string"),
    pytest.param(body("a", total=3), "answered 1 jobs while TotalCount says 3", id="omits-ids"),
    pytest.param(
        body("a", "b", total=1), "holds 2 jobs but says TotalCount 1", id="more-than-total"
    ),
    pytest.param(body(total=9), "a look-up of 3 ids says TotalCount 9", id="total-over-asked"),
    pytest.param(body("a", "zzz", total=2), "'zzz', which it was not asked", id="stranger"),
]


@pytest.mark.parametrize(("answer", "message"), BAD_SINGLE_PAGES)
def test_a_contradicting_look_up_is_malformed_and_observed_so(
    make_client: Any, rec: Recorder, answer: httpx.Response, message: str
) -> None:
    api = FakeApi(answer)
    with pytest.raises(MalformedResponseError, match=message):
        make_client(api).list_jobs(JobQuery(job_ids=("a", "b", "c")))
    assert rec.codes == ["MalformedResponse"]  # one attempt: the same question, same answer
    assert len(api.requests) == 1


def test_pages_that_together_omit_ids_are_malformed(make_client: Any, rec: Recorder) -> None:
    # Each page is plausible alone (TotalCount the whole listing), but the pages hold 2 of 3.
    api = FakeApi(body("a", total=3, token="t1"), body("b", total=3))
    with pytest.raises(MalformedResponseError, match="answered 2 jobs over its pages"):
        make_client(api, page_size=1).list_jobs(JobQuery(job_ids=("a", "b", "c")))
    assert rec.codes == ["OK", "OK"]  # each call was a good answer; the whole was not


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param([body("a", "b", total=2)], id="found-some"),
        pytest.param([body(total=0)], id="none-left"),
        pytest.param([httpx.Response(200, json={"RequestId": "r", "Jobs": []})], id="no-total"),
        pytest.param([body("a", total=2, token="t"), body("b", total=2)], id="total-is-listing"),
        pytest.param([body("a", total=1, token="t"), body("b", total=1)], id="total-is-page"),
        pytest.param([body("a", "b", total=2, token="t"), body(total=2)], id="empty-last-page"),
    ],
)
def test_consistent_look_ups_pass(make_client: Any, answers: list[httpx.Response]) -> None:
    jobs = make_client(FakeApi(*answers), page_size=2).list_jobs(JobQuery(job_ids=("a", "b", "c")))
    assert {job.id for job in jobs} <= {"a", "b"}


def test_listings_are_not_held_to_the_look_up_rules(make_client: Any) -> None:
    # A window listing's TotalCount may count jobs a later page holds; only look-ups know
    # exactly what they asked.
    jobs = make_client(FakeApi(body("x", total=7))).list_jobs(JobQuery(begin_time_ms=0))
    assert [job.id for job in jobs] == ["x"]
