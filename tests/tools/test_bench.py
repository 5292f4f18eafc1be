"""`python -m bench --quick` runs end to end, so the benchmark cannot rot (no timing checks)."""

from __future__ import annotations

import re
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
        "upstream refreshes caused by 50 concurrent scrapes (1 target)",
        "/metrics from cache, the simulator's realistic mix",
        "old (render every scrape)",
        "scrape wait, cache_ttl 0",
        "state_file off",
        "first complete data",
        "## Scale curve",
        "| 2 (1 x 2) |",
        "Machine:",
    ):
        assert measure in out
    # A count, whatever it came to: how the threads interleave on a busy machine is not this
    # test's business; single-flight is asserted deterministically in
    # tests/unit/jobs/test_target.py (issue 24).
    assert re.search(r"^\| upstream refreshes caused by .* \| \d+ \|$", out, re.MULTILINE)
    # Every curve point served every scrape: the failed-scrapes column is 0.
    curve = [line for line in out.splitlines() if line.startswith("| 1 (1 x 1) |")]
    assert curve and curve[0].endswith("| 0 |")
