"""Sharding in the command line and the wiring: the `--shard.*` flags, which targets an App
refreshes and serves, /probe of another shard's target, reloads and `--check-config`.

The owners come from tests/unit/config/test_shard.py's worked examples (computed with
`sha256sum`): with 3 shards, prod/cn-hangzhou -> 1, prod/cn-shanghai -> 1,
prod/eu-central-1 -> 0, staging/cn-hangzhou -> 2, staging/eu-central-1 -> 1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import cli, config, simulator
from exporter.app import App
from exporter.config import Shard
from exporter.web import OtherShard

KEY_ID = "LTAI5tShardTestKeyId0001"
SECRET = "shard-Secret-Value-0a1b2c"
REGIONS = ("cn-hangzhou", "cn-shanghai", "eu-central-1")
PROD = ("cn-hangzhou", "cn-shanghai", "eu-central-1")
STAGING = ("cn-hangzhou", "eu-central-1")
OWNED_BY = {
    0: {("prod", "eu-central-1")},
    1: {("prod", "cn-hangzhou"), ("prod", "cn-shanghai"), ("staging", "eu-central-1")},
    2: {("staging", "cn-hangzhou")},
}


@pytest.fixture
def sim() -> Iterator[simulator.SimulatorServer]:
    alb = simulator.Simulator(
        REGIONS, seed=3, jobs_per_minute=6, history_seconds=600, credentials={KEY_ID: SECRET}
    )
    with simulator.SimulatorServer(alb) as server:
        yield server


def write_config(
    path: Path, endpoint: str, accounts: dict[str, tuple[str, ...]] | None = None
) -> Path:
    accounts = accounts or {"prod": PROD, "staging": STAGING}
    text = "lookback: 1h\ncache_ttl: 30s\nrequest_timeout: 5s\naccounts:\n"
    for name, regions in accounts.items():
        text += (
            f"  - name: {name}\n    regions: [{', '.join(regions)}]\n"
            f'    endpoint: "{endpoint}/{{region}}/"\n    max_requests_per_second: 1000\n'
            f"    credentials: {{access_key_id: {KEY_ID}, access_key_secret: {SECRET}}}\n"
        )
    path.write_text(text)
    return path


def start(apps: list[App], path: Path, shard: Shard) -> App:
    app = App(config.load(str(path), {}), {}, str(path), shard=shard)
    apps.append(app)
    return app


def served(app: App) -> set[tuple[str, str]]:
    return {t.key for t in app.refresher.targets()}


# --- the wiring --------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_shard_refreshes_and_lists_only_its_own_targets(
    index: int, sim: simulator.SimulatorServer, tmp_path: Path, apps: list[App]
) -> None:
    app = start(apps, write_config(tmp_path / "c.yaml", sim.url), Shard(index, 3))
    assert served(app) == OWNED_BY[index]
    assert app.refresher.ensure_fresh(None, timeout=10) and app.is_ready() and app.all_up()
    # The defect sharding fixes: every replica listing every target. Here the simulator
    # saw only this shard's regions (the key is shared, so regions are what differ).
    listed = {r["region"] for r in sim.simulator.requests()}
    assert listed == {region for _, region in OWNED_BY[index]}
    ups = {
        (s.labels["account"], s.labels["region"])
        for family in app.exposition.collect()
        if family.name == "alb_exporter_up"
        for s in family.samples
    }
    assert ups == OWNED_BY[index]
    assert app.exposition.get_sample_value("alb_exporter_shard_ordinal") == index
    assert app.exposition.get_sample_value("alb_exporter_shard_count") == 3
    landing = app.landing()
    assert (landing.shard_index, landing.shard_count, landing.configured_targets) == (index, 3, 5)


def test_probe_answers_own_targets_names_the_owner_of_others_and_rejects_unknown(
    sim: simulator.SimulatorServer, tmp_path: Path, apps: list[App]
) -> None:
    app = start(apps, write_config(tmp_path / "c.yaml", sim.url), Shard(1, 3))
    own = app.probe("staging", "eu-central-1", 10)
    assert own is not None and not isinstance(own, OtherShard)
    assert (
        own.get_sample_value("alb_exporter_up", {"account": "staging", "region": "eu-central-1"})
        == 1
    )
    assert app.probe("staging", "cn-hangzhou", 10) == OtherShard(owner=2, count=3, this=1)
    assert app.probe("prod", "eu-central-1", 10) == OtherShard(owner=0, count=3, this=1)
    assert app.probe("prod", "cn-beijing", 10) is None  # not configured at all
    assert {r["region"] for r in sim.simulator.requests()} == {"eu-central-1"}


def test_a_shard_that_owns_nothing_is_ready_and_says_so(
    sim: simulator.SimulatorServer,
    tmp_path: Path,
    apps: list[App],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = write_config(tmp_path / "c.yaml", sim.url, {"staging": ("cn-hangzhou",)})
    with caplog.at_level(logging.INFO, logger="exporter"):
        app = start(apps, path, Shard(0, 3))
    assert served(app) == set()
    assert app.is_ready() and app.all_up()
    assert "shard 0 of 3 owns none of the 1 configured targets" in caplog.text
    assert app.refresher.ensure_fresh(None, timeout=10)
    assert sim.simulator.requests() == []


def test_a_reload_keeps_the_shard_and_sends_new_targets_to_their_owner(
    sim: simulator.SimulatorServer, tmp_path: Path, apps: list[App]
) -> None:
    path = write_config(tmp_path / "c.yaml", sim.url, {"prod": ("cn-hangzhou",)})
    app = start(apps, path, Shard(1, 3))
    assert app.refresher.ensure_fresh(None, timeout=10)
    (before,) = app.refresher.targets()
    write_config(path, sim.url)  # adds prod/cn-shanghai (1), prod/eu-central-1 (0), staging
    assert app.reload() is None
    assert served(app) == OWNED_BY[1]
    kept = app.refresher.target(("prod", "cn-hangzhou"))
    assert kept is not None and kept.store is before.store  # its counters continue
    assert app.probe("prod", "eu-central-1", 10) == OtherShard(owner=0, count=3, this=1)
    assert app.exposition.get_sample_value("alb_exporter_shard_ordinal") == 1


# --- the command line --------------------------------------------------------------------


def run_main(
    args: list[str], env: dict[str, str] | None = None, host: str = "alb-jobs-exporter-1"
) -> int:
    return cli.main(args, env=env or {}, hostname=lambda: host)


@pytest.mark.parametrize(
    ("args", "env", "host", "message"),
    [
        (
            ["--shard.count", "3", "--shard.index", "3"],
            {},
            "",
            "--shard.index: shard 3, outside 0..2",
        ),
        (["--shard.count", "0"], {}, "", "--shard.count: must be a whole number of at least 1"),
        (
            ["--shard.count", "3", "--shard.index", "hostname"],
            {},
            "alb-jobs-exporter",
            "--shard.index: hostname: the host name 'alb-jobs-exporter' has no trailing",
        ),
        (
            ["--shard.index", "hostname"],
            {"ALB_EXPORTER_SHARD_COUNT": "2"},
            "alb-jobs-exporter-2",
            "--shard.index: the host name 'alb-jobs-exporter-2' gives ordinal 2, outside 0..1",
        ),
        (
            [],
            {"ALB_EXPORTER_SHARD_COUNT": "3", "ALB_EXPORTER_SHARD_INDEX": "x"},
            "",
            "--shard.index (from ALB_EXPORTER_SHARD_INDEX): must be a whole number or",
        ),
    ],
)
def test_bad_shard_flags_are_one_line_flag_errors(
    args: list[str],
    env: dict[str, str],
    host: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The config file does not exist: the flags are checked first, on their own.
    missing = ["--config.file", str(tmp_path / "missing.yaml")]
    assert run_main([*missing, *args], env, host) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{cli.PROG}: error: {message}"), err
    assert err.count("\n") == 1


def test_check_config_says_which_targets_this_shard_owns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9")
    flags = ["--config.file", str(path), "--check-config", "--shard.count", "3"]
    assert run_main([*flags, "--shard.index", "hostname"], host="alb-jobs-exporter-1") == 0
    out = capsys.readouterr().out
    assert "shard: 1 of 3, owns 3 of 5 targets" in out
    assert (
        "regions: cn-hangzhou (shard 1, this one), cn-shanghai (shard 1, this one), "
        "eu-central-1 (shard 0)"
    ) in out
    assert "regions: cn-hangzhou (shard 2), eu-central-1 (shard 1, this one)" in out
    # Unsharded, the summary is what it always was.
    assert run_main(["--config.file", str(path), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "shard:" not in out and "regions: cn-hangzhou, cn-shanghai, eu-central-1" in out
