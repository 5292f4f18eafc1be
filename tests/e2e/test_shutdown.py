"""SIGTERM within a deadline while the API hangs (issue 23, item 4), end to end: the real
exporter process against the real simulator process.

With `request_timeout: 30s` and every call hanging, SIGTERM cancels the calls in flight,
lets the scrape in flight finish, writes the state file and exits 0 in under 5 s (before
the fix: 27.6 s, past what a pod's 30 s grace period leaves). After a restart the
counters equal the simulator's truth, the jobs that finished during the hang included.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import loopback, procs
from tests.support.configs import access_key, account, write_config

# timing: the bound, 5 s from SIGTERM to exit.
pytestmark = [pytest.mark.e2e, pytest.mark.timing]

KEY_ID = "LTAI5tShutdownTestKey001"
SECRET = "shutdown-Secret-Value-01"
REGION = "cn-hangzhou"


def sums(url: str) -> dict[str, float]:
    _, samples = procs.scrape(url)
    return {
        "failed": sum(procs.select(samples, "alb_async_jobs_failures_total").values()),
        "succeeded": sum(
            procs.select(samples, "alb_async_jobs_finished_total", status="Succeeded").values()
        ),
        "processing": sum(procs.select(samples, "alb_async_jobs", status="Processing").values()),
    }


def truth(sim: procs.Proc, ids: list[str]) -> dict[str, float]:
    jobs = procs.control(sim, "GET", f"/_sim/jobs?region={REGION}")
    mine = [j for j in jobs if j["Id"] in ids]
    return {
        "failed": sum(1 for j in mine if j["Status"] == "Failed"),
        "succeeded": sum(1 for j in mine if j["Status"] == "Succeeded"),
        "processing": sum(1 for j in mine if j["Status"] == "Processing"),
    }


def test_sigterm_with_the_api_hung_exits_in_seconds_and_loses_no_count(
    tmp_path: Path, start_simulator: procs.Simulators, start_exporter: procs.Exporters
) -> None:
    sim = start_simulator([REGION], keys={KEY_ID: SECRET}, jobs_per_minute=0, history="0s")
    ids = ["A", "B", "C", "D"]
    now_ms = int(procs.control(sim, "GET", "/_sim/state")["now"] * 1000)
    procs.put_jobs(
        sim, REGION, *[{"Id": i, "Status": "Processing", "CreateTime": now_ms - 1000} for i in ids]
    )
    state = tmp_path / "state.json"
    prod = account(sim, "prod", [REGION], access_key(KEY_ID, SECRET))
    cfg = write_config(
        tmp_path / "config.yaml",
        [prod],
        cache_ttl=0.3,
        request_timeout="30s",
        state_file=str(state),
    )
    with start_exporter(cfg) as proc:
        procs.wait_until(lambda: sums(proc.url)["processing"] == 4)
        procs.put_jobs(sim, REGION, {"Id": "A", "Status": "Failed", "ErrorCode": "E"})
        procs.wait_until(lambda: sums(proc.url)["failed"] == 1)

        procs.control(sim, "POST", "/_sim/faults", {"region": REGION, "hang": 120})
        # While the API hangs, B fails and C succeeds: counted only after the restart.
        procs.put_jobs(
            sim,
            REGION,
            {"Id": "B", "Status": "Failed", "ErrorCode": "E"},
            {"Id": "C", "Status": "Succeeded"},
        )
        scrape: dict[str, Any] = {}

        def slow_scrape() -> None:  # waits on the hung refresh: in flight at SIGTERM
            try:
                scrape["status"] = loopback.get(proc.url + "/metrics", timeout=20).status_code
            except httpx.HTTPError as exc:
                scrape["error"] = repr(exc)

        time.sleep(0.5)  # past cache_ttl: the next scrape refreshes
        scraper = threading.Thread(target=slow_scrape)
        scraper.start()
        time.sleep(1.5)  # the scrape's refresh is in its call, which the simulator holds
        assert scraper.is_alive()  # so a refresh is in flight (no scrape timeout was sent)
        sent = time.time()
        started = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.popen.wait(timeout=40)
        took = time.monotonic() - started
        scraper.join(20)
        assert code == 0, proc.output()[-3000:]
        assert took < 5, f"exited {took:.1f}s after SIGTERM"
        assert scrape.get("status") == 200, scrape  # the scrape in flight was answered
        assert json.loads(state.read_bytes())["written_at"] >= sent - 1  # written on the way out

    procs.control(sim, "DELETE", "/_sim/faults")
    with start_exporter(cfg) as again:
        want = truth(sim, ids)
        assert want == {"failed": 2, "succeeded": 1, "processing": 1}
        procs.wait_until(lambda: sums(again.url) == want)
        time.sleep(1)
        assert sums(again.url) == want  # and counted once


# Runs the real exporter (`python -m exporter`'s own entry point) and, from a thread of its
# own, directs SIGTERM at that thread. The kernel may hand a signal sent to the process to
# any thread that does not block it; this makes the rare case certain.
_SIGNAL_ANOTHER_THREAD = """
import signal, sys, threading, time
from exporter import cli

def deliver():
    while not any(t.name == "http" for t in threading.enumerate()):
        time.sleep(0.01)  # the handlers are installed before the web thread starts
    time.sleep(0.5)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=deliver, name="deliver", daemon=True).start()
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_received_by_another_thread_still_stops_the_exporter() -> None:
    # Before the fix the main thread slept in an untimed wait that only a signal delivered
    # to it could interrupt: the exporter ignored this SIGTERM until SIGKILL (CI stop 26).
    args = ["-c", _SIGNAL_ANOTHER_THREAD, *procs.exporter_args(None, "--demo")[2:]]
    with procs.start(args) as proc:
        try:
            code = proc.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM was not acted on within 15 s:\n" + proc.output()[-2000:])
        assert code == 0, proc.output()[-3000:]
        assert "received SIGTERM, shutting down" in proc.output()
