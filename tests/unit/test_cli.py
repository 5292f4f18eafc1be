"""The command line: flag checks and --check-config, before anything is served."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter import cli, simulator
from tests.support import procs

# --- flags -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["metrics", "/-/metrics", "/probe"])
def test_a_bad_telemetry_path_is_a_flag_error_before_anything_starts(
    path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The config file does not exist: the flag is checked first, on its own.
    missing = str(tmp_path / "missing.yaml")
    assert cli.main(["--config.file", missing, "--web.telemetry-path", path], env={}) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{cli.PROG}: error: --web.telemetry-path: telemetry path {path!r}")
    assert "--web.listen-address" not in err and err.count("\n") == 1


@pytest.mark.e2e
def test_demo_check_config_validates_the_demo_config_and_exits() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--demo", "--check-config"],
        cwd=procs.REPO,
        env={"PATH": "/usr/bin:/bin", "ALB_EXPORTER_LISTEN": "127.0.0.1:0"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "accounts: 2" in result.stdout
    assert "  - name: demo-v1" in result.stdout
    assert "listening on" not in result.stdout + result.stderr
    assert simulator.DEMO_ACCESS_KEY_SECRET not in result.stdout + result.stderr


# --- --check-config ----------------------------------------------------------------------


ACCOUNT = "accounts:\n  - name: prod\n    regions: [cn-hangzhou]\n"


def test_check_config_shows_the_metrics_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("metrics:\n  duration_labels: [status, api_name]\n" + ACCOUNT)
    assert cli.main(["--config.file", str(cfg), "--check-config"], env={}) == 0
    out = capsys.readouterr().out
    assert "duration_labels=status,api_name;" in out
    assert "duration_buckets=2s,5s,10s,20s,30s,1m,2m,5m,10m,30m (default)" in out


def test_check_config_refuses_unsorted_buckets_naming_the_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("metrics:\n  duration_buckets: [5, 30, 10]\n" + ACCOUNT)
    assert cli.main(["--config.file", str(cfg), "--check-config"], env={}) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{cli.PROG}: error: metrics.duration_buckets[2]: must be greater")
    assert err.count("\n") == 1
