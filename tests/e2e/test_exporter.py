"""End to end: the real exporter process against the real simulator process, over loopback.

Expected values come from the simulator's own view of its jobs (its control API), never
from the exporter's output.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from exporter.metrics.table import METRICS
from tests.support import loopback, procs, promtool
from tests.support.configs import UNPACED, access_key, account, write_config
from tests.support.procs import control

pytestmark = pytest.mark.e2e

ACCESS_KEY_ID = "LTAI5tE2eTestKeyId000001"
SECRET = "e2e-Secret-Value-9f8a7b6c5d"
WRONG_SECRET = "e2e-Wrong-Secret-0a1b2c3d4e"
ENV_KEY_ID = "LTAI5tE2eEnvKeyId0000002"
ENV_SECRET = "e2e-Env-Secret-1122334455"
SIM_KEYS = {ACCESS_KEY_ID: SECRET, ENV_KEY_ID: ENV_SECRET}  # the prod and the env account's
REGIONS = ("cn-hangzhou", "cn-shanghai")  # prod's; the env account's is eu-central-1
CACHE_TTL = 0.3  # short, so that waiting for the next scrape to refresh costs little
PAST_TTL = CACHE_TTL + 0.1  # a sleep after which the next scrape refreshes


@pytest.fixture(scope="module")
def sim(start_simulator: procs.Simulators) -> procs.Proc:
    regions = (*REGIONS, "eu-central-1")
    return start_simulator(
        regions, keys=SIM_KEYS, seed=7, history="30m", jobs_per_minute=20, frozen=True
    )


def truth(sim: procs.Proc, region: str) -> list[dict[str, Any]]:
    return control(sim, "GET", f"/_sim/jobs?region={region}")  # type: ignore[no-any-return]


def prod_config(tmp: Path, sim: procs.Proc, *extra_accounts: dict[str, object]) -> Path:
    prod = account(sim, "prod", REGIONS, access_key(ACCESS_KEY_ID, "${E2E_SECRET}"), **UNPACED)
    # These tests jump the simulator's clock by minutes while the exporter's moves by seconds,
    # so backed-off re-checks of Processing jobs would not be due yet: page the whole window
    # on every refresh (refreshes are at least CACHE_TTL apart). Incremental refreshes are
    # covered by test_incremental and test_restart_e2e.
    return write_config(
        tmp / "config.yaml",
        [prod, *extra_accounts],
        cache_ttl=CACHE_TTL,
        full_resync_interval=CACHE_TTL / 3,
    )


def declared(text: str, name: str) -> bool:
    """Whether the exposition declares the family (counters may be typed without _total)."""
    return f"# TYPE {name} " in text or f"# TYPE {name.removesuffix('_total')} counter" in text


def exporter_env() -> dict[str, str]:
    return {"E2E_SECRET": SECRET}


def key(job: dict[str, Any], *fields: str) -> tuple[str, ...]:
    return tuple(str(job.get(f) or "") for f in fields)


JOB_LABELS = ("status", "resource_type", "api_name", "operate_type")
JOB_FIELDS = ("Status", "ResourceType", "ApiName", "OperateType")


def exported(samples: procs.Samples, name: str, region: str, labels: tuple[str, ...]) -> dict:
    out = {}
    for lbl, value in procs.select(samples, name, account="prod", region=region).items():
        d = dict(lbl)
        out[tuple(d[n] for n in labels)] = value
    return out


@pytest.fixture(scope="module")
def exporter(
    sim: procs.Proc, tmp_path_factory: pytest.TempPathFactory, start_exporter: procs.Exporters
) -> procs.Proc:
    return start_exporter(prod_config(tmp_path_factory.mktemp("e2e"), sim), env=exporter_env())


def test_job_gauges_equal_the_simulators_count_per_label_set(
    sim: procs.Proc, exporter: procs.Proc
) -> None:
    _, samples = procs.scrape(exporter.url)
    for region in REGIONS:
        jobs = truth(sim, region)
        assert jobs, "the simulator should have history to compare against"
        want = Counter(key(j, *JOB_FIELDS) for j in jobs)
        assert exported(samples, "alb_async_jobs", region, JOB_LABELS) == {
            k: float(v) for k, v in want.items()
        }
        failed = Counter(
            key(j, "ResourceType", "ApiName", "ErrorCode") for j in jobs if j["Status"] == "Failed"
        )
        assert exported(
            samples, "alb_async_jobs_failed", region, ("resource_type", "api_name", "error_code")
        ) == {k: float(v) for k, v in failed.items()}
        oldest: dict[tuple[str, ...], float] = {}
        for j in jobs:
            if j["Status"] == "Processing":
                k = key(j, "ResourceType", "ApiName")
                oldest[k] = min(oldest.get(k, float("inf")), j["CreateTime"] / 1000)
        assert exported(
            samples,
            "alb_async_job_processing_oldest_created_timestamp_seconds",
            region,
            ("resource_type", "api_name"),
        ) == pytest.approx(oldest)
        assert procs.select(samples, "alb_exporter_up", account="prod", region=region)
        assert set(
            procs.select(samples, "alb_exporter_up", account="prod", region=region).values()
        ) == {1.0}


def test_counters_count_each_finished_job_once(sim: procs.Proc, exporter: procs.Proc) -> None:
    region = REGIONS[0]
    _, before = procs.scrape(exporter.url)
    start_counts = exported(before, "alb_async_jobs_finished_total", region, JOB_LABELS)
    # At the first refresh nothing was counted (jobs already finished then are history).
    assert start_counts and set(start_counts.values()) == {0.0}
    seen = {j["Id"]: j for j in truth(sim, region)}

    control(sim, "POST", "/_sim/time", {"advance": 900})
    time.sleep(PAST_TTL)
    _, after = procs.scrape(exporter.url)
    now = {j["Id"]: j for j in truth(sim, region)}
    want: Counter[tuple[str, ...]] = Counter()
    for job_id, job in now.items():
        if job["Status"] == "Processing":
            continue
        previous = seen.get(job_id)
        if previous is None or previous["Status"] == "Processing":
            want[key(job, *JOB_FIELDS)] += 1
    assert sum(want.values()) > 0, "advancing 15 minutes should finish some jobs"
    got = {
        k: v
        for k, v in exported(after, "alb_async_jobs_finished_total", region, JOB_LABELS).items()
        if v
    }
    assert got == {k: float(v) for k, v in want.items()}

    # Scraping again without any change must not count anything twice.
    time.sleep(PAST_TTL)
    _, again = procs.scrape(exporter.url)
    assert exported(again, "alb_async_jobs_finished_total", region, JOB_LABELS) == exported(
        after, "alb_async_jobs_finished_total", region, JOB_LABELS
    )


@pytest.mark.tools
def test_every_spec_family_is_exposed_and_promtool_accepts_it(exporter: procs.Proc) -> None:
    text, _ = procs.scrape(exporter.url)
    for spec in METRICS:
        assert declared(text, spec.name), spec.name
    # Creation-time series would double the counters' cardinality for nothing.
    assert not re.search(r"^\w+_created[ {]", text, re.M)
    assert not (found := promtool.problems(text)), found


def test_openmetrics_is_served_when_asked_for(exporter: procs.Proc) -> None:
    r = loopback.get(
        exporter.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_probe_serves_one_target_and_rejects_unknown(exporter: procs.Proc) -> None:
    _, samples = procs.scrape(exporter.url, "/probe?account=prod&region=cn-shanghai")
    regions = {dict(lbl).get("region") for (_, lbl) in samples if dict(lbl).get("region")}
    assert regions == {"cn-shanghai"}
    assert loopback.get(exporter.url + "/probe?account=prod&region=nowhere").status_code == 400


def test_health_endpoints_and_landing_page(exporter: procs.Proc) -> None:
    assert loopback.get(exporter.url + "/-/healthy").status_code == 200
    assert loopback.get(exporter.url + "/-/ready").status_code == 200
    page = loopback.get(exporter.url + "/")
    assert page.status_code == 200
    assert "prod" in page.text and "cn-hangzhou" in page.text and "/metrics" in page.text


def test_secrets_never_appear_in_logs_pages_or_errors(
    sim: procs.Proc, tmp_path: Path, start_exporter: procs.Exporters
) -> None:
    cfg = prod_config(
        tmp_path,
        sim,
        account(
            sim, "wrong-secret", ["cn-hangzhou"], access_key(ACCESS_KEY_ID, WRONG_SECRET), **UNPACED
        ),
        account(sim, "from-env", ["eu-central-1"], signature="v1", **UNPACED),
    )
    env = {
        **exporter_env(),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": ENV_KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ENV_SECRET,
    }
    with start_exporter(cfg, env=env) as proc:
        answers = []
        for _ in range(3):
            time.sleep(PAST_TTL)
            text, samples = procs.scrape(proc.url)
            answers.append(text)
        for path in (
            "/",
            "/-/ready",
            "/-/healthy",
            "/probe?account=wrong-secret&region=cn-hangzhou",
            "/probe?account=x&region=y",
            "/nope",
        ):
            answers.append(loopback.get(proc.url + path).text)
        answers.append(loopback.post(proc.url + "/-/reload").text)
        up = {
            dict(lbl)["account"]: v for lbl, v in procs.select(samples, "alb_exporter_up").items()
        }
        assert up == {"prod": 1.0, "wrong-secret": 0.0, "from-env": 1.0}
        codes = procs.select(samples, "alb_exporter_api_requests_total", account="wrong-secret")
        assert any(
            dict(lbl)["code"] == "SignatureDoesNotMatch" and v > 0 for lbl, v in codes.items()
        )
        assert proc.stop() == 0
        logs = proc.output()
    assert "SignatureDoesNotMatch" in logs
    # Logged clearly once at error, not on every scrape.
    assert (
        sum(
            1
            for line in logs.splitlines()
            if "level=error" in line and "SignatureDoesNotMatch" in line
        )
        == 1
    )
    assert "level=debug" in logs  # the run really was at debug level
    for secret in (SECRET, WRONG_SECRET, ENV_SECRET):
        assert secret not in logs
        for answer in answers:
            assert secret not in answer


def test_once_prints_the_exposition_and_reports_failure_by_exit_code(
    sim: procs.Proc, tmp_path: Path
) -> None:
    once = ["-m", "exporter", "--config.file", str(prod_config(tmp_path, sim)), "--once"]
    ok = procs.run(once, {"E2E_SECRET": SECRET, "PATH": "/usr/bin:/bin"}, inherit=False)
    assert ok.returncode == 0, ok.stderr
    assert 'alb_exporter_up{account="prod",region="cn-hangzhou"} 1.0' in ok.stdout
    bad = procs.run(once, {"E2E_SECRET": "not-the-secret", "PATH": "/usr/bin"}, inherit=False)
    assert bad.returncode == 1
    assert 'alb_exporter_up{account="prod",region="cn-hangzhou"} 0.0' in bad.stdout


def test_bad_config_is_one_line_per_problem_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("lookback: 5x\naccounts:\n  - name: a\n    regions: ['']\n    signatur: v1\n")
    r = procs.run(["-m", "exporter", "--config.file", str(cfg)], timeout=30)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert any(line.startswith("alb-jobs-exporter: error: lookback:") for line in lines)
    assert any("accounts[0].regions[0]:" in line for line in lines)
    assert any("accounts[0].signatur:" in line for line in lines)


def test_check_config_summarises_without_secrets(sim: procs.Proc, tmp_path: Path) -> None:
    cfg = prod_config(tmp_path, sim)
    r = procs.run(
        ["-m", "exporter", "--config.file", str(cfg), "--check-config"],
        {"E2E_SECRET": SECRET},
        inherit=False,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "prod" in r.stdout and "cn-shanghai" in r.stdout
    assert SECRET not in r.stdout + r.stderr


def test_sigterm_stops_gracefully(
    sim: procs.Proc, tmp_path: Path, start_exporter: procs.Exporters
) -> None:
    cfg = prod_config(tmp_path, sim)
    with start_exporter(cfg, env=exporter_env(), ready=False) as proc:
        procs.scrape(proc.url)
        assert proc.stop() == 0
        assert "stopped" in proc.output()


def test_demo_serves_every_job_family_within_15_seconds() -> None:
    started = time.monotonic()
    # The listen address comes from the environment, as `make demo` users set it.
    with procs.start(
        ["-m", "exporter", "--demo"], env={"ALB_EXPORTER_LISTEN": "127.0.0.1:0"}
    ) as proc:
        families = [m.name for m in METRICS if m.name.startswith("alb_async_job")]

        def complete() -> bool:
            text = loopback.get(proc.url + "/metrics", timeout=15).text
            return all(declared(text, name) for name in families) and "alb_async_jobs{" in text

        procs.wait_until(complete, timeout=15 - (time.monotonic() - started))
