"""The wiring (exporter.app): what a reload keeps, replaces and cleans up, and the state
file hook. The App runs in-process against the in-process simulator over loopback."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from exporter import config, simulator
from exporter.app import App, Seams
from exporter.jobs.model import Job
from exporter.jobs.target import Target, TargetKey
from exporter.wire import PROCESSING
from exporter.wiring import Gate
from tests.support import procs
from tests.unit.appkit import KEY_ID, REGIONS, SECRET, start, static_keys, write_config

KEYS: list[TargetKey] = [("prod", r) for r in REGIONS]
ROLE = "acs:ram::2222222222222222:role/cli-reload"
EXPIRY = "alb_exporter_credentials_expiry_timestamp_seconds"
REFRESHES = "alb_exporter_credential_refreshes_total"


def assumed_role(sim: simulator.SimulatorServer) -> str:
    return (
        f"      type: ram_role_arn\n      role_arn: {ROLE}\n"
        f'      sts_endpoint: "{sim.url}/sts/"\n'
        "      source:\n        type: access_key\n"
        f"        access_key_id: {KEY_ID}\n        access_key_secret: {SECRET}\n"
    )


def targets_of(app: App) -> dict[TargetKey, Target]:
    return {t.key: t for t in app.refresher.targets()}


def value(app: App, name: str, **labels: str) -> float | None:
    return app.exposition.get_sample_value(name, labels)


# --- hooks for web -----------------------------------------------------------------------


def test_the_landing_page_links_the_telemetry_path_given_to_the_app(
    cfg_path: Path, apps: list[App]
) -> None:
    cfg = write_config(cfg_path, "http://127.0.0.1:9")
    app = App(cfg, {}, str(cfg_path), telemetry_path="/custom/metrics")
    apps.append(app)
    assert app.landing().telemetry_path == "/custom/metrics"


def test_the_landing_page_links_each_recent_failure_by_job_events_link(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    region = REGIONS[0]
    long_id = "J" * 300  # shown cut to 256 characters: a link would search for another id
    for job_id in ("J-1/&?", long_id):
        sim.simulator.upsert_job(region, Id=job_id, Status="Failed", ErrorCode="Conflict.Lock")
    link = '{link: "https://grafana.example/explore?q={job_id}"}'
    app = start(apps, write_config(cfg_path, sim.url, job_events=link), cfg_path)
    assert app.refresher.ensure_fresh(None, timeout=10)
    failures = {f.job_id: f.link for f in app.landing().failures}
    assert failures["J-1/&?"] == "https://grafana.example/explore?q=J-1%2F%26%3F"
    assert failures[long_id[:255] + "…"] == ""
    others = [i for i in failures if i not in ("J-1/&?", long_id[:255] + "…")]
    assert others, "the simulator's own failures are listed too"
    assert all(failures[i] == f"https://grafana.example/explore?q={i}" for i in others)


def test_process_and_python_metrics_are_on_metrics_not_on_probe(
    cfg_path: Path, apps: list[App], sim: simulator.SimulatorServer
) -> None:
    app = start(apps, write_config(cfg_path, sim.url), cfg_path)
    assert (value(app, "process_resident_memory_bytes") or 0) > 1_000_000
    assert (value(app, "process_open_fds") or 0) > 0
    families = {m.name for m in app.exposition.collect()}
    assert {"process_cpu_seconds", "python_info", "python_gc_collections"} <= families
    probed = app.probe("prod", REGIONS[0], 10.0)
    assert not isinstance(probed, type(None))
    per_target = {m.name for m in probed.collect()}  # type: ignore[union-attr]
    assert per_target and not {n for n in per_target if n.startswith(("process_", "python_"))}


# --- reload ------------------------------------------------------------------------------


def test_reload_of_a_global_setting_keeps_readiness_up_and_counters(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    app = start(apps, write_config(cfg_path, sim.url), cfg_path)
    assert app.refresher.ensure_fresh(None, timeout=10)
    assert app.is_ready() and app.all_up()
    before = targets_of(app)
    # The warm-up refresh after the reload is slow: what is served meanwhile must not drop.
    sim.simulator.set_faults(latency=1.0)
    write_config(cfg_path, sim.url, request_timeout="9s")
    assert app.reload() is None
    after = targets_of(app)
    assert all(after[k] is not before[k] for k in KEYS)  # new clients for the new timeout
    assert all(after[k].store is before[k].store for k in KEYS)  # same jobs, same counters
    assert app.is_ready()
    assert app.all_up()
    assert all(after[k].status() == before[k].status() for k in KEYS)


def test_reload_keeps_unchanged_targets_fresh(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    app = start(apps, write_config(cfg_path, sim.url), cfg_path)
    assert app.refresher.ensure_fresh(None, timeout=10)
    calls = len(sim.simulator.requests())
    write_config(cfg_path, sim.url, recent_failures=10)  # the default: nothing changes
    assert app.reload() is None
    assert app.refresher.ensure_fresh(None, timeout=10)
    assert len(sim.simulator.requests()) == calls


def test_reload_applies_processing_max_age_to_the_store_it_keeps(
    cfg_path: Path, apps: list[App]
) -> None:
    # Nothing listens there: refreshes fail at once and leave the store to this test.
    endpoint = "http://127.0.0.1:9"
    app = start(apps, write_config(cfg_path, endpoint, processing_max_age="3h"), cfg_path)
    key = KEYS[0]
    store = targets_of(app)[key].store
    t0 = time.time()
    stuck = Job(
        id="stuck",
        api_name="CreateListener",
        operate_type="Create",
        resource_type="listener",
        resource_id="lsn-1",
        status=PROCESSING,
        error_code="",
        error_message="",
        create_time=t0 - 1800,
        modify_time=t0 - 1800,
    )
    store.update([stuck], (), t0, complete=False)
    write_config(cfg_path, endpoint, processing_max_age="1h")
    assert app.reload() is None
    assert app.refresher.ensure_fresh(None, timeout=10)  # the warm-up, failed
    assert targets_of(app)[key].store is store
    # 90 minutes old: still tracked under 3h, given up under the reloaded 1h.
    store.update([], (), t0 + 3600, complete=False)
    assert store.processing_ids() == set()


def _families(app: App) -> dict[str, list[dict[str, str]]]:
    """Sample name -> label sets of the app's exposition."""
    out: dict[str, list[dict[str, str]]] = {}
    for family in app.exposition.collect():
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def test_reload_applies_the_metrics_block_in_place(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    app = start(apps, write_config(cfg_path, sim.url), cfg_path)
    assert app.refresher.ensure_fresh(None, timeout=10)
    before = targets_of(app)
    finished = {k: dict(t.snapshot().finished_total) for k, t in before.items()}
    buckets = _families(app)["alb_async_job_duration_seconds_bucket"]
    assert {tuple(sorted(b)) for b in buckets} == {("account", "le", "region", "status")}
    assert "alb_async_jobs_failed" in _families(app)

    metrics = (
        "{duration_buckets: [10, 1m], duration_labels: [api_name, status],"
        " disable: [alb_async_jobs_failed]}"
    )
    write_config(cfg_path, sim.url, metrics=metrics)
    assert app.reload() is None

    after = targets_of(app)
    assert all(after[k] is before[k] for k in KEYS)  # not even rebuilt: no re-page-through
    assert {k: dict(t.snapshot().finished_total) for k, t in after.items()} == finished
    families = _families(app)
    assert "alb_async_jobs_failed" not in families
    buckets = families["alb_async_job_duration_seconds_bucket"]
    assert {b["le"] for b in buckets} == {"10.0", "60.0", "+Inf"}
    assert {tuple(sorted(b)) for b in buckets} == {
        ("account", "api_name", "le", "region", "status")
    }
    # /probe builds its own collector: it follows the reloaded block too.
    probe = app.probe(*KEYS[0], budget=5)
    assert probe is not None
    assert probe.get_sample_value("alb_async_jobs_failed", {}) is None
    assert all(
        "api_name" in s.labels
        for f in probe.collect()
        for s in f.samples
        if s.name.startswith("alb_async_job_duration_seconds_")
    )


def test_an_empty_bucket_list_hides_the_histogram_and_turning_it_back_loses_nothing(
    cfg_path: Path, apps: list[App]
) -> None:
    endpoint = "http://127.0.0.1:9"  # refreshes fail at once: the store is the test's
    app = start(apps, write_config(cfg_path, endpoint), cfg_path)
    store = targets_of(app)[KEYS[0]].store
    t0 = time.time()
    running = Job("j", "CreateRule", "Create", "rule", "rule-1", PROCESSING, "", "", t0, t0)
    store.update([running], (), t0)
    store.update([replace(running, status="Succeeded", modify_time=t0 + 7)], (), t0 + 10)
    app.exposition.publish(targets_of(app)[KEYS[0]])  # as the refresh hook does
    count = "alb_async_job_duration_seconds_count"
    labels = {"account": "prod", "region": KEYS[0][1], "status": "Succeeded"}
    assert value(app, count, **labels) == 1

    write_config(cfg_path, endpoint, metrics="{duration_buckets: []}")
    assert app.reload() is None
    assert count not in _families(app)

    write_config(cfg_path, endpoint)
    assert app.reload() is None
    assert value(app, count, **labels) == 1
    assert value(app, "alb_async_job_duration_seconds_bucket", **labels, le="10.0") == 1


def test_a_bad_metrics_block_is_refused_and_the_running_one_kept(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    app = start(apps, write_config(cfg_path, sim.url), cfg_path)
    assert app.refresher.ensure_fresh(None, timeout=10)
    cfg_path.write_text("metrics: {disable: [alb_exporter_up]}\n" + cfg_path.read_text())
    error = app.reload()
    assert error is not None and error.startswith("metrics.disable[0]: ")
    assert value(app, "alb_exporter_config_last_reload_successful") == 0
    assert "alb_async_job_duration_seconds_bucket" in _families(app)
    assert app.cfg.metrics == config.MetricsConfig()


def test_reload_resizes_the_refresh_pool(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    app = start(apps, write_config(cfg_path, sim.url, max_concurrent_refreshes=1), cfg_path)
    assert app.refresher.ensure_fresh(None, timeout=10)
    write_config(cfg_path, sim.url, max_concurrent_refreshes=2, cache_ttl="0s")
    assert app.reload() is None
    assert app.refresher.ensure_fresh(None, timeout=10)
    # Every answer now takes 2.5 s. With one worker the second region's request could only
    # arrive after the first answer; with two, both regions are asked at once. (Closing the
    # app at the end waits for these answers: the latency is what the test costs.)
    sim.simulator.set_faults(latency=2.5)
    before = {r: sim.simulator.request_count(r) for r in REGIONS}
    app.refresher.ensure_fresh(None, timeout=0)
    procs.wait_until(
        lambda: all(sim.simulator.request_count(r) > before[r] for r in REGIONS), timeout=2
    )
    sim.simulator.clear_faults()


def test_reload_closes_a_replaced_client_only_after_its_refresh_ends(
    sim: simulator.SimulatorServer,
    cfg_path: Path,
    apps: list[App],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every refresh pages through the whole window (a full resync each time), 5 jobs a page.
    settings = {"page_size": 5, "full_resync_interval": 0.001, "cache_ttl": "0s"}
    app = start(apps, write_config(cfg_path, sim.url, **settings), cfg_path)
    assert app.refresher.ensure_fresh(None, timeout=10)
    old = targets_of(app)
    statuses = {k: t.status() for k, t in old.items()}
    sim.simulator.set_faults(latency=0.1)
    assert not app.refresher.ensure_fresh(None, timeout=0.3)  # paging, several pages to go
    # Smaller pages: the new targets' refreshes (same stores) take longer than what is left
    # of the old ones', which therefore finish first and are not superseded by them (a
    # superseded refresh leaves its target's status as it was).
    write_config(cfg_path, sim.url, **{**settings, "page_size": 3})
    with caplog.at_level(logging.WARNING):
        assert app.reload() is None
        procs.wait_until(lambda: all(old[k].status() is not statuses[k] for k in KEYS))
    # The old clients served their refreshes to the end.
    assert all(old[k].status().up for k in KEYS), [old[k].status() for k in KEYS]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_changed_credentials_drop_the_old_sources_series(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    sim.simulator.sts_ttl = 30.0  # the provider fetches anew 20 s after each fetch
    now = [0.0]  # seconds the App's clock is ahead of the real one
    cfg = write_config(cfg_path, sim.url, assumed_role(sim))
    app = start(apps, cfg, cfg_path, Seams(clock=lambda: time.time() + now[0]))
    assert app.refresher.ensure_fresh(None, timeout=10)
    assert app.all_up()
    expiry = value(app, EXPIRY, account="prod", source="ram_role_arn")
    assert expiry is not None and expiry > time.time()
    assert value(app, REFRESHES, account="prod", source="ram_role_arn", code="OK") == 1
    # The provider the old clients sign with (a refresh in flight keeps using it).
    old_provider = app.credentials["prod"].provider
    assert not isinstance(old_provider, Exception)

    write_config(cfg_path, sim.url, static_keys())
    assert app.reload() is None
    assert value(app, EXPIRY, account="prod", source="ram_role_arn") is None
    assert value(app, REFRESHES, account="prod", source="ram_role_arn", code="OK") is None
    # A fetch of the replaced provider finishing after the reload does not bring them back.
    fetches = len(sim.simulator.identity_calls())
    now[0] += 25.0  # past the refresh point of the 30 s credential, not its expiry
    old_provider.get()
    assert len(sim.simulator.identity_calls()) == fetches + 1
    assert value(app, EXPIRY, account="prod", source="ram_role_arn") is None
    assert value(app, REFRESHES, account="prod", source="ram_role_arn", code="OK") is None
    assert app.refresher.ensure_fresh(None, timeout=10)
    assert app.all_up()


def test_unchanged_credentials_keep_their_provider_and_series(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    app = start(apps, write_config(cfg_path, sim.url, assumed_role(sim)), cfg_path)
    assert app.refresher.ensure_fresh(None, timeout=10)
    expiry = value(app, EXPIRY, account="prod", source="ram_role_arn")
    fetches = len(sim.simulator.identity_calls())
    write_config(cfg_path, sim.url, assumed_role(sim), page_size=50)
    assert app.reload() is None
    assert app.refresher.ensure_fresh(None, timeout=10)
    # No second AssumeRole: the rebuilt targets use the provider they had.
    assert len(sim.simulator.identity_calls()) == fetches
    assert value(app, REFRESHES, account="prod", source="ram_role_arn", code="OK") == 1
    assert value(app, EXPIRY, account="prod", source="ram_role_arn") == expiry


def test_gate_drops_observations_once_closed() -> None:
    seen: list[tuple[str, float]] = []
    gate = Gate(lambda code, seconds: seen.append((code, seconds)))
    gate("OK", 1.0)
    gate.close()
    gate("OK", 2.0)
    assert seen == [("OK", 1.0)]


def test_concurrent_reloads_and_scrapes_do_not_crash(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    app = start(apps, write_config(cfg_path, sim.url, cache_ttl="0s"), cfg_path)
    stop = threading.Event()
    errors: list[BaseException] = []

    def scrape() -> None:
        while not stop.is_set():
            try:
                app.prepare_scrape(5)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=scrape) for _ in range(3)]
    for th in threads:
        th.start()
    try:
        for size in (10, 20, 30, 40):
            write_config(cfg_path, sim.url, cache_ttl="0s", page_size=size)
            assert app.reload() is None
            time.sleep(0.05)
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert errors == []
    assert app.refresher.ensure_fresh(None, timeout=10)
    assert app.all_up()


def unwritable_state_file(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> tuple[App, Path]:
    """An App whose state file cannot be written (a file where its folder should be),
    saving at once when asked; and that file."""
    blocker = cfg_path.parent / "not-a-dir"
    blocker.write_text("a file where the state file's folder should be")
    cfg = write_config(cfg_path, sim.url, cache_ttl="0s", state_file=f"{blocker}/state.json")
    return start(apps, cfg, cfg_path, Seams(state_debounce=0)), blocker


def test_an_unwritable_state_file_is_one_error_line_not_one_per_refresh(
    sim: simulator.SimulatorServer,
    cfg_path: Path,
    apps: list[App],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, blocker = unwritable_state_file(sim, cfg_path, apps)
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        for _ in range(4):
            assert app.refresher.ensure_fresh(None, timeout=10)
            assert app.state_writer is not None and app.state_writer.wait_idle(10)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(":")[0] for r in errors] == [
        f"cannot write state file {blocker}/state.json"
    ]
    assert all(r.exc_info is None for r in errors)  # an operator problem, not a traceback
    assert all(t.status().up for t in app.refresher.targets())


class _SlowHandler(logging.Handler):
    """Holds the thread logging a record for a while, as a slow log sink would."""

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0.2)


def test_refreshes_finishing_together_report_an_unwritable_state_file_once(
    sim: simulator.SimulatorServer,
    cfg_path: Path,
    apps: list[App],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _ = unwritable_state_file(sim, cfg_path, apps)
    # The hook as the refresh pool's workers call it, eight at once. The slow handler
    # holds the first reporter between its check and its set of the last error, where
    # the others would slip in unless that step is serialised.
    release = threading.Barrier(8, timeout=10)

    def finish(target: Target) -> None:
        release.wait()
        app.after_refresh(target)

    exporter_log = logging.getLogger("exporter")
    slow = _SlowHandler(logging.ERROR)
    exporter_log.addHandler(slow)
    try:
        with caplog.at_level(logging.ERROR, logger="exporter"):
            assert app.refresher.ensure_fresh(None, timeout=10)
            target = app.refresher.targets()[0]
            threads = [threading.Thread(target=finish, args=(target,)) for _ in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(timeout=10)
            assert app.state_writer is not None and app.state_writer.wait_idle(10)
    finally:
        exporter_log.removeHandler(slow)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors


def test_a_throttled_region_pauses_and_slows_down_alone(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    # ALB's quota scope is account x region x API: one region's Throttling with a long
    # x-acs-retry-after must not hold up the account's other regions (SPEC: the budget
    # is per region). With one bucket per account the healthy region would wait 30 s.
    app = start(apps, write_config(cfg_path, sim.url, cache_ttl="0s"), cfg_path)
    throttled, healthy = KEYS
    sim.simulator.set_faults(throttled[1], throttle_every=1, retry_after_ms=30_000)
    assert app.refresher.ensure_fresh([throttled], timeout=10)
    assert targets_of(app)[throttled].status().last_error is not None
    assert "Throttling" in (targets_of(app)[throttled].status().last_error or "")
    requests = sim.simulator.request_count(healthy[1])
    assert app.refresher.ensure_fresh([healthy], timeout=5)
    assert targets_of(app)[healthy].status().up
    assert sim.simulator.request_count(healthy[1]) > requests
    # And the halving: the throttled region's budget is cut, the healthy one's is whole.
    assert app.request_budgets[throttled].rate < app.request_budgets[throttled].max_rate
    assert app.request_budgets[healthy].rate == app.request_budgets[healthy].max_rate == 1000
    sim.simulator.clear_faults()
