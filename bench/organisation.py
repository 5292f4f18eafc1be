"""Organisation scale (issue 20): 100 members x `regions: "*"` over 25 offered regions, jobs
in 3 of them, discovered, next to the same estate listed by hand. Not a test: run
`python -m bench.organisation [--members N --regions N]` and read the figures.

Both exporters are processes against one simulator process; each member is entered with
the same AssumeRole in both, so the difference is discovery itself. Figures, from one run,
side by side: targets and series, peak RSS, `/metrics` p50 (cached: no refresh), the CPU
and API calls of a refresh of every target (most of them empty regions), and the CPU of a
discovery round (ListAccounts, 100 AssumeRoles, 100 DescribeRegions) as a share of one
core at the default 10m interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.support import loopback, procs

KEY, SECRET = "LTAI5tBenchOrgKey00001", "bench-org-Secret-0001"
ROLE = "AlbJobsExporterReadOnly"
BUSY = 3  # regions with jobs (every member sees its region's jobs)
JOBS_PER_BUSY_REGION = 40


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _header(sim_url: str, state: str) -> str:
    return (
        f"cache_ttl: 1h\nrequest_timeout: 10s\nmax_concurrent_refreshes: 8\nstate_file: {state}\n"
    )


def _member_keys(sim_url: str) -> str:
    return f'    endpoint: "{sim_url}/{{region}}/"\n    max_requests_per_second: 1000\n'


def discovered_config(sim_url: str, interval: str) -> str:
    return (
        f"discovery:\n  interval: {interval}\n  region: xx-region-00\n"
        "  resource_directory:\n"
        f"    credentials: {{access_key_id: {KEY}, access_key_secret: {SECRET}}}\n"
        f"    directory_endpoint: {sim_url}/rd/\n    sts_endpoint: {sim_url}/sts/\n"
        f"    role_name: {ROLE}\n" + _member_keys(sim_url)
    )


def listed_config(sim_url: str, members: int, regions: list[str]) -> str:
    text = "accounts:\n"
    for i in range(members):
        text += (
            f"  - name: member-{i:03d}\n    regions: [{', '.join(regions)}]\n"
            + _member_keys(sim_url)
            + "    credentials:\n      type: ram_role_arn\n"
            f"      role_arn: acs:ram::18{i:014d}:role/{ROLE.lower()}\n"
            f"      sts_endpoint: {sim_url}/sts/\n"
            f"      source: {{access_key_id: {KEY}, access_key_secret: {SECRET}}}\n"
        )
    return text


def measure(name: str, sim: procs.Proc, config: Path, expect: int) -> dict[str, float]:
    with procs.start(procs.exporter_args(config), None) as proc:
        pid = proc.popen.pid

        def targets() -> int:
            r = loopback.get(proc.url + "/metrics", timeout=120)
            return r.text.count("\nalb_exporter_up{")

        procs.wait_until(lambda: loopback.get(proc.url + "/-/ready").status_code == 200, 300)
        procs.wait_until(lambda: targets() == expect, 300)
        text = loopback.get(proc.url + "/metrics", timeout=120).text
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        times = []
        for _ in range(21):
            started = time.perf_counter()
            loopback.get(proc.url + "/metrics", timeout=120)
            times.append(time.perf_counter() - started)
        # Idle (cache_ttl 1h, nobody scraping): what is left is discovery's rounds.
        calls_before = int(sum(procs.control(sim, "GET", "/_sim/state")["request_counts"].values()))
        cpu_before = _cpu(pid)
        idle = 30.0
        time.sleep(idle)
        cpu_idle = _cpu(pid) - cpu_before
        calls_idle = (
            int(sum(procs.control(sim, "GET", "/_sim/state")["request_counts"].values()))
            - calls_before
        )
        return {
            "targets": expect,
            "series": series,
            "rss_mib": _peak_rss_mib(pid),
            "p50_ms": statistics.median(times) * 1000,
            "cpu_idle_30s": cpu_idle,
            "listasynjobs_calls_idle_30s": calls_idle,
        }


def refresh_cost(sim: procs.Proc, sim_url: str, tmp: Path, regions: list[str]) -> dict[str, float]:
    """One empty region refreshed 200 times in-process: API calls and CPU per refresh."""
    from exporter import config as cfgmod
    from exporter.app import App

    path = tmp / "one.yaml"
    path.write_text(
        "cache_ttl: 0s\naccounts:\n  - name: solo\n"
        f"    regions: [{regions[-1]}]\n"
        + _member_keys(sim_url)
        + f"    credentials: {{access_key_id: {KEY}, access_key_secret: {SECRET}}}\n"
    )
    app = App(cfgmod.load(str(path), {}), {}, str(path))
    try:
        app.refresher.ensure_fresh(None, timeout=30)
        before = procs.control(sim, "GET", "/_sim/state")["request_counts"].get(regions[-1], 0)
        n = 200
        cpu = time.process_time()
        for _ in range(n):
            app.refresher.ensure_fresh(None, timeout=30)
        cpu = time.process_time() - cpu
        after = procs.control(sim, "GET", "/_sim/state")["request_counts"].get(regions[-1], 0)
        return {"calls_per_refresh": (after - before) / n, "cpu_ms_per_refresh": cpu / n * 1000}
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--regions", type=int, default=25)
    args = parser.parse_args()
    regions = [f"xx-region-{i:02d}" for i in range(args.regions)]
    members = [
        {"account_id": f"18{i:014d}", "display_name": f"member-{i:03d}", "folder": "fd-prod"}
        for i in range(args.members)
    ]
    with tempfile.TemporaryDirectory() as tmpdir, procs.Simulators() as sims:
        tmp = Path(tmpdir)
        sim = sims(regions, keys={KEY: SECRET}, jobs_per_minute=0, history="0s", frozen=True)
        procs.control(sim, "POST", "/_sim/directory", {"members": members})
        now = int(procs.control(sim, "GET", "/_sim/state")["now"] * 1000)
        for region in regions[:BUSY]:
            jobs = [
                {
                    "Id": f"job-{region}-{j}",
                    "Status": "Succeeded",
                    "CreateTime": now - 60_000,
                    "ModifyTime": now - 30_000,
                    "ApiName": "CreateListener",
                    "ResourceType": "listener",
                    "ResourceId": f"lsn-{j}",
                    "OperateType": "Create",
                }
                for j in range(JOBS_PER_BUSY_REGION)
            ]
            procs.put_jobs(sim, region, *jobs)
        expect = args.members * args.regions
        results = {}
        disc = tmp / "discovered.yaml"
        disc.write_text(_header(sim.url, str(tmp / "d.json")) + discovered_config(sim.url, "5s"))
        results["discovered"] = measure("discovered", sim, disc, expect)
        listed = tmp / "listed.yaml"
        listed.write_text(
            _header(sim.url, str(tmp / "l.json")) + listed_config(sim.url, args.members, regions)
        )
        results["listed"] = measure("listed", sim, listed, expect)
        one = refresh_cost(sim, sim.url, tmp, regions)
    # Idle CPU over 30 s with discovery every 5 s (6 rounds) minus the listed estate's idle
    # CPU over the same 30 s: the CPU of 6 discovery rounds.
    rounds = 30 / 5
    per_round = (results["discovered"]["cpu_idle_30s"] - results["listed"]["cpu_idle_30s"]) / rounds
    print(f"estate: {args.members} members x {args.regions} regions, jobs in {BUSY}")
    print(f"{'':28}{'discovered':>14}{'listed by hand':>16}")
    for key in (
        "targets",
        "series",
        "rss_mib",
        "p50_ms",
        "cpu_idle_30s",
        "listasynjobs_calls_idle_30s",
    ):
        print(f"{key:28}{results['discovered'][key]:>14.2f}{results['listed'][key]:>16.2f}")
    print(
        f"discovery round CPU: {per_round * 1000:.0f} ms; at interval 10m: "
        f"{per_round / 600 * 100:.3f} % of a core"
    )
    print(
        f"empty region refresh: {one['calls_per_refresh']:.2f} API calls, "
        f"{one['cpu_ms_per_refresh']:.2f} ms CPU (exporter side, in-process)"
    )


if __name__ == "__main__":
    main()
