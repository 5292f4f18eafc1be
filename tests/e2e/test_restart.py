"""End to end with `state_file`: kill and restart the real exporter process against the
real simulator process; counters never decrease, no job is counted twice, and a restart
is a long gap between two refreshes: a job seen Processing that finished while the
exporter was down, and a job created and finished while it was down, are counted once;
a job that finished before the first ever start is not counted.

Also: a scrape whose timeout the refresh cannot meet is answered in time with the previous
data, and concurrent scrapes share one upstream refresh.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.errors import StateError
from exporter.jobs.state import decode
from tests.support import loopback, procs
from tests.support.configs import access_key, account, write_config
from tests.support.procs import control

# timing: a 2 s scrape deadline for 10 concurrent scrapes, 0.5 s inside the client's timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.timing]

KEY_ID = "LTAI5tRestartTestKey0001"
SECRET = "restart-Secret-Value-0001"
REGION = "cn-hangzhou"


@pytest.fixture
def sim(start_simulator: procs.Simulators) -> Iterator[procs.Proc]:
    with start_simulator([REGION], keys={KEY_ID: SECRET}, jobs_per_minute=0, history="0s") as proc:
        yield proc


def put_jobs(sim: procs.Proc, *jobs: dict[str, Any]) -> None:
    procs.put_jobs(sim, REGION, *jobs)


def now_ms(sim: procs.Proc) -> int:
    return int(control(sim, "GET", "/_sim/state")["now"] * 1000)


def state_config(tmp: Path, sim: procs.Proc) -> Path:
    prod = account(sim, "prod", [REGION], access_key(KEY_ID, SECRET))
    state_file = str(tmp / "state.json")
    return write_config(tmp / "config.yaml", [prod], request_timeout="20s", state_file=state_file)


def counters(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    _, samples = procs.scrape(url)
    return {
        k: v
        for k, v in samples.items()
        if k[0].endswith("_total") and k[0].startswith("alb_async_job")
    }


def value(samples: procs.Samples, name: str, **want: str) -> float:
    wanted = set(want.items())
    return sum(v for (n, labels), v in samples.items() if n == name and wanted <= labels)


def saved_failures(path: Path) -> int:
    """The failures counted in the state file as it is on disk (0 while there is none)."""
    try:
        saved = decode(path.read_bytes())
    except (OSError, StateError):
        return 0
    return sum(sum(store.failures_total.values()) for _, store in saved.values())


def assert_no_decrease(before: dict[Any, float], after: dict[Any, float]) -> None:
    for key, v in before.items():
        assert after.get(key, -1) >= v, key


def test_kill_and_restart_counts_once_and_never_decreases(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    t = now_ms(sim)
    put_jobs(
        sim,
        {"Id": "JOB-A", "Status": "Processing", "CreateTime": t - 60_000},
        {"Id": "JOB-B", "Status": "Processing", "CreateTime": t - 50_000},
        {
            "Id": "JOB-C",
            "Status": "Succeeded",
            "CreateTime": t - 600_000,
            "ModifyTime": t - 500_000,
        },
    )
    config = state_config(tmp_path, sim)
    with start_exporter(config, ready=False) as first:
        c0 = counters(first.url)
        # JOB-C was terminal at the first refresh: history, not counted.
        assert value(c0, "alb_async_jobs_finished_total") == 0
        assert "does not exist yet" in first.output()

        put_jobs(sim, {"Id": "JOB-A", "Status": "Failed", "ErrorCode": "Conflict.Lock"})
        # Seen when its re-check is due (every tenth of its age: seconds here).
        procs.wait_until(
            lambda: value(counters(first.url), "alb_async_jobs_failures_total") == 1, timeout=30
        )
        c1 = counters(first.url)
        assert value(c1, "alb_async_jobs_failures_total", error_code="Conflict.Lock") == 1
        # The state writer saves in the background, a second after the refresh that
        # counted: wait for that save (on a busy machine the first save may not have
        # happened yet either, and a restart without any is a fresh start).
        procs.wait_until(lambda: saved_failures(tmp_path / "state.json") == 1, timeout=30)
        # Killed without a chance to flush: what was saved is all there is.
        first.stop(signal.SIGKILL)

    # While it is down: JOB-B (seen Processing) finishes; JOB-D and JOB-E are born and
    # finish unseen.
    put_jobs(
        sim,
        {"Id": "JOB-B", "Status": "Succeeded"},
        {"Id": "JOB-D", "Status": "Failed", "ErrorCode": "Other", "CreateTime": now_ms(sim)},
        {"Id": "JOB-E", "Status": "Succeeded", "CreateTime": now_ms(sim)},
    )
    with start_exporter(config, ready=False) as second:
        c2 = counters(second.url)
        assert "ignoring state file" not in second.output()
        assert_no_decrease(c1, c2)
        # JOB-A is not counted twice; JOB-B is counted once; JOB-D and JOB-E, born and
        # finished while it was down, once each (SPEC: a restart is a long gap); JOB-C,
        # terminal before the first ever start, still not.
        assert value(c2, "alb_async_jobs_failures_total", error_code="Conflict.Lock") == 1
        assert value(c2, "alb_async_jobs_failures_total", error_code="Other") == 1
        assert value(c2, "alb_async_jobs_finished_total", status="Succeeded") == 2
        assert value(c2, "alb_async_jobs_finished_total", status="Failed") == 2
        _, everything = procs.scrape(second.url)
        assert value(everything, "alb_async_job_duration_seconds_count") == 4
        assert second.stop(signal.SIGTERM) == 0  # flushes the state on the way out

    with start_exporter(config, ready=False) as third:
        c3 = counters(third.url)
        assert c3 == c2


def test_truncated_state_file_is_kept_aside_and_a_fresh_start(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    (tmp_path / "state.json").write_text('{"format": "alb-jobs-exporter-state", "vers')
    with start_exporter(state_config(tmp_path, sim), ready=False) as proc:
        procs.scrape(proc.url)
        [kept] = tmp_path.glob("state.json.corrupt-*")  # tests/e2e/test_state_aside.py
        assert f"kept as {kept}" in proc.output()
        assert "Traceback" not in proc.output()


SCRAPERS = 10


def test_scrape_deadline_is_kept_with_the_previous_data_and_one_refresh(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    put_jobs(sim, {"Id": "JOB-S", "Status": "Succeeded", "CreateTime": now_ms(sim) - 60_000})
    with start_exporter(state_config(tmp_path, sim), ready=False) as proc:
        _, before = procs.scrape(proc.url)
        last = value(before, "alb_exporter_last_success_timestamp_seconds")
        assert last > 0
        control(sim, "POST", "/_sim/faults", {"latency": 5})
        requests_before = control(sim, "GET", "/_sim/state")["request_counts"][REGION]
        time.sleep(1.2)  # past cache_ttl: the next scrape wants a refresh

        answers: list[httpx.Response] = []
        errors: list[BaseException] = []

        def scrape() -> None:
            try:
                # The client gives up at the scrape timeout, as Prometheus would. With the
                # shared SSL context: 50 `httpx.get`s made 50 (30 ms of CPU each) while the
                # answers were due, and on a busy machine some were read after the timeout.
                answers.append(
                    loopback.get(
                        proc.url + "/metrics",
                        headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"},
                        timeout=2.0,
                    )
                )
            except BaseException as exc:
                errors.append(exc)

        # Ten at once: an HA pair and a few dashboards, not a crowd. The exporter answers at
        # the scrape timeout minus 0.5 s, so every answer has 0.5 s to reach its client;
        # fifty at once on two loaded cores sometimes needed more (the single-flight property
        # under a crowd is the refresher's unit tests' to hold, deterministically).
        threads = [threading.Thread(target=scrape) for _ in range(SCRAPERS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert [r.status_code for r in answers] == [200] * SCRAPERS
        for r in answers:
            # The previous data, saying how old it is.
            assert value(procs.parse(r.text), "alb_exporter_last_success_timestamp_seconds") == last

        # The refresh goes on in the background and finishes: exactly one upstream call
        # (one listing; no Processing jobs to look up) for all those scrapes.
        def refreshed() -> bool:
            _, now = procs.scrape(proc.url)
            return value(now, "alb_exporter_last_success_timestamp_seconds") > last

        procs.wait_until(refreshed, timeout=30)
        requests_after = control(sim, "GET", "/_sim/state")["request_counts"][REGION]
        assert requests_after - requests_before == 1
