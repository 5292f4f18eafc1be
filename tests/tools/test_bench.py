"""`python -m bench --quick` runs end to end, so the benchmark cannot rot (no timing checks)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.procs import REPO


@pytest.mark.e2e
def test_bench_quick_mode_runs_and_reports_every_measure() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    for measure in (
        "API calls per refresh",
        "CPU time per 1,000 jobs",
        "/metrics render from cache",
        "/metrics over HTTP from cache",
        "upstream refreshes caused by 50 concurrent scrapes (1 target) | 1 |",
        "time to first complete data",
        "peak RSS of the exporter process (VmHWM)",
        "Machine:",
    ):
        assert measure in out
