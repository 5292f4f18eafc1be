"""The golden exposition: `--once` against a seeded simulator whose clock stands still.

node_exporter's habit: the whole output is compared byte for byte with a file in the repo, so a
refactoring that changes any name, label, order or value shows up here. Regenerate it on
purpose with `UPDATE_GOLDEN=1 pytest tests/e2e/test_golden.py` and review the diff.

Only what cannot be the same twice is normalised: timestamps become offsets from the
simulator's fixed instant, and the exporter's own timings become `<timing>`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter import simulator
from tests.support import procs
from tests.support.clock import FakeClock
from tests.support.configs import access_key, account, write_config

pytestmark = pytest.mark.e2e

GOLDEN = Path(__file__).resolve().parent / "golden" / "once.prom"

# Families whose values are the exporter's own timings: their lines stay, their values go.
_TIMINGS = (
    "alb_exporter_api_request_duration_seconds",
    "alb_exporter_refresh_duration_seconds",
    "alb_exporter_last_success_timestamp_seconds",
)
# Families whose values are job timestamps: compared as offsets from the simulator's now.
_TIMESTAMPS = (
    "alb_async_job_recent_failure_timestamp_seconds",
    "alb_async_job_processing_oldest_created_timestamp_seconds",
)
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{.*\})? (?P<value>\S+)$")


@pytest.fixture
def frozen_sim(
    sim_server: Callable[[simulator.Simulator], simulator.SimulatorServer],
) -> tuple[simulator.SimulatorServer, int]:
    # Whole seconds: the jobs are generated from this instant, so every CreateTime and
    # ModifyTime is the same offset from it in every run. 50 minutes of history stay well
    # inside the 1h lookback, so the exporter's own (real) clock decides nothing.
    instant = int(time.time())
    sim = simulator.Simulator(
        regions=("cn-hangzhou", "cn-shanghai", "eu-central-1"),
        seed=7,
        jobs_per_minute=6.0,
        history_seconds=50 * 60,
        clock=FakeClock(float(instant)),
    )
    return sim_server(sim), instant


# prometheus_client's process and Python collectors: values (memory, CPU, GC counts) and
# labels (the Python version) of this run's interpreter; their presence is checked apart.
_PLATFORM = re.compile(r"^(# (HELP|TYPE) )?(process|python)_")


def normalise(text: str, instant: int) -> str:
    out = []
    for line in text.splitlines():
        if _PLATFORM.match(line):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            out.append(line)
            continue
        name, labels, value = m["name"], m["labels"] or "", m["value"]
        labels = re.sub(r'python_version="[^"]*"', 'python_version="<python>"', labels)
        if name.startswith(_TIMINGS):
            value = "<timing>"
        elif name in _TIMESTAMPS:
            offset_ms = round(float(value) * 1000) - instant * 1000
            value = f"now{offset_ms:+d}ms"
        out.append(f"{name}{labels} {value}")
    return "\n".join(out) + "\n"


def test_once_exposition_matches_the_golden_file(
    frozen_sim: tuple[simulator.SimulatorServer, int], tmp_path: Path
) -> None:
    server, instant = frozen_sim
    keys = access_key(simulator.DEMO_ACCESS_KEY_ID, simulator.DEMO_ACCESS_KEY_SECRET)
    accounts = [
        account(server, "golden", ["cn-hangzhou", "cn-shanghai"], keys),
        account(server, "golden-v1", ["eu-central-1"], keys, signature="v1"),
    ]
    # Only what the golden file is about: every other setting at its default.
    config = write_config(tmp_path / "config.yaml", accounts, base={}, recent_failures=5)
    done = procs.run(["-m", "exporter", "--once", "--config.file", str(config)])
    assert done.returncode == 0, done.stderr
    got = normalise(done.stdout, instant)
    for family in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"):
        assert f"\n{family}" in done.stdout, family
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(got)
    want = GOLDEN.read_text()
    # Compared as lines so a failure shows the first differing line, not two 100 kB blobs.
    assert got.splitlines() == want.splitlines()
    assert got == want
