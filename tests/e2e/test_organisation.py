"""Issue 20's acceptance, end to end: an exporter process discovers an organisation served
by a simulator process (ListAccounts, AssumeRole into members, DescribeRegions, each
signature-checked), and keeps it current without a restart.

The organisation (tests/unit/discovery/org.py): six members, one in a folder the config
leaves out, one PromoteVerifying, one whose role cannot be assumed, one tagged out;
`regions: "*"` over five offered regions with one excluded. The simulator's jobs belong to
regions (every member sees its region's jobs), its time is frozen, so each discovered
target's gauges must equal the simulator's own job list for that region.
"""

from __future__ import annotations

import re
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import loopback, procs
from tests.support.procs import control
from tests.unit.discovery.org import (
    KEPT_REGIONS,
    MEMBERS,
    MGMT_KEY,
    MGMT_SECRET,
    OFFERED,
    UP,
    discovery_yaml,
    expected_targets,
)

pytestmark = pytest.mark.e2e

INTERVAL = 5.0  # discovery.interval: the least the config allows
_UP = re.compile(r'^alb_exporter_up\{account="([^"]*)",region="([^"]*)"\} (\S+)$', re.M)
_JOBS = re.compile(r"^alb_async_jobs\{(.*)\} (\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@pytest.fixture
def sim(start_simulator: procs.Simulators) -> Iterator[procs.Proc]:
    with start_simulator(
        OFFERED,
        keys={MGMT_KEY: MGMT_SECRET},
        seed=20,
        history="0s",
        jobs_per_minute=30,
        frozen=True,
    ) as proc:
        control(
            proc,
            "POST",
            "/_sim/directory",
            {"members": MEMBERS, "management_keys": [MGMT_KEY], "offered": list(OFFERED)},
        )
        control(proc, "POST", "/_sim/time", {"advance": 120})  # jobs, some finished
        yield proc


def config(tmp: Path, sim: procs.Proc) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        "cache_ttl: 0.5s\nrequest_timeout: 2s\n"
        f"state_file: {tmp / 'state.json'}\n" + discovery_yaml(sim.url, interval=f"{INTERVAL:g}s")
    )
    return path


def ups(url: str) -> dict[tuple[str, str], float]:
    r = loopback.get(url + "/metrics", timeout=30)
    assert r.status_code == 200, r.text
    return {(a, reg): float(v) for a, reg, v in _UP.findall(r.text)}


def sample(url: str, name: str, **labels: str) -> float:
    _, samples = procs.scrape(url)
    return sum(v for lbl, v in procs.select(samples, name, **labels).items())


def gauges_match(url: str, want: Counter[tuple[str, str]]) -> bool:
    r = loopback.get(url + "/metrics", timeout=30)
    seen: Counter[tuple[str, str, str]] = Counter()
    for text, value in _JOBS.findall(r.text):
        labels = dict(_LABEL.findall(text))
        seen[(labels["account"], labels["region"], labels["status"])] += int(float(value))
    expected = Counter({(a, r, status): n for a in UP for (r, status), n in want.items()})
    return +seen == +expected


def directory_calls(sim: procs.Proc) -> int:
    return int(control(sim, "GET", "/_sim/directory")["calls"]["ListAccounts"])


