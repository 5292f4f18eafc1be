"""The composition root under discovery and shutdown, found in review of issue 20 and 23:
a discovery round that ends after a reload must not undo it, and SIGTERM must not wait for
the refreshes of targets a reload replaced. In-process App, in-process simulator, loopback.
"""

from __future__ import annotations

import time
from pathlib import Path

from exporter import config, simulator
from exporter.app import App, Seams
from tests.support import procs
from tests.unit.appkit import REGIONS, start, static_keys, write_config


def _all_regions_config(path: Path, endpoint: str) -> config.Config:
    path.write_text(
        "lookback: 1h\ncache_ttl: 30s\nrequest_timeout: 5s\n"
        "discovery:\n  region: cn-hangzhou\n"
        'accounts:\n  - name: prod\n    regions: "*"\n'
        f'    endpoint: "{endpoint}/{{region}}/"\n'
        "    max_requests_per_second: 1000\n"
        "    credentials:\n" + static_keys()
    )
    return config.load(str(path), {})


def _targets(app: App) -> set[tuple[str, str]]:
    return {t.key for t in app.refresher.targets()}


def test_a_discovery_round_ending_after_a_reload_does_not_undo_it(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    app = start(apps, _all_regions_config(cfg_path, sim.url), cfg_path)
    app.discoverer.run_once()
    assert _targets(app) == {("prod", r) for r in REGIONS}
    engine = app.discoverer.engine
    assert engine is not None
    # The user lists one region by hand: discovery stops, the other target goes.
    write_config(cfg_path, sim.url)
    cfg_path.write_text(cfg_path.read_text().replace(", cn-shanghai", ""))
    assert app.reload() is None
    assert _targets(app) == {("prod", "cn-hangzhou")}
    # The round that was running when the reload came hands in its news now.
    app.discoverer.changed(engine)
    assert _targets(app) == {("prod", "cn-hangzhou")}


def test_shutdown_does_not_wait_for_the_refreshes_of_replaced_targets(
    sim: simulator.SimulatorServer, cfg_path: Path
) -> None:
    settings = {"request_timeout": "30s", "cache_ttl": "0s"}
    app = App(write_config(cfg_path, sim.url, **settings), {}, str(cfg_path), seams=Seams())
    try:
        assert app.refresher.ensure_fresh(None, timeout=10)
        before = {r: sim.simulator.request_count(r) for r in REGIONS}
        sim.simulator.set_faults(latency=20)  # the API hangs for longer than any grace period
        app.refresher.ensure_fresh(None, timeout=0)  # refreshes in flight on the old clients
        procs.wait_until(
            lambda: all(sim.simulator.request_count(r) > before[r] for r in REGIONS), timeout=5
        )
        write_config(cfg_path, sim.url, **settings, page_size=7)
        assert app.reload() is None  # every target replaced while its refresh runs
        started = time.monotonic()
        app.close()
        # The hang is 20 s: ending well within it means the old clients' calls were
        # cancelled, not waited for.
        assert time.monotonic() - started < 5
    finally:
        sim.simulator.clear_faults()


def _finished(app: App, region: str) -> float:
    return sum(
        s.value
        for family in app.exposition.collect()
        for s in family.samples
        if s.name == "alb_async_jobs_finished_total" and s.labels["region"] == region
    )


def test_a_target_that_comes_after_start_up_continues_its_saved_counters(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App], tmp_path: Path
) -> None:
    """A target the state file has but the running config gets only later (discovery
    finds it, a move to `regions: "*"` before the first listing) keeps its counters, and
    the saves made meanwhile do not drop them."""
    settings = {"cache_ttl": "0s", "state_file": str(tmp_path / "state.json")}
    before = start(apps, write_config(cfg_path, sim.url, **settings), cfg_path)
    assert before.refresher.ensure_fresh(None, timeout=10)
    for n in range(3):
        sim.simulator.upsert_job("cn-shanghai", Id=f"job-{n}", Status="Succeeded")
    assert before.refresher.ensure_fresh(None, timeout=10)
    assert _finished(before, "cn-shanghai") == 3
    before.close()
    # Restarted with cn-shanghai not (yet) among the targets; a refresh and a save pass.
    write_config(cfg_path, sim.url, **settings)
    cfg_path.write_text(cfg_path.read_text().replace(", cn-shanghai", ""))
    after = start(apps, config.load(str(cfg_path), {}), cfg_path)
    assert after.refresher.ensure_fresh(None, timeout=10)
    assert after.state is not None
    after.state.save(after.refresher.targets())
    # It comes back.
    write_config(cfg_path, sim.url, **settings)
    assert after.reload() is None
    assert after.refresher.ensure_fresh(None, timeout=10)
    assert _finished(after, "cn-shanghai") == 3
