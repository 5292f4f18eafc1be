"""Fault knobs over real HTTP: throttling, errors, denials, skew, latency, malformed bodies,
paging bugs, and the validation of the knobs themselves."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import httpx
import pytest

from exporter.simulator import FAULT_KNOBS, Simulator, SimulatorServer
from exporter.simulator.faults import MALFORMED
from tests.support import loopback, procs
from tests.unit.simulator.helpers import all_pages, api_error, call, control, jobs_of, ok


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
    bad = loopback.post(server.url + "/_sim/faults", json={"throttel": 1})
    assert bad.status_code == 400 and "throttel" in bad.json()["error"]
    assert loopback.post(server.url + "/_sim/faults", json={"throttle": 2}).status_code == 400


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


def test_clearing_the_faults_sends_the_answers_held_back_now(
    sim: Simulator, server: SimulatorServer
) -> None:
    # A test that ends a slow phase must not wait for that phase's last answers (closing
    # an App waits for its refreshes in flight): clearing the knobs releases them.
    sim.set_faults(hang=30)
    answers: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: answers.append(call(server, timeout=20)))
    caller.start()
    procs.wait_until(lambda: sim.request_count() > 0, timeout=10)
    started = time.monotonic()
    sim.clear_faults()
    caller.join(timeout=20)
    assert answers and answers[0].status_code == 200
    assert time.monotonic() - started < 10  # not the 30 s hang


@pytest.mark.parametrize("kind", MALFORMED)
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
    if kind == "no_jobs":
        assert list(body) == ["RequestId"]
    elif kind == "jobs_null":
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


def test_lookup_empty_empties_look_ups_only_and_keeps_their_total(
    sim: Simulator, server: SimulatorServer
) -> None:
    ids = [job["Id"] for job in sim.jobs()[:3]]
    asked = {f"JobIds.{n}": job_id for n, job_id in enumerate(ids, start=1)}
    sim.set_faults(lookup_empty=True)
    lookup = ok(call(server, asked))
    assert lookup["Jobs"] == [] and lookup["TotalCount"] == 3 and not lookup["NextToken"]
    listing = ok(call(server, {"MaxResults": "100"}))
    assert listing["Jobs"]  # a window listing is answered as ever
    sim.clear_faults()
    assert sorted(j["Id"] for j in ok(call(server, asked))["Jobs"]) == sorted(ids)
