"""Faults in what comes back: malformed 200s, broken paging, hostile strings, refused
connections, errors that are not retried, and a storm of scrapes during faults.

The world the tests run in (processes, drivers, checks) is world.py.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from exporter.metrics.table import MAX_LABEL_VALUE_LENGTH
from exporter.web.server import MAX_WORKERS
from tests.e2e.faults.world import (
    CONTROLS,
    EDGE,
    FAULTED,
    HOSTILE,
    HOSTILE_STRINGS,
    LONG,
    SIM_TARGETS,
    STS,
    Suite,
    absorbed,
    by_labels,
    check_no_secret_in_any_log_line_or_answer,
    check_request_counts,
    codes,
    delta,
    expected_label,
    finished,
    gauges,
    last_success,
    malformed,
    newly_finished,
    one,
    outage,
    paged,
    proc_status,
    start_sim,
    storm,
    truth_gauges,
    up,
    validate_exposition,
)
from tests.support import loopback, procs

# timing: while a call hangs, scrapes answer at the deadline the exporter keeps (SCRAPE_TIMEOUT
# minus its 0.5 s offset), a few tenths of a second inside the bound Suite.scrape checks.
pytestmark = [pytest.mark.e2e, pytest.mark.timing]


@pytest.mark.tools
def test_hostile_job_strings_keep_the_exposition_valid_and_capped(suite: Suite) -> None:
    region = HOSTILE[1]
    jobs = []
    for i, value in enumerate(HOSTILE_STRINGS):
        jobs.append(
            {
                "Id": f"hostile-{i}",
                "ApiName": value,
                "OperateType": value,
                "ResourceType": value,
                "ResourceId": value,
                "Status": "Failed",
                "ErrorCode": value,
                "ErrorMessage": value,
            }
        )
    # A failed job without ErrorCode is error_code="" (SPEC).
    jobs.append({"Id": "hostile-empty", "ApiName": "Empty", "Status": "Failed"})
    suite.control("POST", "/_sim/jobs", {"region": region, "jobs": jobs})
    since = time.time()
    samples = suite.wait_for(
        lambda s: last_success(s, HOSTILE) >= since, "the hostile target refreshed"
    )
    text = suite.answers[-1]
    validate_exposition(text)
    om = suite.exporter.url + "/metrics"
    om_text = loopback.get(
        om, headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=30
    ).text
    suite.answers.append(om_text)
    list(parse_openmetrics(om_text))

    failed = by_labels(
        samples, "alb_async_jobs_failed", HOSTILE, ("resource_type", "api_name", "error_code")
    )
    truth = Counter(
        tuple(expected_label(str(j.get(f) or "")) for f in ("ResourceType", "ApiName", "ErrorCode"))
        for j in suite.truth(region)
        if j["Status"] == "Failed"
    )
    assert failed == {k: float(v) for k, v in truth.items()}
    capped = expected_label(LONG)
    assert len(capped) == MAX_LABEL_VALUE_LENGTH and capped.endswith("…")
    # LONG and LONG-second collide once capped: one series holding both jobs.
    assert failed[(capped, capped, capped)] == 2.0
    assert failed[("loadbalancer", "Empty", "")] == 1.0
    for value in HOSTILE_STRINGS:
        assert (expected_label(value),) * 3 in failed
    every_value = {v for (_, lbl) in samples for _, v in lbl}
    assert max(len(v) for v in every_value) == MAX_LABEL_VALUE_LENGTH
    # Job ids and error messages are never labels, except on the bounded recent series.
    recent = procs.select(
        samples, "alb_async_job_recent_failure_timestamp_seconds", account=HOSTILE[0]
    )
    assert 0 < len(recent) <= 5
    assert not any(
        "ErrorMessage" in name or value.startswith("hostile-")
        for (name, lbl) in samples
        if not name.startswith("alb_async_job_recent_failure")
        for _, value in lbl
    )


@pytest.mark.tools
@pytest.mark.parametrize(
    ("deny", "label"),
    [
        ('Forbidden."quoted"\\back', 'Forbidden."quoted"\\back'),
        ("Denied\nInjected 1", "Denied\nInjected 1"),
        ("Verboten.Größe.拒绝", "Verboten.Größe.拒绝"),
        ("X" * 10_240, "X" * 100),  # the client keeps the first 100 characters of a Code
        ("   ", "TransportError"),  # a blank Code is no API error code at all
    ],
    ids=["quotes-backslash", "newline", "unicode", "10kB", "blank"],
)
def test_hostile_error_codes_keep_the_exposition_valid(suite: Suite, deny: str, label: str) -> None:
    since = time.time()
    suite.set_faults(HOSTILE[1], deny=deny)
    try:
        samples = suite.wait_for(
            lambda s: up(s, HOSTILE) == 0 and codes(s, HOSTILE).get(label, 0) > 0,
            "the hostile code counted",
        )
    finally:
        suite.clear_faults()
    validate_exposition(suite.answers[-1])
    assert up(samples, FAULTED) == 1
    if label != "TransportError":
        assert suite.sim_codes(HOSTILE[1], since)[deny] == codes(samples, HOSTILE)[label]


def test_clock_skew_invalid_timestamp_expired(suite: Suite) -> None:
    # 30 minutes off, twice the gateway's tolerance. Not retried: re-signing with the same
    # clock cannot help.
    outage(suite, "InvalidTimeStamp.Expired", retried=False, clock_skew=1800)


def test_permission_denied_forbidden_ram(suite: Suite) -> None:
    outage(suite, "Forbidden.RAM", retried=False, deny="Forbidden.RAM")


def test_truncated_json(suite: Suite) -> None:
    outage(suite, "MalformedResponse", cause="non-JSON body", malformed="truncated")


def test_html_error_page_with_status_502(suite: Suite) -> None:
    outage(suite, "TransportError", cause="HTTP 502", malformed="html502")


def test_xml_instead_of_json(suite: Suite) -> None:
    outage(suite, "MalformedResponse", cause="non-JSON body", malformed="not_json")


def test_connection_refused_then_restarted(suite: Suite) -> None:
    base = suite.settle()
    jobs = suite.truth(EDGE[1], sim=suite.sim2)
    edge_old = truth_gauges(jobs)
    mark = suite.log_mark()
    assert suite.sim2.close() == 0
    since = time.time()
    during = suite.wait_for(
        lambda s: up(s, EDGE) == 0 and all(last_success(s, t) >= since for t in SIM_TARGETS),
        "edge down, the others refreshed",
    )
    assert (
        codes(during, EDGE).get("TransportError", 0)
        >= codes(base, EDGE).get("TransportError", 0) + 3
    )  # three attempts, all refused
    assert gauges(during, EDGE) == edge_old
    assert last_success(during, EDGE) == last_success(base, EDGE)
    assert all(up(during, t) == 1 for t in SIM_TARGETS)

    # The same address again, as after a network partition or a gateway restart; the
    # restarted stand-in gets the same jobs back (ALB does not forget them), and more.
    address = suite.sim2.url.removeprefix("http://")
    suite.sim2 = start_sim(suite.start_simulator, (EDGE[1],), listen=address)
    procs.put_jobs(suite.sim2, EDGE[1], *jobs)
    assert suite.truth(EDGE[1], sim=suite.sim2) == jobs
    suite.mutate(EDGE[1], new=3, finish=2, sim=suite.sim2)
    new = suite.truth(EDGE[1], sim=suite.sim2)
    after = suite.wait_for(
        lambda s: up(s, EDGE) == 1 and gauges(s, EDGE) == truth_gauges(new),
        "edge recovered and caught up",
    )
    assert delta(finished(after, EDGE), finished(base, EDGE)) == newly_finished(jobs, new)
    tag = f"account={EDGE[0]} region={EDGE[1]}"
    errors = [line for line in suite.log_lines(mark) if "level=error" in line and tag in line]
    assert len(errors) == 1 and "ConnectError" in errors[0], errors
    host = suite.sim2.url.removeprefix("http://")
    assert f"request to {host} failed" in errors[0]  # which address refused


def test_200_with_jobs_null(suite: Suite) -> None:
    # Reading "Jobs": null as "no jobs" would zero the gauges and count every tracked
    # Processing job as vanished: an outage disguised as a quiet account.
    ep = malformed(suite, "jobs_null", cause="Jobs")
    vanished = "alb_async_jobs_vanished_total"
    assert by_labels(ep.after, vanished, FAULTED, ("resource_type", "api_name")) == by_labels(
        ep.base, vanished, FAULTED, ("resource_type", "api_name")
    )


def test_200_with_missing_fields(suite: Suite) -> None:
    malformed(suite, "missing_fields", cause="has no Status")


def test_200_with_wrong_types(suite: Suite) -> None:
    malformed(suite, "wrong_types", cause="not epoch milliseconds")


def test_200_that_is_not_a_listing_answer(suite: Suite) -> None:
    # A proxy's own JSON ({"RequestId": ...}): read as "no jobs" it made every tracked
    # Processing job vanish and the stuck-job series disappear while up stayed 1.
    ep = malformed(suite, "no_jobs", cause="neither Jobs nor TotalCount")
    vanished = "alb_async_jobs_vanished_total"
    assert by_labels(ep.after, vanished, FAULTED, ("resource_type", "api_name")) == by_labels(
        ep.base, vanished, FAULTED, ("resource_type", "api_name")
    )
    stuck = "alb_async_job_processing_oldest_created_timestamp_seconds"
    before = by_labels(ep.base, stuck, FAULTED, ("resource_type", "api_name"))
    assert before  # there were Processing jobs to lose
    assert by_labels(ep.during, stuck, FAULTED, ("resource_type", "api_name")) == before


def test_200_with_extra_fields_is_accepted(suite: Suite) -> None:
    absorbed(suite, None, malformed="extra_fields")


# --- paging faults ------------------------------------------------------------------------


def test_next_token_that_never_ends(suite: Suite) -> None:
    # Every page answered 200: the calls are OK, the listing is what failed.
    outage(suite, "OK", retried=False, cause="raise max_pages", endless_next_token=True)


def test_same_next_token_returned_twice(suite: Suite) -> None:
    outage(suite, "OK", retried=False, cause="NextToken already used", repeat_next_token=True)


def test_duplicate_jobs_across_pages(suite: Suite) -> None:
    ep = absorbed(suite, None, duplicate_across_pages=True)
    assert paged(suite, ep.since), "the fault needs listings of several pages"


def test_jobs_changing_status_between_pages(suite: Suite) -> None:
    # Mostly finished jobs, so that a page's last job is likely one shown stale.
    ep = absorbed(suite, None, ("Succeeded", "Failed", "Succeeded"), status_flip_between_pages=True)
    assert paged(suite, ep.since), "the fault needs listings of several pages"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_memory_threads_and_sockets_stay_bounded_through_a_fault_storm(suite: Suite) -> None:
    suite.settle()
    pid = suite.exporter.popen.pid
    # A fault on every target, some absorbed, some failing every refresh. (Retried faults
    # are left out: their backoff would only make the storm slower, not heavier.)
    suite.set_faults(FAULTED[1], status_flip_between_pages=True)
    suite.set_faults(CONTROLS[0][1], duplicate_across_pages=True)
    suite.set_faults(CONTROLS[1][1], repeat_next_token=True)
    suite.set_faults(STS[1], deny="Forbidden.RAM")
    suite.set_faults(HOSTILE[1], malformed="wrong_types")
    storm(suite, rounds=1)  # warm up: thread pool, connection pools, code label sets
    before = proc_status(pid)
    done = storm(suite, rounds=4)
    after = proc_status(pid)
    samples = suite.settle()
    assert done == 4 * 16 * 4
    # Measured: about 1 MiB per 256 scrapes while the HTTP worker pool grows, then flat.
    assert after["VmRSS"] - before["VmRSS"] < 16 * 1024, (before, after)
    # Threads: the HTTP pool's cap, the refresh pool (4 by default) and a few fixed ones.
    assert after["Threads"] <= MAX_WORKERS + 4 + 8, (before, after)
    # Sockets and files: connections are reused or closed, never leaked.
    assert after["fds"] <= before["fds"] + 8, (before, after)
    for target in SIM_TARGETS:
        truth = suite.truth(target[1])
        assert one(samples, "alb_exporter_jobs_tracked", target) <= len(truth)
        assert gauges(samples, target) == truth_gauges(truth)
    check_request_counts(suite)


# --- secrets (keep last: it checks everything this module produced) ----------------------


def test_no_secret_or_token_in_any_log_line_answer_or_error(suite: Suite) -> None:
    check_no_secret_in_any_log_line_or_answer(suite)
