"""A bad state file is kept, not overwritten (issue 23, item 2), end to end: the real
exporter process against the real simulator process.

Truncated, garbage and newer-version files are moved aside byte for byte before the first
save, the exporter serves `up 1` within seconds, the log names the copy and
`alb_exporter_state_errors_total{operation="restore"}` is 1. A state directory that cannot
be written keeps the exporter serving, says so and counts every failed save; the bad file
in it is never written over, and is moved aside once the directory is writable again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import loopback, procs
from tests.support.configs import access_key, account, write_config

pytestmark = pytest.mark.e2e

KEY_ID = "LTAI5tStateAsideKey00001"
SECRET = "aside-Secret-Value-00001"
REGION = "cn-hangzhou"
NOBODY = 65534


@pytest.fixture(scope="module")
def sim(start_simulator: procs.Simulators) -> procs.Proc:
    return start_simulator([REGION], keys={KEY_ID: SECRET}, jobs_per_minute=0, history="0s")


def real_state(sim: procs.Proc, tmp: Path, start_exporter: procs.Exporters) -> bytes:
    """A state file as the exporter writes it, with a job counted."""
    now_ms = int(procs.control(sim, "GET", "/_sim/state")["now"] * 1000)
    procs.put_jobs(sim, REGION, {"Id": "real", "Status": "Processing", "CreateTime": now_ms})
    cfg = config(tmp, sim, tmp / "real.json")
    with start_exporter(cfg) as proc:
        procs.put_jobs(sim, REGION, {"Id": "real", "Status": "Failed", "ErrorCode": "E"})
        procs.wait_until(lambda: value(proc.url, "alb_async_jobs_failures_total") == 1)
        assert proc.stop() == 0
    return (tmp / "real.json").read_bytes()


def config(tmp: Path, sim: procs.Proc, state: Path) -> Path:
    prod = account(sim, "prod", [REGION], access_key(KEY_ID, SECRET))
    return write_config(tmp / "config.yaml", [prod], cache_ttl=0.3, state_file=str(state))


def value(url: str, name: str, **labels: str) -> float:
    _, samples = procs.scrape(url)
    return sum(procs.select(samples, name, **labels).values())


def kept(folder: Path, name: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(name + "."))


@pytest.mark.parametrize("kind", ["truncated", "garbage", "future-version"])
def test_an_unusable_state_file_is_kept_aside_byte_for_byte(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters, kind: str
) -> None:
    good = real_state(sim, tmp_path, start_exporter)
    if kind == "truncated":
        content, suffix = good[: len(good) * 2 // 3], ".corrupt-"
    elif kind == "garbage":
        content, suffix = os.urandom(4096), ".corrupt-"
    else:
        document = json.loads(good)
        document["version"] = 9  # a rollback after an upgrade to a format-9 exporter
        content, suffix = json.dumps(document).encode(), ".v9-"
    state = tmp_path / "state.json"
    state.write_bytes(content)
    started = time.monotonic()
    with start_exporter(config(tmp_path, sim, state)) as proc:
        assert value(proc.url, "alb_exporter_up") == 1
        assert time.monotonic() - started < 20  # "within seconds": ready is the bound
        [copy] = kept(tmp_path, "state.json")
        assert copy.name.startswith("state.json" + suffix)
        assert copy.read_bytes() == content
        assert str(copy) in proc.output() and "level=error" in proc.output()
        assert value(proc.url, "alb_exporter_state_errors_total", operation="restore") == 1
        assert value(proc.url, "alb_exporter_state_errors_total", operation="save") == 0
        procs.wait_until(lambda: state.exists())  # the first save: a new file...
        assert copy.read_bytes() == content  # ...and the copy untouched


def run_as_nobody() -> list[str]:
    """Arguments that start the exporter as an unprivileged user when the tests run as
    root (CI's containers): root writes into any directory, whatever its mode."""
    if os.geteuid() != 0:
        return []
    # The interpreter's own files may be private to root too (a Python under /root):
    # the program is imported before the privileges go.
    code = (
        "import os, sys, encodings.utf_8_sig, encodings.idna; import exporter.cli as cli; "
        "os.setgroups([]); "
        f"os.setgid({NOBODY}); os.setuid({NOBODY}); "
        "sys.argv[0] = 'alb-jobs-exporter'; cli.run()"
    )
    return ["-c", code]


@pytest.fixture
def open_folder() -> Iterator[Path]:
    # Not tmp_path: pytest's directories are private to their owner, and the exporter may
    # run as nobody here.
    folder = Path(tempfile.mkdtemp(prefix="alb-state-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_state_directory_that_cannot_be_written_keeps_serving_and_counts(
    open_folder: Path, sim: procs.Proc, start_simulator: procs.Simulators
) -> None:
    folder = open_folder / "state"
    folder.mkdir()
    state = folder / "state.json"
    state.write_bytes(b"not a state file")
    state.chmod(0o644)
    cfg = config(open_folder, sim, state)
    cfg.chmod(0o644)
    folder.chmod(0o555)  # read-only for everyone but root
    now_ms = int(procs.control(sim, "GET", "/_sim/state")["now"] * 1000)
    procs.put_jobs(sim, REGION, {"Id": "ro", "Status": "Processing", "CreateTime": now_ms})
    launch = procs.exporter_args(cfg)
    if run_as_nobody():
        launch = [*run_as_nobody(), *launch[2:]]  # in place of `-m exporter`
    with procs.start(launch, env={"PYTHONPATH": str(procs.REPO)}) as proc:
        procs.wait_until(lambda: loopback.get(proc.url + "/-/ready").status_code == 200)
        assert value(proc.url, "alb_exporter_up") == 1
        assert value(proc.url, "alb_exporter_state_errors_total", operation="restore") == 1
        procs.put_jobs(sim, REGION, {"Id": "ro", "Status": "Failed", "ErrorCode": "E"})
        procs.wait_until(lambda: value(proc.url, "alb_async_jobs_failures_total") == 1)
        # Each counted job asks for a save at once; each fails and is counted.
        procs.wait_until(
            lambda: value(proc.url, "alb_exporter_state_errors_total", operation="save") >= 1
        )
        assert value(proc.url, "alb_exporter_up") == 1
        out = proc.output()
        assert "cannot be moved aside" in out and "make its directory writable" in out
        assert "cannot write state file" in out
        assert state.read_bytes() == b"not a state file"  # never written over
        folder.chmod(0o777 if run_as_nobody() else 0o755)
        procs.put_jobs(
            sim, REGION, {"Id": "ro2", "Status": "Failed", "ErrorCode": "E", "CreateTime": now_ms}
        )
        procs.wait_until(lambda: value(proc.url, "alb_async_jobs_failures_total") == 2)
        procs.wait_until(lambda: kept(folder, "state.json") != [])
        [copy] = kept(folder, "state.json")
        assert copy.read_bytes() == b"not a state file"
        procs.wait_until(lambda: state.exists() and state.read_bytes().startswith(b"{"))
        assert proc.stop() == 0
    assert sys.executable  # the child ran under this interpreter
