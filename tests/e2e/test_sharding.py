"""Issue 13's sharding acceptance, end to end: three shard processes and one unsharded
exporter against ONE simulator process with 12 targets (3 accounts x 4 regions), each with
its own state file and the same config file.

The shards' target sets are disjoint and cover all 12; per label set, the sum across the
shards of every job metric equals the unsharded exporter's at the same simulated instant;
restarting a shard with its state file loses and doubles nothing; and the simulator's
request log shows that no process ever lists a target it does not own (the defect: "two
replicas double the API calls").

The simulator's clock stands still except when the test moves it, so "the same moment" is
well defined: every exporter has caught up once its `alb_async_jobs` gauges match the
simulator's own job list for each of its targets (a frozen world only moves jobs from
Processing to a terminal status, so matching counts mean every job is seen as it is).
Simulated time runs a little ahead of the exporters' clocks, so each job that finishes
after the start finished after every exporter's first listing and all of them count it.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exporter.config import shard_of
from tests.support import loopback, procs
from tests.support.configs import UNPACED, access_key, account, write_config
from tests.support.procs import control

pytestmark = pytest.mark.e2e

REGIONS = ("cn-hangzhou", "cn-shanghai", "cn-beijing", "eu-central-1")
ACCOUNTS = ("prod", "staging", "dev")
TARGETS = {(a, r) for a in ACCOUNTS for r in REGIONS}
SHARDS = 3
SECRET = "shard-e2e-Secret-Value-01"
# One key id per process and account: the simulator's request log names who listed what.
PROCESSES = ("s0", "s1", "s2", "all", "o0", "o1")
KEYS = {f"LTAI5tShardE2E{p}{a}": SECRET for p in PROCESSES for a in ACCOUNTS}
CONVERGE = 20.0  # deadline for every exporter to see the simulator's current state


def key_owner(key_id: str) -> tuple[str, str]:
    """(process, account) of a key id from KEYS."""
    rest = key_id.removeprefix("LTAI5tShardE2E")
    process = next(p for p in PROCESSES if rest.startswith(p))
    return process, rest.removeprefix(process)


@pytest.fixture
def sim(start_simulator: procs.Simulators) -> Iterator[procs.Proc]:
    with start_simulator(
        REGIONS, keys=KEYS, seed=13, history="0s", jobs_per_minute=40, frozen=True
    ) as proc:
        # Jobs before the exporters start (some of them finished: history to every
        # exporter alike), and simulated time a little ahead of theirs (module docstring).
        control(proc, "POST", "/_sim/time", {"advance": 30})
        yield proc


def shared_config(tmp: Path, sim: procs.Proc) -> Path:
    # One file for every process, as in a StatefulSet; the key and the state file come
    # from each process's environment.
    accounts = [
        account(sim, a, REGIONS, access_key(f"${{SHARD_E2E_KEY}}{a}", SECRET), **UNPACED)
        for a in ACCOUNTS
    ]
    return write_config(
        tmp / "config.yaml", accounts, state_file="${SHARD_E2E_STATE}", cache_ttl="0.5s"
    )


def job_samples(url: str) -> dict[str, float]:
    """Every job series (`name{labels}` as exposed) and its value. Every process renders a
    label set the same way, so the text is the key; much cheaper than the full parser."""
    r = loopback.get(url + "/metrics", timeout=30)
    assert r.status_code == 200, r.text
    samples = {}
    for line in r.text.splitlines():
        if line.startswith("alb_async_job"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


def targets_of(url: str) -> set[tuple[str, str]]:
    _, samples = procs.scrape(url)
    return {
        (labels["account"], labels["region"])
        for name, frozen in samples
        if name == "alb_exporter_up"
        for labels in [dict(frozen)]
    }


# The exposition of 12 targets is thousands of lines; polling needs only these, and a
# regex over them is much cheaper than the full parser (no label value here has a quote).
_JOBS_GAUGE = re.compile(r"^alb_async_jobs\{(.*)\} (\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def caught_up(url: str, owned: set[tuple[str, str]], want: Mapping[tuple[str, str], int]) -> bool:
    r = loopback.get(url + "/metrics", timeout=30)
    assert r.status_code == 200, r.text
    seen: Counter[tuple[str, str, str]] = Counter()
    for text, value in _JOBS_GAUGE.findall(r.text):
        labels = dict(_LABEL.findall(text))
        seen[(labels["account"], labels["region"], labels["status"])] += int(float(value))
    expected = {(a, r, status): n for a, r in owned for (r2, status), n in want.items() if r2 == r}
    return +seen == expected


def test_three_shards_add_up_to_one_unsharded_exporter_and_survive_a_restart(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    config = shared_config(tmp_path, sim)

    def start(name: str, index: int | None) -> procs.Proc:
        flags = [] if index is None else ["--shard.count", str(SHARDS), "--shard.index", str(index)]
        env = {"SHARD_E2E_KEY": f"LTAI5tShardE2E{name}", "SHARD_E2E_STATE": str(tmp_path / name)}
        return start_exporter(config, *flags, env=env)

    # Started side by side: each start is mostly the interpreter importing.
    with ThreadPoolExecutor(SHARDS + 1) as pool:
        *shards, whole = pool.map(
            start, [*(f"s{i}" for i in range(SHARDS)), "all"], [0, 1, 2, None]
        )

    # Disjoint and covering, each shard exactly the targets the documented hash gives it.
    owned = [targets_of(s.url) for s in shards]
    assert owned == [{t for t in TARGETS if shard_of(*t, SHARDS) == i} for i in range(SHARDS)]
    assert all(owned) and sum(map(len, owned)) == len(TARGETS) == len(set().union(*owned))
    assert targets_of(whole.url) == TARGETS
    _, samples = procs.scrape(shards[2].url)
    assert samples[("alb_exporter_shard_ordinal", frozenset())] == 2
    assert samples[("alb_exporter_total_shards", frozenset())] == SHARDS
    elsewhere = sorted(owned[1])[0]
    r = loopback.get(
        f"{shards[0].url}/probe", params={"account": elsewhere[0], "region": elsewhere[1]}
    )
    assert r.status_code == 404 and "belongs to shard 1 of 3" in r.text

    def assert_shards_add_up() -> None:
        want = procs.status_counts(sim, REGIONS)
        assert want[("cn-hangzhou", "Succeeded")] > 0, want  # jobs did finish meanwhile
        waiting = [*zip(shards, owned, strict=True), (whole, TARGETS)]

        def all_caught_up() -> bool:
            waiting[:] = [(p, mine) for p, mine in waiting if not caught_up(p.url, mine, want)]
            return not waiting

        procs.wait_until(all_caught_up, timeout=CONVERGE)
        summed: Counter[str] = Counter()
        for shard in shards:
            for key, value in job_samples(shard.url).items():
                summed[key] += value
        single = job_samples(whole.url)
        assert set(summed) == set(single)
        assert {k: v for k, v in summed.items() if v != single[k]} == {}
        finished = sum(
            v for k, v in single.items() if k.startswith("alb_async_jobs_finished_total")
        )
        assert finished > 0  # counted, not only history: the comparison means something

    control(sim, "POST", "/_sim/time", {"advance": 60})
    assert_shards_add_up()

    # Restart the shard with the most targets; jobs finish and arrive while it is down.
    biggest = max(range(SHARDS), key=lambda i: len(owned[i]))
    before = {k: v for k, v in job_samples(shards[biggest].url).items() if "_total{" in k}
    assert shards[biggest].stop(signal.SIGTERM) == 0
    control(sim, "POST", "/_sim/time", {"advance": 60})
    shards[biggest] = start(f"s{biggest}", biggest)
    assert "ignoring state file" not in shards[biggest].output()
    after = job_samples(shards[biggest].url)
    assert all(after.get(k, -1) >= v for k, v in before.items())  # nothing lost meanwhile
    assert_shards_add_up()  # ... and nothing doubled or missed once caught up

    # No process ever listed a target it does not own (the log keeps the last 1000 calls).
    listed: dict[str, set[tuple[str, str]]] = {p: set() for p in PROCESSES}
    for request in control(sim, "GET", "/_sim/requests"):
        process, acct = key_owner(request["access_key_id"])
        listed[process].add((acct, request["region"]))
    for i in range(SHARDS):
        assert listed[f"s{i}"] <= owned[i]
    assert listed["all"] == TARGETS


def test_two_replicas_no_longer_list_every_target_twice(tmp_path: Path, sim: procs.Proc) -> None:
    # The defect: every replica refreshed every target, so two replicas doubled the API
    # calls. Two `--once` shards now list each target from exactly one process.
    config = shared_config(tmp_path, sim)

    def once(index: int) -> subprocess.CompletedProcess[str]:
        env = {"SHARD_E2E_KEY": f"LTAI5tShardE2Eo{index}", "SHARD_E2E_STATE": ""}
        flags = ["--once", "--shard.count", "2", "--shard.index", str(index)]
        return procs.run(procs.exporter_args(config, *flags), env)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(once, [0, 1]))
    owned = [{t for t in TARGETS if shard_of(*t, 2) == i} for i in range(2)]
    for i, result in enumerate(results):
        assert result.returncode == 0, result.stderr
        samples = procs.parse(result.stdout)
        ups = {
            (labels["account"], labels["region"])
            for name, frozen in samples
            if name == "alb_exporter_up"
            for labels in [dict(frozen)]
        }
        assert ups == owned[i]
        assert samples[("alb_exporter_shard_ordinal", frozenset())] == i
    assert owned[0] and owned[1] and owned[0] | owned[1] == TARGETS
    listed_by: dict[tuple[str, str], set[str]] = {}
    for request in control(sim, "GET", "/_sim/requests"):
        process, acct = key_owner(request["access_key_id"])
        listed_by.setdefault((acct, request["region"]), set()).add(process)
    assert listed_by == {t: {f"o{shard_of(*t, 2)}"} for t in TARGETS}
