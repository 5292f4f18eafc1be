"""The fault suite's processes: each test module gets its own simulators and exporter."""

from __future__ import annotations

import pytest

from tests.e2e.faults.world import (
    CACHE_TTL,
    CONTROLS,
    EDGE,
    FAULTED,
    HOSTILE,
    KEY_ID,
    LOOKBACK_SECONDS,
    OTHER_KEY_ID,
    OTHER_SECRET,
    PAGE_SIZE,
    REQUEST_TIMEOUT,
    SECRET,
    SIM_TARGETS,
    STS,
    WRONG_SECRET,
    Suite,
    start_sim,
)
from tests.support import procs
from tests.support.configs import access_key, account, write_config


@pytest.fixture(scope="module")
def suite(
    tmp_path_factory: pytest.TempPathFactory,
    start_simulator: procs.Simulators,
    start_exporter: procs.Exporters,
) -> Suite:
    tmp = tmp_path_factory.mktemp("faults")
    sts_dir = tmp / "sts"
    sts_dir.mkdir()
    sim = start_sim(start_simulator, tuple(region for _, region in SIM_TARGETS))
    sim2 = start_sim(start_simulator, (EDGE[1],))
    s = Suite(start_simulator, sim, sim2, sim, sts_dir)
    s.secrets |= {SECRET, OTHER_SECRET, WRONG_SECRET}
    s.write_sts(s.issue_sts(3600))
    for _, region in SIM_TARGETS:
        s.mutate(region, new=20)
    s.mutate(EDGE[1], new=10, sim=s.sim2)
    keys = access_key(KEY_ID, "${FAULT_SECRET}")
    other_keys = access_key(OTHER_KEY_ID, "${FAULT_OTHER_SECRET}")
    sts_files = {
        "access_key_id_file": str(sts_dir / "key_id"),
        "access_key_secret_file": str(sts_dir / "secret"),
        "security_token_file": str(sts_dir / "token"),
    }
    # Fast enough that pacing after throttling (ratelimit.py) does not dominate runtime.
    fast = {"max_requests_per_second": 100}
    accounts = [
        account(sim, FAULTED[0], [FAULTED[1], CONTROLS[0][1]], keys, **fast),
        account(sim, CONTROLS[1][0], [CONTROLS[1][1]], other_keys, **fast, signature="v1"),
        account(sim, STS[0], [STS[1]], sts_files, **fast, signature="v1"),
        account(sim, HOSTILE[0], [HOSTILE[1]], keys, **fast),
        account(s.sim2, EDGE[0], [EDGE[1]], keys, **fast),
    ]
    cfg = write_config(
        tmp / "config.yaml",
        accounts,
        lookback=LOOKBACK_SECONDS,
        cache_ttl=CACHE_TTL,
        request_timeout=f"{REQUEST_TIMEOUT:g}s",
        page_size=PAGE_SIZE,
        max_pages=60,
        recent_failures=5,
    )
    env = {"FAULT_SECRET": SECRET, "FAULT_OTHER_SECRET": OTHER_SECRET}
    s.exporter = start_exporter(cfg, env=env)
    s.settle()
    return s