def test_an_organisation_is_discovered_exactly_and_counted_like_listed_targets(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    exporter = start_exporter(config(tmp_path, sim))
    procs.wait_until(lambda: set(ups(exporter.url)) == expected_targets())
    procs.wait_until(lambda: all(v == 1 for (a, _), v in ups(exporter.url).items() if a in UP))
    # The member whose role is missing: its targets alone are up 0, and discovery says why.
    assert {k: v for k, v in ups(exporter.url).items() if k[0] == "legacy"} == {
        ("legacy", r): 0.0 for r in KEPT_REGIONS
    }
    assert (
        sample(
            exporter.url,
            "alb_exporter_discovery_errors_total",
            source="regions",
            account="legacy",
            code="AssumeRoleFailed",
        )
        >= 1
    )
    assert sample(exporter.url, "alb_exporter_discovery_targets", source="discovery") == 12
    assert sample(exporter.url, "alb_exporter_discovery_targets", source="config") == 0
    assert (
        sample(
            exporter.url,
            "alb_exporter_discovery_last_success_timestamp_seconds",
            source="resource_directory",
            account="",
        )
        > 0
    )
    # Counters and gauges of every discovered target match the simulator's truth.
    control(sim, "POST", "/_sim/time", {"advance": 60})
    want = procs.status_counts(sim, KEPT_REGIONS)
    assert want[("cn-hangzhou", "Succeeded")] > 0
    procs.wait_until(lambda: gauges_match(exporter.url, want))
    finished = sample(exporter.url, "alb_async_jobs_finished_total", account="shop")
    assert finished > 0
    assert finished == sample(exporter.url, "alb_async_jobs_finished_total", account="payments")
    # Nobody listed a member it should not have: ALB saw only the two good members' keys.
    listed = {r["account_id"] for r in control(sim, "GET", "/_sim/requests")}
    assert listed == {MEMBERS[0]["account_id"], MEMBERS[1]["account_id"]}
    # The management secret and the members' temporary keys never show.
    issued = control(sim, "GET", "/_sim/identity?secrets=1")["issued"]
    assert issued
    text = exporter.output() + loopback.get(exporter.url + "/metrics").text
    text += loopback.get(exporter.url + "/").text
    for secret in [MGMT_SECRET, *(i["AccessKeySecret"] for i in issued)]:
        assert secret not in text
    assert not any(i["SecurityToken"] in text for i in issued)


def test_members_come_and_go_at_run_time_and_failed_listings_change_nothing(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    exporter = start_exporter(config(tmp_path, sim))
    procs.wait_until(lambda: set(ups(exporter.url)) == expected_targets())
    pid_before = exporter.popen.pid

    # Added: there within one interval (and a refresh), no restart.
    late = {"account_id": "1700000000000009", "display_name": "late", "folder": "fd-prod"}
    control(sim, "POST", "/_sim/directory/members", {**late, "tags": {"monitor": "alb"}})
    procs.wait_until(
        lambda: {("late", r) for r in KEPT_REGIONS} <= set(ups(exporter.url)),
        timeout=INTERVAL + 5,
    )
    assert exporter.popen.pid == pid_before and exporter.popen.poll() is None

    # Removed: still there after one listing without it, gone after the second.
    control(sim, "DELETE", "/_sim/directory/members?id=1700000000000009")
    first = directory_calls(sim)
    procs.wait_until(lambda: directory_calls(sim) >= first + 1, timeout=INTERVAL + 5)
    assert {("late", r) for r in KEPT_REGIONS} <= set(ups(exporter.url))
    procs.wait_until(
        lambda: not any(a == "late" for a, _ in ups(exporter.url)), timeout=2 * INTERVAL + 5
    )
    assert directory_calls(sim) >= first + 2

    # Failing listings: the directory now lists nobody, but no listing succeeds.
    control(sim, "POST", "/_sim/directory", {"members": []})
    for mode, code in [
        ("5xx", "ServiceUnavailable"),
        ("throttle", "Throttling.User"),
        ("malformed", "MalformedResponse"),
        ("timeout", "Timeout"),
    ]:
        control(sim, "POST", "/_sim/directory", {"faults": {"list_accounts": mode}})
        before = sample(
            exporter.url, "alb_exporter_discovery_errors_total", source="resource_directory"
        )

        def moved(code: str = code) -> bool:
            return (
                sample(
                    exporter.url,
                    "alb_exporter_discovery_errors_total",
                    source="resource_directory",
                    code=code,
                )
                > 0
            )

        procs.wait_until(moved, timeout=2 * INTERVAL + 10)
        assert (
            sample(exporter.url, "alb_exporter_discovery_errors_total", source="resource_directory")
            > before
        )
        assert set(ups(exporter.url)) == expected_targets()  # every target in place
    control(sim, "POST", "/_sim/directory", {"faults": {"list_accounts": ""}})


def test_a_restart_while_the_directory_is_down_serves_and_counts_every_known_target(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    path = config(tmp_path, sim)
    exporter = start_exporter(path)
    procs.wait_until(lambda: set(ups(exporter.url)) == expected_targets())
    control(sim, "POST", "/_sim/time", {"advance": 60})
    want = procs.status_counts(sim, KEPT_REGIONS)
    procs.wait_until(lambda: gauges_match(exporter.url, want))
    _, before = procs.scrape(exporter.url)
    counted = {k: v for k, v in before.items() if k[0] == "alb_async_jobs_finished_total"}
    assert sum(counted.values()) > 0
    assert exporter.stop(signal.SIGTERM) == 0

    control(
        sim,
        "POST",
        "/_sim/directory",
        {"faults": {"list_accounts": "5xx", "describe_regions": "5xx"}},
    )
    again = start_exporter(path)  # returns once /-/ready answers 200
    assert set(ups(again.url)) == expected_targets()
    procs.wait_until(lambda: gauges_match(again.url, want))
    _, after = procs.scrape(again.url)
    assert {k: v for k, v in after.items() if k[0] == "alb_async_jobs_finished_total"} == counted
    # Ready at once from the saved discovery; the first round then fails, changing nothing.
    procs.wait_until(
        lambda: (
            sample(again.url, "alb_exporter_discovery_errors_total", source="resource_directory")
            >= 1
        )
    )
    assert set(ups(again.url)) == expected_targets()


def test_demo_shows_an_organisation_with_one_member_up_0() -> None:
    with procs.start(
        ["-m", "exporter", "--demo"], env={"ALB_EXPORTER_LISTEN": "127.0.0.1:0"}
    ) as proc:

        def org() -> dict[tuple[str, str], float]:
            return {k: v for k, v in ups(proc.url).items() if k[0].startswith("org-")}

        procs.wait_until(
            lambda: {a for a, _ in org()} == {"org-shop", "org-payments", "org-legacy"}
        )
        procs.wait_until(lambda: all(v == 1 for (a, _), v in org().items() if a != "org-legacy"))
        assert {v for (a, _), v in org().items() if a == "org-legacy"} == {0.0}
        assert all(v == 1 for (a, _), v in ups(proc.url).items() if a.startswith("demo"))
