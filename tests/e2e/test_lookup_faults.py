"""Look-ups by id answered with `Jobs: []` and `TotalCount > 0` (issue 23, item 3), end to
end: the real exporter process against the real simulator process.

Jobs held as Processing beyond the incremental listing's reach are re-checked by id on
every refresh. While the simulator answers those look-ups with an empty page whose
TotalCount counts the jobs (`lookup_empty`), the target is `up 0` with MalformedResponse,
nothing is counted as vanished and the stuck-job series stay; when the fault clears, every
job that finished meanwhile is counted once with its real status.

The issue's fault lasts a minute; here it lasts 20 s, which is the same test: every open
job fits in one look-up call, so each of the ~40 refreshes in those 20 s looks every job
up (jobs.target._due), and nothing else in the exporter changes with the fault's length
(the jobs are far from processing_max_age).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import procs
from tests.support.configs import access_key, account, write_config

pytestmark = pytest.mark.e2e

KEY_ID = "LTAI5tLookupTestKey00001"
SECRET = "lookup-Secret-Value-0001"
REGION = "cn-hangzhou"
FAULT_SECONDS = 20.0
IDS = [f"stuck-{i}" for i in range(5)]


def sums(url: str) -> dict[str, float]:
    _, samples = procs.scrape(url)

    def total(name: str, **labels: str) -> float:
        return sum(procs.select(samples, name, **labels).values())

    return {
        "up": total("alb_exporter_up"),
        "vanished": total("alb_async_jobs_vanished_total"),
        "failed": total("alb_async_jobs_failures_total"),
        "succeeded": total("alb_async_jobs_finished_total", status="Succeeded"),
        "processing": total("alb_async_jobs", status="Processing"),
        "stuck_series": len(
            procs.select(samples, "alb_async_job_processing_oldest_created_timestamp_seconds")
        ),
        "malformed": total("alb_exporter_api_requests_total", code="MalformedResponse"),
    }


def test_empty_look_up_pages_with_a_total_make_nothing_vanish(
    tmp_path: Path, start_simulator: procs.Simulators, start_exporter: procs.Exporters
) -> None:
    sim = start_simulator([REGION], keys={KEY_ID: SECRET}, jobs_per_minute=0, history="0s")
    now_ms = int(procs.control(sim, "GET", "/_sim/state")["now"] * 1000)
    # Half an hour old: past the incremental listing's reach (10 minutes of clock tolerance
    # and a minute of overlap: jobs.target), so
    # after the first complete listing these jobs are only ever looked up by id.
    procs.put_jobs(
        sim,
        REGION,
        *[{"Id": i, "Status": "Processing", "CreateTime": now_ms - 1_800_000} for i in IDS],
    )
    prod = account(sim, "prod", [REGION], access_key(KEY_ID, SECRET))
    cfg = write_config(tmp_path / "config.yaml", [prod], cache_ttl=0.3)
    with start_exporter(cfg) as proc:
        procs.wait_until(lambda: sums(proc.url)["processing"] == 5)
        before = sums(proc.url)
        assert before["up"] == 1 and before["stuck_series"] == 1 and before["vanished"] == 0

        procs.control(sim, "POST", "/_sim/faults", {"region": REGION, "lookup_empty": True})
        # Meanwhile two jobs fail and one succeeds: the truth the exporter catches up with.
        procs.put_jobs(
            sim,
            REGION,
            {"Id": "stuck-0", "Status": "Failed", "ErrorCode": "Conflict.Lock"},
            {"Id": "stuck-1", "Status": "Failed", "ErrorCode": "Conflict.Lock"},
            {"Id": "stuck-2", "Status": "Succeeded"},
        )
        procs.wait_until(lambda: sums(proc.url)["up"] == 0)
        scrapes = 0
        deadline = time.monotonic() + FAULT_SECONDS
        while time.monotonic() < deadline:
            during = sums(proc.url)
            assert during["up"] == 0
            assert during["vanished"] == 0
            assert during["stuck_series"] == 1
            assert during["processing"] == 5  # the last good data stays
            assert during["failed"] == 0  # what the exporter cannot see is not guessed
            scrapes += 1
            time.sleep(0.5)
        assert scrapes >= 20
        assert sums(proc.url)["malformed"] >= 10  # refreshed all along, each one refused

        procs.control(sim, "DELETE", "/_sim/faults")
        procs.wait_until(lambda: sums(proc.url)["up"] == 1)
        for _ in range(5):  # and it stays that way: counted once
            after = sums(proc.url)
            assert after["vanished"] == 0
            assert after["failed"] == 2
            assert after["succeeded"] == 1
            assert after["processing"] == 2
            assert after["stuck_series"] == 1
            time.sleep(0.4)
        assert "a look-up answered no jobs while TotalCount says" in proc.output()
