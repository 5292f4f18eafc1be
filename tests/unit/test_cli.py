"""The command line: flag checks and --check-config, before anything is served."""

from __future__ import annotations

import gc
import json
import re
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


def check_config(tmp_path: Path, text: str, env: dict[str, str]) -> int:
    """`--check-config` of a config file of `text`: the exit code."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    return cli.main(["--config.file", str(cfg), "--check-config"], env=env)


def test_check_config_shows_the_metrics_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        check_config(tmp_path, "metrics:\n  duration_labels: [status, api_name]\n" + ACCOUNT, {})
        == 0
    )
    out = capsys.readouterr().out
    assert "duration_labels=status,api_name;" in out
    assert "duration_buckets=2s,5s,10s,20s,30s,1m,2m,5m,10m,30m (default)" in out


def test_check_config_refuses_unsorted_buckets_naming_the_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_config(tmp_path, "metrics:\n  duration_buckets: [5, 30, 10]\n" + ACCOUNT, {}) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{cli.PROG}: error: metrics.duration_buckets[2]: must be greater")
    assert err.count("\n") == 1


def test_check_config_warns_for_a_region_alb_does_not_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIexample", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "x"}
    assert (
        check_config(
            tmp_path, "accounts:\n  - name: prod\n    regions: [cn-hangzhou, cn-hangzou]\n", env
        )
        == 0
    )
    err = capsys.readouterr().err
    assert err == (
        f"{cli.PROG}: warning: accounts[0].regions[1]: 'cn-hangzou' is not a region ALB is"
        " known to serve (did you mean cn-hangzhou?); alb.cn-hangzou.aliyuncs.com will not"
        " resolve unless ALB opened it after this release\n"
    )


def test_region_list_is_the_one_in_the_api_facts() -> None:
    from exporter import wire

    assert "cn-hangzhou" in wire.REGIONS and "cn-hangzou" not in wire.REGIONS
    assert len(set(wire.REGIONS)) == len(wire.REGIONS)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: --check-config must call no API."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"--check-config opened a connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIexample", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "x"},
            "  prod: environment keys (default chain)\n",
        ),
        (
            {
                "ALIBABA_CLOUD_ROLE_ARN": "acs:ram::1:role/r",
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "acs:ram::1:oidc-provider/p",
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE": "/var/run/secrets/token",
            },
            "  prod: OIDC (RRSA) (default chain)\n",
        ),
    ],
)
def test_check_config_says_which_credentials_it_would_use(
    env: dict[str, str],
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_network: None,
) -> None:
    env = {**env, "HOME": str(tmp_path)}
    assert check_config(tmp_path, ACCOUNT, env) == 0
    out, err = capsys.readouterr()
    assert out.endswith("credentials found (no API called):\n" + expected)
    assert err == ""
    assert "LTAIexample" not in out


def test_check_config_warns_when_no_credentials_are_present(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_network: None
) -> None:
    # Only the ECS metadata service is left, which only the network can confirm: say so.
    assert check_config(tmp_path, ACCOUNT, {"HOME": str(tmp_path)}) == 0
    out, err = capsys.readouterr()
    assert out.endswith(
        "  prod: ECS instance metadata (default chain) -- unconfirmed until it runs\n"
    )
    assert err.startswith(
        f"{cli.PROG}: warning: account prod: no credentials present here; at run time it will"
        " try ECS instance metadata, which only the network can confirm"
    )
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET (not set)" in err


@pytest.mark.e2e
def test_example_config_passes_check_config_in_the_environment_it_documents(
    tmp_path: Path,
) -> None:
    # The variables come from the file's own header, so the test follows what it documents.
    example = procs.REPO / "config.example.yaml"
    header = example.read_text(encoding="utf-8").split("\n\n", 1)[0]
    documented = set(re.findall(r"^#   ([A-Z_, ]+): ", header, re.M))
    names = {name.strip() for line in documented for name in line.split(",")}
    assert names == {
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALB_SECRETS_DIR",
    }
    (tmp_path / "access_key_id").write_text("LTAI5tSTAGING5678\n")
    (tmp_path / "access_key_secret").write_text("staging-secret-7f3e\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tEXAMPLE1234",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "prod-secret-55aa",
        "ALB_SECRETS_DIR": str(tmp_path),
    }
    command = re.search(r"^# Check it with:\s+alb-jobs-exporter (.+)$", header, re.M)
    assert command, "the header shows the command"
    result = procs.run(["-m", "exporter", *command.group(1).split()], env, inherit=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warning either: every region is one ALB serves
    assert "credentials found (no API called):" in result.stdout
    for secret in ("prod-secret-55aa", "staging-secret-7f3e"):
        assert secret not in result.stdout + result.stderr
    # and without the files it names the (non-secret) path it could not read
    del env["ALB_SECRETS_DIR"]
    result = procs.run(["-m", "exporter", *command.group(1).split()], env, inherit=False)
    assert result.returncode == 2
    assert 'cannot read "/var/run/secrets/alb/access_key_id": No such file' in result.stderr


# --- the process -------------------------------------------------------------------------


def test_the_entry_point_sets_the_young_generation_and_turns_created_series_off() -> None:
    # Process-wide settings, so looked at in a child (this process keeps its own); `main`
    # is replaced there by what reports them, so nothing is served.
    report = (
        "import gc, json; from prometheus_client import CollectorRegistry, Counter, "
        "generate_latest; from exporter import cli; "
        "r = CollectorRegistry(); Counter('c', 'h', registry=r); "
        "cli.main = lambda: print(json.dumps([gc.get_threshold(), "
        "'c_created' in generate_latest(r).decode()])) or 0; "
        "cli.run()"
    )
    child = procs.run(["-c", report])
    assert child.returncode == 0, child.stderr
    threshold, created = json.loads(child.stdout)
    assert threshold == [cli.YOUNG_GENERATION, *gc.get_threshold()[1:]]
    assert created is False
