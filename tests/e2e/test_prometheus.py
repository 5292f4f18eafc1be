"""End to end with a real Prometheus: simulator -> exporter -> Prometheus (+ shipped rules).

Everything runs on loopback: the ALB simulator, the exporter (`python -m exporter`) and
Debian's `prometheus` scraping it every second with the chart's alert rules
(helm/alb-jobs-exporter/files/alerts.yaml) evaluated every second. The test

* evaluates every expression of the Grafana dashboard through /api/v1/query and
  requires each to return data;
* makes the simulator fail a job and waits for AlbAsyncJobFailed to fire, with the error
  code as a label and the job id in its description (the rule's `query` template on a
  real server);
* restarts the exporter (no state_file: counters come back at 0) and checks that this
  neither counts the failure again nor fires any new AlbAsyncJobFailed;
* runs Prometheus with `--enable-feature=exemplar-storage` and finds, through
  /api/v1/query_exemplars on the failures counter, exactly the ids of the jobs the
  simulator reports as failed since the exporter first listed it (SPEC "Exemplars").

Simulated time is frozen, so the simulator's own jobs do not change under the test:
every failure the exporter counts is the one the test made.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from exporter.simulator import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET
from tests.support import loopback, procs
from tests.support.artifacts import ALERTS, dashboard, dashboard_exprs, dashboard_rules
from tests.support.configs import UNPACED, access_key, account, write_config
from tests.support.procs import control

# timing: Prometheus gives each scrape 1 s, and one failed scrape leaves the dashboard
# expressions without data for a moment; also, the ports from free_port() must stay free.
pytestmark = [pytest.mark.e2e, pytest.mark.tools, pytest.mark.timing]

REGIONS = ("cn-hangzhou", "cn-shanghai")
ACCOUNT = "e2e"
ROLE_ACCOUNT = "e2e-role"
FAILING_API = "E2eFailingOperation"
STUCK_API = "E2eStuckOperation"
ERROR_CODE = "E2E.QuotaExceeded"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Prometheus:
    url: str
    popen: subprocess.Popen[bytes]
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = loopback.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{expr}: {r.text}"
        return body["data"]["result"]  # type: ignore[no-any-return]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        r = loopback.get(f"{self.url}/api/v1/alerts", timeout=10)
        r.raise_for_status()
        return [a for a in r.json()["data"]["alerts"] if a["labels"]["alertname"] == name]

    def exemplars(self, expr: str) -> list[dict[str, Any]]:
        """/api/v1/query_exemplars over a day either side of now (exemplar timestamps are
        the jobs' ModifyTimes, on the simulator's frozen clock)."""
        now = time.time()
        params = {"query": expr, "start": str(now - 86400), "end": str(now + 86400)}
        r = loopback.get(f"{self.url}/api/v1/query_exemplars", params=params, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{expr}: {r.text}"
        return body["data"]  # type: ignore[no-any-return]

    def rules_health(self) -> dict[str, str]:
        r = loopback.get(f"{self.url}/api/v1/rules", timeout=10)
        r.raise_for_status()
        return {
            rule["name"]: rule["health"]
            for group in r.json()["data"]["groups"]
            for rule in group["rules"]
        }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prom-e2e")


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail(
            "prometheus not found on PATH: apt-get install prometheus (or run ci/install-tools.sh)"
        )
    return found


@pytest.fixture(scope="module")
def sim(start_simulator: procs.Simulators) -> procs.Proc:
    return start_simulator(REGIONS, seed=11, history="45m", jobs_per_minute=10, frozen=True)


@dataclass
class Exporter:
    """The exporter on a fixed port, so that Prometheus scrapes it again after a restart."""

    config: Path
    port: int
    launch: procs.Exporters
    proc: procs.Proc | None = None

    def start(self) -> None:
        self.proc = self.launch(self.config, listen=f"127.0.0.1:{self.port}", ready=False)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.popen.poll() is None:
                assert self.proc.stop() == 0, self.proc.output()
            self.proc.close()
            self.proc = None


@pytest.fixture(scope="module")
def exporter(sim: procs.Proc, workdir: Path, start_exporter: procs.Exporters) -> Iterator[Exporter]:
    credentials = access_key(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET)
    # A second account on temporary credentials (AssumeRole at the simulator's STS), so the
    # dashboard's credential-expiry panels have data.
    role = {
        "type": "ram_role_arn",
        "role_arn": "acs:ram::2222222222222222:role/e2e-prometheus-reader",
        "sts_endpoint": f"{sim.url}/sts/",
        "source": {"type": "access_key", **credentials},
    }
    config = write_config(
        workdir / "exporter.yaml",
        [
            account(sim, ACCOUNT, REGIONS, credentials, **UNPACED),
            account(sim, ROLE_ACCOUNT, REGIONS[1:], role, **UNPACED),
        ],
        recent_failures=10,
        # Jobs are injected with CreateTimes minutes in the past and the simulator's clock
        # jumps: page the whole window on every refresh (incremental refreshes:
        # test_incremental).
        full_resync_interval="1s",
    )
    exp = Exporter(config, free_port(), start_exporter)
    exp.start()
    try:
        yield exp
    finally:
        exp.stop()


@pytest.fixture(scope="module")
def prom(prometheus_binary: str, exporter: Exporter, workdir: Path) -> Iterator[Prometheus]:
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        json.dumps(
            {  # JSON is YAML
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "evaluation_interval": "1s",
                },
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {
                        "job_name": "alb-jobs-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [
                prometheus_binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", popen, log)

    def ready() -> bool:
        if popen.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{log.read_text()}")
        try:
            return loopback.get(f"{server.url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually(ready, 30, "prometheus to be ready")
        yield server
    finally:
        popen.terminate()
        try:
            popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def up_targets(prom: Prometheus) -> list[dict[str, Any]]:
    result = prom.query(f'alb_exporter_up{{account="{ACCOUNT}"}} == 1')
    return result if len(result) == len(REGIONS) else []


def failed_counter(prom: Prometheus) -> list[dict[str, Any]]:
    return prom.query(f'alb_async_jobs_finished_total{{api_name="{FAILING_API}", status="Failed"}}')


@pytest.fixture(scope="module")
def scenario(sim: procs.Proc, exporter: Exporter, prom: Prometheus) -> dict[str, Any]:
    """Bring everything up, then make one job fail; returns what the tests need."""
    eventually(lambda: prom.query('up{job="alb-jobs-exporter"} == 1'), 30, "the scrape target up")
    eventually(lambda: up_targets(prom), 60, "alb_exporter_up == 1 for every region")
    eventually(
        lambda: prom.query(f'alb_exporter_up{{account="{ROLE_ACCOUNT}"}} == 1'),
        60,
        "the AssumeRole account up",
    )
    assert all(h == "ok" for h in prom.rules_health().values()), prom.rules_health()
    # Failed before the exporter first listed the simulator (frozen until now): history,
    # never counted, so never an exemplar.
    history = failed_jobs(sim)

    now_ms = int(control(sim, "POST", "/_sim/time", {})["now"] * 1000)
    region = REGIONS[0]
    jobs = procs.put_jobs(
        sim,
        region,
        {
            "Id": "e2e-job-failing",
            "ApiName": FAILING_API,
            "OperateType": "Update",
            "ResourceType": "listener",
            "ResourceId": "lsn-e2e0001",
            "Status": "Processing",
            "CreateTime": now_ms - 120_000,
        },
        # processing for 40 minutes: AlbAsyncJobStuck's condition holds (pending, `for: 5m`)
        {
            "Id": "e2e-job-stuck",
            "ApiName": STUCK_API,
            "OperateType": "Update",
            "ResourceType": "loadbalancer",
            "ResourceId": "alb-e2e0001",
            "Status": "Processing",
            "CreateTime": now_ms - 40 * 60_000,
        },
    )
    assert [j["Status"] for j in jobs] == ["Processing", "Processing"]

    # The failed-jobs counter of the new label set must be in Prometheus at 0 *before* the
    # failure, for a few scrapes: that is what lets increase() see the first failure.
    def counter_at_zero() -> bool:
        selector = f'{{api_name="{FAILING_API}", status="Failed"}}'
        rows = prom.query(f"count_over_time(alb_async_jobs_finished_total{selector}[1m])")
        return (
            bool(rows)
            and float(rows[0]["value"][1]) >= 3
            and float(failed_counter(prom)[0]["value"][1]) == 0
        )

    eventually(
        counter_at_zero, 30, "alb_async_jobs_finished_total{status=Failed} of the new API at 0"
    )

    control(sim, "POST", "/_sim/time", {"advance": 5})
    procs.put_jobs(
        sim,
        region,
        {
            "Id": "e2e-job-failing",
            "Status": "Failed",
            "ErrorCode": ERROR_CODE,
            "ErrorMessage": "The quota of listeners is exceeded (e2e).",
        },
    )
    eventually(
        lambda: failed_counter(prom) and float(failed_counter(prom)[0]["value"][1]) == 1,
        30,
        "the failure counted once",
    )

    def firing() -> list[dict[str, Any]]:
        return [
            a
            for a in prom.alerts("AlbAsyncJobFailed")
            if a["state"] == "firing" and a["labels"].get("api_name") == FAILING_API
        ]

    # The shipped rule waits its `for` (1m) before firing.
    alert = eventually(firing, 120, "AlbAsyncJobFailed firing", interval=1)[0]
    return {"alert": alert, "region": region, "history": history}


def sim_jobs(sim: procs.Proc, region: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The simulator's truth: every job of `region`, by region and id."""
    return {(region, job["Id"]): job for job in control(sim, "GET", f"/_sim/jobs?region={region}")}


