"""Series per target at the simulator's realistic mix (issue 13, "Cardinality").

One simulator process holds about 10,000 jobs created over the last hour, drawn from its
weighted catalogue of ALB operations (18 API names over 6 resource types, 10 % failing
with each operation's own error codes, 2 % stuck Processing); time stands still. Two
exporter processes list it: one with the default `metrics` block, one with the knobs a
large estate would turn. Each exposition is counted per target, the way Prometheus
stores it (one series per sample line, histogram buckets included), and linted by
`promtool check metrics`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from exporter.simulator import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET
from tests.support import loopback, procs, promtool
from tests.support.configs import UNPACED, access_key, account, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.tools]

REGION = "cn-hangzhou"
JOBS_PER_HOUR = 10_000
DURATION = "alb_async_job_duration_seconds"
# All alerts keep working with these (AlbAsyncJobFailed reads finished_total and the recent
# failures, AlbAsyncJobStuck the oldest Processing job); the panels they take away are
# listed in the README.
KNOBS = {
    "duration_buckets": [],
    "disable": ["alb_async_jobs_failed", "alb_async_jobs_vanished_total"],
}


@pytest.fixture(scope="module")
def sim(start_simulator: procs.Simulators) -> procs.Proc:
    return start_simulator(
        [REGION],
        keys={DEMO_ACCESS_KEY_ID: DEMO_ACCESS_KEY_SECRET},
        seed=13,
        history="1h",
        jobs_per_minute=JOBS_PER_HOUR / 60,
        frozen=True,
    )


def start(
    start_exporter: procs.Exporters, sim: procs.Proc, tmp: Path, name: str, **settings: object
) -> procs.Proc:
    keys = access_key(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET)
    config = write_config(
        tmp / f"{name}.yaml", [account(sim, name, [REGION], keys, **UNPACED)], **settings
    )
    return start_exporter(config, ready=False)


def exposition(exporter: procs.Proc) -> str:
    # Ready means every target was tried: the whole window is paged through by then.
    procs.wait_until(lambda: loopback.get(exporter.url + "/-/ready").status_code == 200)
    text, _ = procs.scrape(exporter.url)
    return text


def per_target(text: str, name: str) -> Counter[str]:
    """Series of the target (account `name`, REGION) by metric family."""
    families: Counter[str] = Counter()
    for (sample, labels), _ in procs.parse(text).items():
        if {("account", name), ("region", REGION)} <= labels:
            family = sample.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
            families[family] += 1
    return families


def test_series_per_target_at_the_realistic_mix(
    start_exporter: procs.Exporters, sim: procs.Proc, tmp_path: Path
) -> None:
    # Both page through the window at the same time.
    with_defaults = start(start_exporter, sim, tmp_path, "defaults")
    with_knobs = start(start_exporter, sim, tmp_path, "knobs", metrics=KNOBS)
    defaults, knobs = exposition(with_defaults), exposition(with_knobs)

    samples = procs.parse(defaults)
    tracked = procs.select(samples, "alb_exporter_jobs_tracked", account="defaults")
    (jobs_tracked,) = tracked.values()
    assert jobs_tracked >= 0.9 * JOBS_PER_HOUR  # the window really is full
    apis = {dict(lbl)["api_name"] for lbl in procs.select(samples, "alb_async_jobs")}
    assert len(apis) == 18  # every operation of the catalogue occurs

    series = per_target(defaults, "defaults")
    total, histogram = sum(series.values()), series[DURATION]
    assert total <= 500, series
    assert 0 < histogram <= total / 5, series

    lean = per_target(knobs, "knobs")
    assert sum(lean.values()) < 200, lean
    assert DURATION not in lean and "alb_async_jobs_failed" not in lean
    # What is left is the same data: the knobs only take away.
    assert all(lean[family] == series[family] for family in lean), (lean, series)

    assert promtool.problems(defaults) == ""
    assert promtool.problems(knobs) == ""
