"""The standalone command: `python -m exporter.simulator`, its flags and durations."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

import pytest

from exporter.simulator import parse_duration
from tests.support import loopback
from tests.unit.simulator.helpers import KEY, REPO, SECRET, api_error, call, ok


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("30s", "15m", "2h", "1d", "90", "0.5h")] == [
        30,
        900,
        7200,
        86400,
        90,
        1800,
    ]
    for bad in ("", "h", "5x", "-1m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# --- the standalone command ----------------------------------------------------------------


def _first_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    assert proc.stdout is not None
    stream = proc.stdout
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()))
    reader.start()
    reader.join(timeout)
    assert line, "the simulator printed nothing"
    return line[0]


@pytest.mark.e2e
def test_cli_serves_until_sigterm() -> None:
    args = [
        sys.executable,
        "-m",
        "exporter.simulator",
        "--listen",
        "127.0.0.1:0",
        "--regions",
        "cn-hangzhou,cn-shanghai",
        "--seed",
        "1",
        "--history",
        "10m",
        "--access-key-id",
        KEY,
        "--access-key-secret",
        SECRET,
        "--fault",
        "cn-shanghai:throttle_every=2",
        "--log-level",
        "debug",
    ]
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        first = _first_line(proc)
        match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)\n", first)
        assert match, first
        url = f"http://127.0.0.1:{match.group(1)}"
        body = ok(call(url, {"MaxResults": "100"}, region="cn-shanghai"))
        assert 40 < body["TotalCount"] < 100
        api_error(call(url, region="cn-shanghai"), 400, "Throttling.User")
        ok(call(url, region="cn-hangzhou", scheme="v1"))
        state = loopback.get(url + "/_sim/state").json()
        assert state["regions"] == ["cn-hangzhou", "cn-shanghai"]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
        assert proc.returncode == 0, stderr
        assert SECRET not in stderr and "Signature" not in stderr
        assert "POST /cn-shanghai/ -> 400" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.e2e
def test_cli_help_and_bad_arguments() -> None:
    run = [sys.executable, "-m", "exporter.simulator"]
    helped = subprocess.run(
        [*run, "--help"], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    assert helped.returncode == 0
    assert "--fault" in helped.stdout and "throttle_every" in helped.stdout
    bad = subprocess.run(
        [*run, "--fault", "nope=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "unknown fault knob" in bad.stderr
    assert "Traceback" not in bad.stderr