def failed_jobs(sim: procs.Proc) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        key: job
        for region in REGIONS
        for key, job in sim_jobs(sim, region).items()
        if job["Status"] == "Failed"
    }


def test_every_dashboard_expression_returns_data(
    prom: Prometheus, scenario: dict[str, Any]
) -> None:
    empty = []
    for where, expr in dashboard_exprs():
        # The time range (`$__range`) spans the whole test, as a dashboard's would.
        plain = dashboard_rules.substitute(expr, range_value="1m", span_value="1h")
        if not prom.query(plain):
            empty.append(f"{where}: {plain}")
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            metric = (
                dashboard_rules.substitute(variable["query"]["query"])
                .split("(", 1)[1]
                .rsplit(",", 1)[0]
            )
            if not prom.query(metric):
                empty.append(f"variable {variable['name']}: {metric}")
    assert empty == [], "expressions without data:\n" + "\n".join(empty)


def test_failure_bars_draw_the_one_failure_in_one_bar(
    prom: Prometheus, scenario: dict[str, Any]
) -> None:
    # The panel's query as Grafana runs it: a range query whose step is $__interval.
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == "Failures by API and error code"]
    (target,) = panel["targets"]
    step = 5
    expr = dashboard_rules.substitute(target["expr"], range_value=f"{step}s")
    end = time.time()
    r = loopback.get(
        f"{prom.url}/api/v1/query_range",
        params={"query": expr, "start": end - 600, "end": end, "step": step},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    series = [s for s in r.json()["data"]["result"] if s["metric"].get("api_name") == FAILING_API]
    assert [s["metric"]["error_code"] for s in series] == [ERROR_CODE]
    bars = [float(v) for _, v in series[0]["values"] if float(v) != 0]
    assert bars == [1.0], series[0]["values"]


def test_failure_alert_fires_with_job_details(scenario: dict[str, Any]) -> None:
    alert = scenario["alert"]
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["account"] == ACCOUNT
    assert alert["labels"]["region"] == scenario["region"]
    assert alert["labels"]["resource_type"] == "listener"
    # The error code is a label: Alertmanager routes and silences on it.
    assert alert["labels"]["error_code"] == ERROR_CODE
    description = alert["annotations"]["description"]
    assert "e2e-job-failing" in description, description
    assert "lsn-e2e0001" in description, description
    assert ERROR_CODE in description, description
    assert 0.5 < float(alert["value"]) < 1.5


def test_stuck_job_condition_holds(prom: Prometheus, scenario: dict[str, Any]) -> None:
    pending = eventually(
        lambda: [
            a for a in prom.alerts("AlbAsyncJobStuck") if a["labels"].get("api_name") == STUCK_API
        ],
        30,
        "AlbAsyncJobStuck pending for the 40-minute job",
    )
    assert pending[0]["state"] == "pending"  # `for: 5m` has not elapsed in this test


def test_exporter_restart_does_not_fire_again(
    prom: Prometheus, exporter: Exporter, scenario: dict[str, Any]
) -> None:
    before = {a["activeAt"] for a in prom.alerts("AlbAsyncJobFailed")}
    assert len(before) == 1, prom.alerts("AlbAsyncJobFailed")
    exporter.stop()
    eventually(lambda: prom.query('up{job="alb-jobs-exporter"} == 0'), 30, "the scrape target down")
    restarted = time.time()
    exporter.start()
    eventually(lambda: up_targets(prom), 60, "alb_exporter_up == 1 again after the restart")
    # The restarted exporter has no state_file: its counters restart at 0 and the failed
    # job, terminal at its first refresh, is not counted again.
    eventually(
        lambda: failed_counter(prom) and float(failed_counter(prom)[0]["value"][1]) == 0,
        30,
        "the failed counter back at 0",
    )
    time.sleep(6)  # a few more scrapes and rule evaluations
    # Nothing failed since the restart: no failed-jobs counter of any API rose.
    since = int(time.time() - restarted)
    new_failures = prom.query(
        f'increase(alb_async_jobs_finished_total{{status="Failed"}}[{since}s]) > 0'
    )
    assert new_failures == [], new_failures
    # The alert from before is the only one, still the same instance (same activeAt), and its
    # value (increase over 10m across the counter reset) still counts one failure, not two.
    after = prom.alerts("AlbAsyncJobFailed")
    assert {a["activeAt"] for a in after} == before, after
    assert [float(a["value"]) < 1.5 for a in after] == [True], after


EXEMPLAR_API = "E2eExemplarOperation"
# OpenMetrics allows 128 characters of exemplar labels: `job_id` and 122 of the id.
LONGEST_ID = "e2e-longest-" + "x" * 110
TOO_LONG_ID = "e2e-too-long-" + "x" * 110
# Carried: nothing to escape. Left out: Prometheus would store the escapes with it.
BRACED_ID = "e2e-{braced} # spaced"
QUOTED_ID = 'e2e-"quoted"\\'


def exemplar_ids(prom: Prometheus, expr: str) -> set[tuple[str, str]]:
    return {
        (series["seriesLabels"]["region"], exemplar["labels"]["job_id"])
        for series in prom.exemplars(expr)
        for exemplar in series["exemplars"]
    }


def test_prometheus_stores_each_failed_job_as_an_exemplar(
    prom: Prometheus, sim: procs.Proc, scenario: dict[str, Any]
) -> None:
    """Runs last: its failures would be new AlbAsyncJobFailed alerts for the tests above."""
    assert len(LONGEST_ID) == 122 and len(TOO_LONG_ID) == 123
    now_ms = int(control(sim, "POST", "/_sim/time", {})["now"] * 1000)
    # (region, id, error code): distinct series, two ids in one series (failed one after
    # the other), and the ids at and just over the exemplar limit.
    east, north = REGIONS
    planned = [
        (east, "e2e-exemplar-1", "E2E.One"),
        (north, "e2e-exemplar-2", "E2E.One"),
        (east, "e2e-exemplar-3", "E2E.Two"),
        (east, LONGEST_ID, "E2E.Longest"),
        (east, TOO_LONG_ID, "E2E.TooLong"),
        (north, BRACED_ID, "E2E.Braced"),
        (north, QUOTED_ID, "E2E.Quoted"),
        (east, "e2e-exemplar-4", "E2E.One"),  # the series of e2e-exemplar-1, later
    ]
    for region, job_id, _ in planned:
        procs.put_jobs(
            sim,
            region,
            {
                "Id": job_id,
                "ApiName": EXEMPLAR_API,
                "OperateType": "Update",
                "ResourceType": "listener",
                "ResourceId": "lsn-e2e0002",
                "Status": "Processing",
                "CreateTime": now_ms - 90_000,
            },
        )
    # The account of the access key (the role's account lists cn-shanghai too).
    mine = f'account="{ACCOUNT}", api_name="{EXEMPLAR_API}"'
    processing = f'sum(alb_async_jobs{{{mine}, status="Processing"}})'

    def all_processing() -> bool:
        rows = prom.query(processing)
        return bool(rows) and float(rows[0]["value"][1]) == len(planned)

    eventually(all_processing, 30, "the exporter tracking the new jobs as Processing")

    def fail(batch: list[tuple[str, str, str]]) -> None:
        control(sim, "POST", "/_sim/time", {"advance": 5})  # each batch a later ModifyTime
        for region, job_id, code in batch:
            procs.put_jobs(sim, region, {"Id": job_id, "Status": "Failed", "ErrorCode": code})

    failures = f"alb_async_jobs_failures_total{{{mine}}}"

    def stored(ids: set[tuple[str, str]], expr: str = failures) -> set[tuple[str, str]] | None:
        have = exemplar_ids(prom, expr)
        return have if ids <= have else None

    fail(planned[:-1])
    eventually(lambda: stored({(east, "e2e-exemplar-1")}), 30, "the first exemplar stored")
    fail(planned[-1:])
    total = f"sum({failures})"
    eventually(
        lambda: (rows := prom.query(total)) and float(rows[0]["value"][1]) == len(planned),
        30,
        "every failure counted",
    )

    truth = failed_jobs(sim)
    every_failure = f'alb_async_jobs_failures_total{{account="{ACCOUNT}"}}'
    left_out = {(east, TOO_LONG_ID), (north, QUOTED_ID)}
    expected = set(truth) - set(scenario["history"]) - left_out
    assert {
        (east, "e2e-job-failing"),
        (east, "e2e-exemplar-4"),
        (east, LONGEST_ID),
        (north, BRACED_ID),
    } <= expected
    eventually(lambda: stored(expected, every_failure), 30, "every failed job's exemplar stored")
    # Exactly those: no history, no job twice in a series' place, none cut.
    everything = exemplar_ids(prom, "alb_async_jobs_failures_total")
    assert everything == expected, everything ^ expected
    # The counter exemplars' value is 1 and their time the job's ModifyTime; a duration
    # bucket's value is the job's duration, within the bucket's bound.
    for series in prom.exemplars(failures):
        for exemplar in series["exemplars"]:
            job = truth[(series["seriesLabels"]["region"], exemplar["labels"]["job_id"])]
            assert float(exemplar["value"]) == 1.0
            assert abs(float(exemplar["timestamp"]) - job["ModifyTime"] / 1000) < 0.002
    jobs = {key: job for region in REGIONS for key, job in sim_jobs(sim, region).items()}
    buckets = prom.exemplars(f'alb_async_job_duration_seconds_bucket{{account="{ACCOUNT}"}}')
    carried = {
        exemplar["labels"]["job_id"] for series in buckets for exemplar in series["exemplars"]
    }
    # The histogram has only `status` besides account and region: one bucket holds several
    # of these jobs, and shows the newest (on a tie of ModifyTime, the greatest id).
    assert {"e2e-exemplar-4", "e2e-job-failing", BRACED_ID} <= carried
    assert not {TOO_LONG_ID, QUOTED_ID} & carried
    for series in buckets:
        for exemplar in series["exemplars"]:
            job = jobs[(series["seriesLabels"]["region"], exemplar["labels"]["job_id"])]
            duration = (job["ModifyTime"] - job["CreateTime"]) / 1000
            assert float(exemplar["value"]) == pytest.approx(duration)
            assert duration <= float(series["seriesLabels"]["le"])
