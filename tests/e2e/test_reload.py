"""End to end: config hot reload (POST /-/reload and SIGHUP) of the real exporter process
against the real simulator process, over loopback.

Expected job numbers come from the simulator's own view of its jobs, never from the
exporter's output.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import loopback, procs
from tests.support.configs import access_key, account, write_config
from tests.support.procs import control

pytestmark = pytest.mark.e2e

KEY_ID = "LTAI5tReloadKeyId0000003"
SECRET = "reload-Secret-Value-4e5f6a7b"
REGIONS = ("cn-hangzhou", "cn-shanghai", "eu-central-1")
RELOAD_METRIC = "alb_exporter_config_last_reload_successful"
EXPIRY = "alb_exporter_credentials_expiry_timestamp_seconds"
CRED_REFRESHES = "alb_exporter_credential_refreshes_total"
JOB_LABELS = ("status", "resource_type", "api_name", "operate_type")
CACHE_TTL = 0.3  # short, so that waiting for the next scrape to refresh costs little


@pytest.fixture(scope="module")
def sim(start_simulator: procs.Simulators) -> procs.Proc:
    return start_simulator(
        REGIONS, keys={KEY_ID: SECRET}, seed=11, history="30m", jobs_per_minute=20, frozen=True
    )


def write_reload_config(
    path: Path,
    sim: procs.Proc,
    accounts: dict[str, tuple[str, ...]],
    *,
    page_size: int = 100,
    request_timeout: str = "5s",
    credentials: dict[str, object] | None = None,
) -> None:
    keys = credentials or access_key(KEY_ID, "${RELOAD_SECRET}")
    entries = [
        # Small pages over hundreds of jobs: above the default 5 calls/s per account.
        account(sim, name, regions, keys, max_requests_per_second=200)
        for name, regions in accounts.items()
    ]
    write_config(
        path, entries, cache_ttl=CACHE_TTL, page_size=page_size, request_timeout=request_timeout
    )


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    return tmp_path / "config.yaml"


@pytest.fixture
def exporter(
    sim: procs.Proc, cfg_file: Path, start_exporter: procs.Exporters
) -> Iterator[procs.Proc]:
    write_reload_config(cfg_file, sim, {"prod": ("cn-hangzhou", "cn-shanghai")})
    with start_exporter(cfg_file, env={"RELOAD_SECRET": SECRET}) as proc:
        yield proc
        assert proc.stop() == 0
        assert SECRET not in proc.output()
        assert "Traceback" not in proc.output()


def targets(samples: procs.Samples, name: str = "alb_exporter_up") -> set[tuple[str, str]]:
    return {(dict(lbl)["account"], dict(lbl)["region"]) for lbl in procs.select(samples, name)}


def exported_jobs(
    samples: procs.Samples, account: str, region: str
) -> dict[tuple[str, ...], float]:
    out = {}
    for lbl, value in procs.select(
        samples, "alb_async_jobs", account=account, region=region
    ).items():
        d = dict(lbl)
        out[tuple(d[n] for n in JOB_LABELS)] = value
    return out


def truth_jobs(sim: procs.Proc, region: str) -> dict[tuple[str, ...], float]:
    jobs = control(sim, "GET", f"/_sim/jobs?region={region}")
    counts = Counter(
        tuple(str(j.get(f) or "") for f in ("Status", "ResourceType", "ApiName", "OperateType"))
        for j in jobs
    )
    return {k: float(v) for k, v in counts.items()}


def finished(samples: procs.Samples, account: str, region: str) -> dict[frozenset[Any], float]:
    return procs.select(samples, "alb_async_jobs_finished_total", account=account, region=region)


def reload_post(proc: procs.Proc) -> httpx.Response:
    return loopback.post(proc.url + "/-/reload", timeout=30)


def scrape_after_ttl(proc: procs.Proc) -> procs.Samples:
    time.sleep(CACHE_TTL + 0.1)  # past cache_ttl, so the scrape refreshes
    return procs.scrape(proc.url)[1]


def test_post_reload_adds_a_target_and_sighup_removes_one(
    sim: procs.Proc, exporter: procs.Proc, cfg_file: Path
) -> None:
    _, samples = procs.scrape(exporter.url)
    assert targets(samples) == {("prod", "cn-hangzhou"), ("prod", "cn-shanghai")}

    write_reload_config(
        cfg_file, sim, {"prod": ("cn-hangzhou", "cn-shanghai"), "eu": ("eu-central-1",)}
    )
    r = reload_post(exporter)
    assert (r.status_code, r.text) == (200, "config reloaded\n")
    # The new target is tried at once: readiness and its series do not wait for a scrape.
    procs.wait_until(lambda: loopback.get(exporter.url + "/-/ready").status_code == 200)
    _, samples = procs.scrape(exporter.url)
    assert targets(samples) == {
        ("prod", "cn-hangzhou"),
        ("prod", "cn-shanghai"),
        ("eu", "eu-central-1"),
    }
    assert procs.select(samples, "alb_exporter_up", account="eu") == {
        frozenset({("account", "eu"), ("region", "eu-central-1")}): 1.0
    }
    assert exported_jobs(samples, "eu", "eu-central-1") == truth_jobs(sim, "eu-central-1")
    assert procs.select(samples, RELOAD_METRIC) == {frozenset(): 1.0}

    write_reload_config(cfg_file, sim, {"eu": ("eu-central-1",), "prod": ("cn-hangzhou",)})
    exporter.popen.send_signal(signal.SIGHUP)

    def shanghai_gone() -> bool:
        _, now = procs.scrape(exporter.url)
        return ("prod", "cn-shanghai") not in targets(now)

    procs.wait_until(shanghai_gone, timeout=60)  # a deadline, not a bound: busy CI
    assert "config reloaded: 2 targets" in exporter.output()
    for _ in range(3):  # late refreshes of the removed target must not bring series back
        text, samples = procs.scrape(exporter.url)
        assert 'region="cn-shanghai"' not in text
        assert targets(samples, "alb_exporter_api_requests_total") == {
            ("prod", "cn-hangzhou"),
            ("eu", "eu-central-1"),
        }
        time.sleep(0.6)
    assert exported_jobs(samples, "prod", "cn-hangzhou") == truth_jobs(sim, "cn-hangzhou")


def test_bad_config_is_rejected_and_the_old_one_keeps_serving(
    sim: procs.Proc, exporter: procs.Proc, cfg_file: Path
) -> None:
    good = cfg_file.read_text()
    cfg_file.write_text(
        good.replace("page_size: 100", "page_size: 1000").replace("- name: prod", "- nme: prod")
    )
    r = reload_post(exporter)
    assert r.status_code == 400
    assert "page_size:" in r.text and "accounts[0].nme: unknown key" in r.text
    samples = scrape_after_ttl(exporter)
    assert samples[(RELOAD_METRIC, frozenset())] == 0.0
    # The old config still serves both targets, with fresh data.
    assert targets(samples) == {("prod", "cn-hangzhou"), ("prod", "cn-shanghai")}
    assert set(procs.select(samples, "alb_exporter_up").values()) == {1.0}
    assert exported_jobs(samples, "prod", "cn-shanghai") == truth_jobs(sim, "cn-shanghai")

    # An empty account list would silently serve nothing: rejected as at startup.
    cfg_file.write_text(good.split("accounts:")[0] + "accounts: []\n")
    r = reload_post(exporter)
    assert (r.status_code, r.text) == (
        400,
        "accounts: at least one account is required (or discovery.resource_directory)\n",
    )

    # SIGHUP with a broken file: the process lives on and reports the failure.
    cfg_file.write_text("lookback: [\n")
    exporter.popen.send_signal(signal.SIGHUP)
    procs.wait_until(lambda: exporter.output().count("config reload failed") >= 3, timeout=10)
    assert exporter.popen.poll() is None
    assert loopback.get(exporter.url + "/-/healthy").status_code == 200

    cfg_file.write_text(good)
    assert reload_post(exporter).status_code == 200
    _, samples = procs.scrape(exporter.url)
    assert samples[(RELOAD_METRIC, frozenset())] == 1.0
    assert targets(samples) == {("prod", "cn-hangzhou"), ("prod", "cn-shanghai")}


def _some_jobs_finished(proc: procs.Proc, region: str) -> procs.Samples:
    """Scrapes until the region has counted a finished job (time moves on in between)."""
    holder: list[procs.Samples] = []

    def counted() -> bool:
        samples = scrape_after_ttl(proc)
        holder.append(samples)
        return sum(finished(samples, "prod", region).values()) > 0

    procs.wait_until(counted, timeout=30, interval=0)
    return holder[-1]


def test_counters_of_unchanged_targets_continue_and_global_changes_apply(
    sim: procs.Proc, exporter: procs.Proc, cfg_file: Path
) -> None:
    region = "cn-hangzhou"
    control(sim, "POST", "/_sim/time", {"advance": 900})
    before = finished(_some_jobs_finished(exporter, region), "prod", region)

    # Adding a target leaves the others as they are: their counters continue.
    write_reload_config(
        cfg_file, sim, {"prod": ("cn-hangzhou", "cn-shanghai"), "eu": ("eu-central-1",)}
    )
    assert reload_post(exporter).status_code == 200
    after = finished(scrape_after_ttl(exporter), "prod", region)
    assert set(after) >= set(before)
    assert all(after[k] >= v for k, v in before.items()), "a counter went back: it was reset"

    # Changing how the API is called (page size, timeout) rebuilds the clients but keeps
    # what was counted, and the new settings are used.
    write_reload_config(
        cfg_file,
        sim,
        {"prod": ("cn-hangzhou", "cn-shanghai"), "eu": ("eu-central-1",)},
        page_size=7,
        request_timeout="9s",
    )
    assert reload_post(exporter).status_code == 200
    samples = scrape_after_ttl(exporter)
    again = finished(samples, "prod", region)
    assert all(again[k] >= v for k, v in after.items()), "a counter went back: it was reset"
    calls = control(sim, "GET", f"/_sim/requests?region={region}")
    assert calls and calls[-1]["params"].get("MaxResults") == "7", calls[-1]
    assert exported_jobs(samples, "prod", region) == truth_jobs(sim, region)

    # And more jobs finishing are still counted on top.
    control(sim, "POST", "/_sim/time", {"advance": 900})

    def grew() -> bool:
        now = finished(scrape_after_ttl(exporter), "prod", region)
        return sum(now.values()) > sum(again.values())

    procs.wait_until(grew, timeout=30, interval=0)


def test_readiness_and_up_hold_across_a_reload_that_rebuilds_the_clients(
    sim: procs.Proc, exporter: procs.Proc, cfg_file: Path
) -> None:
    before = scrape_after_ttl(exporter)
    assert set(procs.select(before, "alb_exporter_up").values()) == {1.0}
    # The refreshes after the reload take a while (the checks below are done within a second
    # of it; stopping the exporter waits for them): what is served meanwhile must not drop.
    control(sim, "POST", "/_sim/faults", {"latency": 2.0})
    try:
        write_reload_config(
            cfg_file, sim, {"prod": ("cn-hangzhou", "cn-shanghai")}, request_timeout="9s"
        )
        assert reload_post(exporter).status_code == 200
        assert loopback.get(exporter.url + "/-/ready").status_code == 200
        # A short scrape deadline: served from what the targets hold, not waiting for them.
        r = loopback.get(
            exporter.url + "/metrics",
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.6"},
            timeout=10,
        )
        assert r.status_code == 200
        up = {
            (s.labels["account"], s.labels["region"]): s.value
            for family in text_string_to_metric_families(r.text)
            for s in family.samples
            if s.name == "alb_exporter_up"
        }
        assert up == {("prod", "cn-hangzhou"): 1.0, ("prod", "cn-shanghai"): 1.0}
    finally:
        control(sim, "DELETE", "/_sim/faults")


def test_credential_series_of_replaced_credentials_are_dropped(
    sim: procs.Proc, exporter: procs.Proc, cfg_file: Path
) -> None:
    assumed = {
        "type": "ram_role_arn",
        "role_arn": "acs:ram::2222222222222222:role/reload-e2e",
        "sts_endpoint": f"{sim.url}/sts/",
        "source": {"type": "access_key", **access_key(KEY_ID, "${RELOAD_SECRET}")},
    }
    regions = {"prod": ("cn-hangzhou", "cn-shanghai")}
    write_reload_config(cfg_file, sim, regions, credentials=assumed)
    assert reload_post(exporter).status_code == 200
    samples = scrape_after_ttl(exporter)
    assert set(procs.select(samples, "alb_exporter_up").values()) == {1.0}
    assert procs.select(samples, EXPIRY, account="prod", source="ram_role_arn")
    assert procs.select(samples, CRED_REFRESHES, account="prod", source="ram_role_arn")

    write_reload_config(cfg_file, sim, regions)  # back to long-lived keys
    assert reload_post(exporter).status_code == 200
    for _ in range(2):  # also after the first refreshes with the new keys
        samples = scrape_after_ttl(exporter)
        assert set(procs.select(samples, "alb_exporter_up").values()) == {1.0}
        assert procs.select(samples, EXPIRY) == {}
        assert procs.select(samples, CRED_REFRESHES) == {}
