"""`python -m bench [--quick]`: measures against the simulator served from this process
and writes bench/RESULTS.md (`--quick`: tiny sizes, no file written, used by tests). The
whole run, the scale curve to 1,000 targets included, takes about 17 minutes on 2 vCPU.

The API-call economy runs in process (30 ms per call); the serving measures use the
simulator's realistic job mix (bench/scale.py). Peak RSS, CPU and HTTP latencies are
measured out of process: the real exporter (`python -m exporter`) runs as a child, so its
VmHWM and CPU are its own and each scrape goes through its HTTP server.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import scale
from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.signing import Credential, make_signer
from exporter.jobs.refresher import Refresher
from exporter.jobs.store import JobStore
from exporter.jobs.target import RefreshPolicy, Target
from exporter.simulator import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    Simulator,
    SimulatorServer,
)
from exporter.wire import ACTION, API_VERSION

LOOKBACK = 3600.0
LATENCY = 0.03
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


class Counting:
    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, code: str, seconds: float) -> None:
        with self._lock:
            self.calls += 1


@contextmanager
def simulator(regions: tuple[str, ...], latency: float) -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(regions=regions, jobs_per_minute=0, history_seconds=0)
    sim.freeze()
    with SimulatorServer(sim) as server:
        sim.set_faults(latency=latency)
        yield sim, server.url


def load(sim: Simulator, region: str, jobs: int, stuck: int) -> None:
    """Bulk-create `jobs` jobs spread over the window, `stuck` of them Processing."""
    now_ms = int(sim.now() * 1000)
    span = int(LOOKBACK * 1000) - 120_000
    for i in range(jobs):
        create = now_ms - 60_000 - (span * i) // max(1, jobs)
        if i % max(1, jobs // max(1, stuck)) == 0 and stuck:
            sim.upsert_job(region, CreateTime=create, Status="Processing")
        else:
            sim.upsert_job(region, CreateTime=create, Status="Succeeded", ModifyTime=create + 9000)


def target(url: str, region: str, sim: Simulator, policy: RefreshPolicy) -> tuple[Target, Counting]:
    counting = Counting()
    signer = make_signer(
        "v3",
        lambda: Credential(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET),
        action=ACTION,
        version=API_VERSION,
    )
    client = ListAsynJobsClient(
        f"{url}/{region}/", signer, max_pages=10_000, timeout=30, observer=counting
    )
    store = JobStore(LOOKBACK, 10)
    return Target(
        "bench", region, client, store, lookback=LOOKBACK, policy=policy, clock=sim.now
    ), counting


def calls_per_refresh(jobs: int, steps: int) -> tuple[float, float, float]:
    """(full re-page calls, incremental steady-state calls, CPU s per 1000 jobs ingested).

    The CPU time is the refreshing thread's (client, parsing, store): the simulator answers
    from its own server threads, so its work is not counted."""
    with simulator(("cn-hangzhou",), LATENCY) as (sim, url):
        load(sim, "cn-hangzhou", jobs, stuck=max(1, jobs * 15 // 1000))
        inc, inc_calls = target(url, "cn-hangzhou", sim, RefreshPolicy())
        full, full_calls = target(url, "cn-hangzhou", sim, RefreshPolicy(incremental=False))
        cpu = time.thread_time()
        inc.refresh()
        cpu = time.thread_time() - cpu
        full.refresh()
        inc_calls.calls = full_calls.calls = 0
        for _ in range(steps):
            sim.advance(30)
            for _ in range(3):  # new jobs arriving
                sim.upsert_job("cn-hangzhou", Status="Succeeded")
            inc.refresh()
            full.refresh()
        assert inc.status().up and full.status().up
        return full_calls.calls / steps, inc_calls.calls / steps, cpu / jobs * 1000


def concurrent_scrapes(scrapes: int) -> int:
    with simulator(("cn-hangzhou",), LATENCY) as (sim, url):
        load(sim, "cn-hangzhou", 200, 3)
        t, _ = target(url, "cn-hangzhou", sim, RefreshPolicy())
        refreshes: list[Target] = []
        refresher = Refresher({t.key: t}, cache_ttl=30, after_refresh=refreshes.append)
        threads = [threading.Thread(target=refresher.ensure_fresh) for _ in range(scrapes)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        refresher.shutdown()
        return len(refreshes)


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{int(mem) / 1024 / 1024:.1f} GiB"
    except OSError:
        memory = "unknown"
    return (
        f"{len(os.sched_getaffinity(0))} vCPU (`nproc`; `lscpu` model name: {model}), "
        f"{memory} RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; shared with other work while measured "
        f"(load average {os.getloadavg()[0]:.1f} at the end)"
    )


#: RESULTS.md below this line is written by hand (runs too long for `make bench`, other
#: benchmarks such as `python -m bench.load`, the cardinality counts): kept when `make
#: bench` rewrites the rest.
KEPT_MARK = "<!-- make bench rewrites what is above this line and keeps what is below -->"


def kept_sections() -> str:
    try:
        text = RESULTS.read_text()
    except FileNotFoundError:
        return ""
    at = text.find(KEPT_MARK)
    return "\n" + text[at:] if at >= 0 else ""


def _ms(pair: tuple[float, float]) -> str:
    return f"p50 {pair[0] * 1000:.2f} ms, p99 {pair[1] * 1000:.2f} ms"


def serving_rows(quick: bool) -> list[str]:
    """The render cache old vs new, the state file on vs off, regions in parallel."""
    rows = []
    mix = 500 if quick else 10_000
    scrapes = 5 if quick else 200
    for regions in (1, 2 if quick else 14):
        c = scale.render_cache(regions, mix, scrapes)
        rows.append(
            f"| /metrics from cache, the simulator's realistic mix, {regions} x {mix:,} jobs: "
            f"**{c.series:,} series**, {c.size:,} bytes (in process, WSGI, gzip) "
            f"| old (render every scrape) {_ms(c.old)}; new (render cache) {_ms(c.new)}: "
            f"**{c.old[0] / c.new[0]:,.0f}x** at p50 |"
        )
    off, on, size = scale.state_wait(200 if quick else 10_000, 3 if quick else 30)
    rows.append(
        f"| scrape wait, cache_ttl 0 (each scrape refreshes 2 regions x "
        f"{200 if quick else 10_000:,} jobs at 20 ms per call, then renders) "
        f"| state_file off {_ms(off)}; on {_ms(on)} "
        f"(state file {size:,} bytes): on/off {on[0] / off[0]:.2f} at p50 |"
    )
    jobs = 200 if quick else 10_000
    wide = scale.REGIONS[: 2 if quick else 10]
    sim = scale.mix_simulator(wide, jobs, scale.API_LATENCY)
    with SimulatorServer(sim) as server:
        url = server.endpoint_template
        alone = scale.first_complete_data(1, wide[:1], url, max_concurrent_refreshes=10)
        together = scale.first_complete_data(1, wide, url, max_concurrent_refreshes=10)
    rows.append(
        f"| first complete data (process start to ready, all up), default budget 5 req/s per "
        f"region, max_concurrent_refreshes 10, 20 ms per call, ~{jobs:,} jobs per region "
        f"| 1 region {alone:.1f} s; {len(wide)} regions {together:.1f} s: "
        f"**{together / alone:.2f}x** |"
    )
    return rows


CURVE = ((1, 1), (1, 10), (10, 10), (100, 10))


def curve_point(
    url: str,
    accounts: int,
    regions: int,
    jobs: int,
    ttl: float,
    quick: bool,
    tree: Path | None = None,
) -> scale.Point:
    """One point of the scale curve, as the curve and --compare measure it."""
    scrapes, rounds = (5, 1) if quick else (100, 3)
    return scale.scale_point(
        accounts, regions, url, jobs, scrapes=scrapes, rounds=rounds, ttl=ttl, workers=32, tree=tree
    )


def curve_rows(quick: bool) -> list[str]:
    points = ((1, 1), (1, 2)) if quick else CURVE
    jobs = 100 if quick else 1_000
    ttl = 1.0 if quick else 30.0  # the default cache_ttl: what users run
    sim = scale.mix_simulator(scale.REGIONS[: max(r for _, r in points)], jobs, scale.API_LATENCY)
    rows = [
        "| targets (accounts x regions) | series | exposition (gzip on the wire) "
        "| first complete data | steady refresh of all, wall | CPU per target per refresh "
        "| peak RSS | /metrics from cache | /probe from cache | HTTP floor (/-/healthy) "
        "| failed scrapes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    with SimulatorServer(sim) as server:
        for accounts, regions in points:
            p = curve_point(server.endpoint_template, accounts, regions, jobs, ttl, quick)
            rows.append(
                f"| {p.targets:,} ({accounts} x {regions}) | {p.series:,} | {p.size / 1e6:.2f} MB "
                f"({p.gz_size / 1e6:.2f} MB) | {p.first_data:.1f} s | {p.round_wall:.2f} s "
                f"| {p.cpu_per_target * 1000:.2f} ms | {p.peak_rss:.0f} MiB "
                f"| {_ms(p.metrics)} | {_ms(p.probe)} | {_ms(p.floor)} | {p.failures} |"
            )
            print(rows[-1], flush=True)
    return rows


COMPARE_START = "<!-- compare: written by python -m bench --compare -->"
COMPARE_END = "<!-- compare: end -->"


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def checkout(rev: str) -> tuple[Path, str]:
    """A detached worktree of `rev` under the temp dir (made once, reused)."""
    commit = _git("rev-parse", "--short", f"{rev}^{{commit}}")
    tree = Path(tempfile.gettempdir(), f"alb-bench-{commit}")
    if not tree.exists():
        _git("worktree", "add", "--detach", str(tree), commit)
    return tree, commit


def compare(old_rev: str, new_rev: str | None, targets: list[int], quick: bool) -> str:
    """The scale points of two revisions side by side in one run, each point measured
    old, new, new, old (so a drift of the machine's load falls on both alike)."""
    old_tree, old_commit = checkout(old_rev)
    new_tree, new_commit = (None, "the working tree") if new_rev is None else checkout(new_rev)
    shapes = {1: (1, 1), 10: (1, 10), 100: (10, 10), 1000: (100, 10)}
    jobs = 100 if quick else 1_000
    ttl = 1.0 if quick else 30.0
    regions = max(shapes[n][1] for n in targets)
    sim = scale.mix_simulator(scale.REGIONS[:regions], jobs, scale.API_LATENCY)
    rows = [
        "| targets | series | revision | /metrics from cache | /probe from cache "
        "| HTTP floor (/-/healthy) | CPU per target per refresh | steady refresh wall "
        "| peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ratios = []
    with SimulatorServer(sim) as server:
        for n in targets:
            accounts, per = shapes[n]
            got: dict[str, list[scale.Point]] = {"old": [], "new": []}
            for which in ("old", "new", "new", "old"):
                tree = old_tree if which == "old" else new_tree
                got[which].append(
                    scale.scale_point(
                        accounts,
                        per,
                        server.endpoint_template,
                        jobs,
                        scrapes=5 if quick else 100,
                        rounds=1 if quick else 3,
                        ttl=ttl,
                        workers=32,
                        tree=tree,
                    )
                )
            best = {k: _merged_points(v) for k, v in got.items()}
            for which, label in (("old", old_commit), ("new", new_commit)):
                p = best[which]
                rows.append(
                    f"| {n:,} | {p.series:,} | {which} ({label}) | {_ms(p.metrics)} "
                    f"| {_ms(p.probe)} | {_ms(p.floor)} | {p.cpu_per_target * 1000:.2f} ms "
                    f"| {p.round_wall:.2f} s | {p.peak_rss:.0f} MiB |"
                )
            o, w = best["old"], best["new"]
            ratio = (
                f"| {n:,} | | new / old | p50 {w.metrics[0] / o.metrics[0]:.2f}, "
                f"p99 {w.metrics[1] / o.metrics[1]:.2f} | p50 {w.probe[0] / o.probe[0]:.2f}, "
                f"p99 {w.probe[1] / o.probe[1]:.2f} "
                f"| p50 {w.floor[0] / o.floor[0]:.2f}, p99 {w.floor[1] / o.floor[1]:.2f} "
                f"| {w.cpu_per_target / o.cpu_per_target:.2f} "
                f"| {w.round_wall / o.round_wall:.2f} | {w.peak_rss / o.peak_rss:.2f} |"
            )
            rows.append(ratio)
            ratios.append(ratio)
            print("\n".join(rows[-3:]), flush=True)
    return (
        f"{COMPARE_START}\n## Old vs new, side by side in one run\n\n"
        f"`python -m bench --compare {old_rev}` ({old_commit} against {new_commit}), "
        f"targets {', '.join(map(str, targets))}. Real exporter processes as in the scale "
        f"curve (~{jobs:,} jobs per target, 20 ms per call, cache_ttl {ttl:g} s, "
        "`max_concurrent_refreshes: 32`); the old revision runs from its own worktree on "
        "the same interpreter and dependencies. Each point is measured old, new, new, old; "
        "each figure is the mean of its revision's two (latencies: of the p50s and of the "
        f"p99s). Machine: {machine()}.\n\n" + "\n".join(rows) + f"\n{COMPARE_END}\n"
    )


class _InprocChild:
    """`bench/inproc_point.py` in a child running `tree`'s code (see there)."""

    def __init__(self, tree: Path, targets: int) -> None:
        script = Path(__file__).resolve().parent / "inproc_point.py"
        self.tree = tree
        self._proc = subprocess.Popen(
            [sys.executable, str(script), str(targets)],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> dict[str, Any]:
        hello: dict[str, Any] = self._read()
        if not hello["exporter"].startswith(str(self.tree)):
            raise RuntimeError(f"{self.tree}: ran {hello['exporter']}")
        return hello

    def ask(self, command: str) -> float:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return float(self._read())

    def _read(self) -> Any:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.tree}: the in-process point exited ({self._proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.write("quit\n")
            self._proc.stdin.close()
            self._proc.wait(timeout=300)


def _interleaved(children: dict[str, _InprocChild], command: str, n: int) -> dict[str, list[float]]:
    """`n` answers to `command` from each child, asked in turn, who goes first alternating."""
    got: dict[str, list[float]] = {which: [] for which in children}
    order = list(children)
    for i in range(n):
        for which in order if i % 2 == 0 else order[::-1]:
            got[which].append(children[which].ask(command))
    return got


def inproc_counts(targets: int, quick: bool) -> tuple[int, int]:
    """(/metrics and /probe calls, refresh rounds) per revision at `targets`. At 1 target
    a round is one refresh, a few ms: many rounds for a stable median; at 1,000 a round
    is ~6 s of CPU per revision, and the machine's slow spells are shorter than that, so
    pairing helps less and it takes more rounds."""
    if quick:
        return 5, 1
    return 200, 15 if targets >= 1000 else 31 if targets >= 100 else 61


def compare_inproc(old_rev: str, new_rev: str, targets: list[int], quick: bool) -> str:
    """In-process points of two revisions side by side, both running at once and every
    measure asked of each in turn."""
    trees = {"old": checkout(old_rev), "new": checkout(new_rev)}
    rows = [
        "| targets | series | revision | /metrics from cache | /probe from cache "
        "| CPU per target per refresh (p25, median, p75) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n in targets:
        calls, rounds = inproc_counts(n, quick)
        children = {which: _InprocChild(trees[which][0], n) for which in ("old", "new")}
        try:
            series = {which: child.ready()["series"] for which, child in children.items()}
            _progress_line(f"[{n:,} targets in process] both ready")
            metrics = _interleaved(children, "metrics", calls)
            probe = _interleaved(children, "probe", calls)
            cpu = _interleaved(children, "round", rounds)
        finally:
            for child in children.values():
                child.close()
        got: dict[str, dict[str, Any]] = {
            which: {
                "metrics": scale.percentiles(metrics[which]),
                "probe": scale.percentiles(probe[which]),
                "cpu": statistics.quantiles(cpu[which], n=4) if rounds > 1 else cpu[which] * 3,
            }
            for which in children
        }
        for which in ("old", "new"):
            m = got[which]
            p25, median, p75 = (x * 1000 for x in m["cpu"])
            rows.append(
                f"| {n:,} | {series[which]:,} | {which} ({trees[which][1]}) "
                f"| {_us(m['metrics'])} | {_us(m['probe'])} "
                f"| {p25:.2f}, **{median:.2f}**, {p75:.2f} ms |"
            )
        o, w = got["old"], got["new"]
        # Round i of each was asked one right after the other: the ratio of each such
        # pair cancels what the machine did at the time.
        paired = statistics.median(b / a for a, b in zip(cpu["old"], cpu["new"], strict=True))
        rows.append(
            f"| {n:,} | | new / old | p50 {w['metrics'][0] / o['metrics'][0]:.2f}, "
            f"p99 {w['metrics'][1] / o['metrics'][1]:.2f} "
            f"| p50 {w['probe'][0] / o['probe'][0]:.2f}, p99 {w['probe'][1] / o['probe'][1]:.2f} "
            f"| median {w['cpu'][1] / o['cpu'][1]:.2f}; of the paired rounds {paired:.2f} |"
        )
        print("\n".join(rows[-3:]), flush=True)
    return "\n".join(rows)


def _us(pair: tuple[float, float]) -> str:
    return f"p50 {pair[0] * 1e6:.1f} us, p99 {pair[1] * 1e6:.1f} us"


def _progress_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _merged_points(points: list[scale.Point]) -> scale.Point:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    def pair(get: Callable[[scale.Point], tuple[float, float]]) -> tuple[float, float]:
        return (mean([get(p)[0] for p in points]), mean([get(p)[1] for p in points]))

    first = points[0]
    return dataclasses.replace(
        first,
        metrics=pair(lambda p: p.metrics),
        probe=pair(lambda p: p.probe),
        floor=pair(lambda p: p.floor),
        round_wall=mean([p.round_wall for p in points]),
        cpu_per_target=mean([p.cpu_per_target for p in points]),
        peak_rss=max(p.peak_rss for p in points),
    )


INPROC_START = "<!-- compare in process: written by python -m bench --compare --inproc -->"
INPROC_END = "<!-- compare in process: end -->"


def write_comparison(section: str, start: str = COMPARE_START, end: str = COMPARE_END) -> None:
    """Put `section` (which begins with `start` and ends with `end`) into RESULTS.md,
    replacing the one there, below what `make bench` rewrites."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if start in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="python -m bench")
    args.add_argument("--quick", action="store_true", help="tiny sizes; no RESULTS.md")
    args.add_argument(
        "--compare",
        metavar="REV",
        help="only the scale points of REV (old) and the working tree (new) side by side, "
        "written into RESULTS.md's comparison section",
    )
    args.add_argument(
        "--new", metavar="REV", help="with --compare: measure REV as new, not the working tree"
    )
    args.add_argument(
        "--inproc",
        action="store_true",
        help="with --compare and --new: the in-process points only (no HTTP, per-thread CPU)",
    )
    args.add_argument(
        "--targets",
        default="1,100,1000",
        help="with --compare: comma-separated target counts of 1, 10, 100, 1000",
    )
    parsed = args.parse_args(argv)
    quick = parsed.quick
    if parsed.compare and parsed.inproc:
        targets = [int(n) for n in parsed.targets.split(",")]
        table = compare_inproc(parsed.compare, parsed.new or "HEAD", targets, quick)
        section = (
            f"{INPROC_START}\n## Old vs new in process, side by side in one run\n\n"
            f"`python -m bench --compare {parsed.compare} --new {parsed.new or 'HEAD'} --inproc "
            f"--targets {parsed.targets}`: each revision's own `bench.scale.in_process_app` "
            "(an App and the simulator in one child process per revision, running that "
            "revision's code, its process set up as that revision's entry point does it; "
            "~1,000 jobs per target of the simulator's mix, no added "
            "latency). Both children run at once and every measure is asked of each in "
            "turn, who goes first alternating, so a slow spell of the machine falls on both "
            "alike. /metrics and /probe from cache: the exporter's WSGI app called directly "
            "(gzip accepted, no HTTP), 200 calls each. CPU per target per refresh: the "
            "per-thread CPU clocks of the scraping thread and the refresh workers (not the "
            "simulator's threads) over one scrape that refreshes every target and serves the "
            "result, rounds of 61, 31 and 15 at 1, 100 and 1,000 targets (the ratio of "
            "the medians, and the median of each round's new/old: the two rounds of a pair "
            "are asked one right after the other); "
            "it holds the render wherever the revision does it (old: at the scrape, new: "
            f"when each target is published). Machine: {machine()}.\n\n{table}\n{INPROC_END}\n"
        )
        print(section)
        if not quick:
            write_comparison(section, INPROC_START, INPROC_END)
        return 0
    if parsed.compare:
        targets = [int(n) for n in parsed.targets.split(",")]
        section = compare(parsed.compare, parsed.new, targets, quick)
        print(section)
        if not quick:
            write_comparison(section)
        return 0
    sizes = (50, 200) if quick else (1_000, 10_000)
    rows = []
    for size in sizes:
        full_calls, inc, cpu = calls_per_refresh(size, 2 if quick else 10)
        rows.append(
            f"| API calls per refresh at steady state, {size:,} jobs in the window "
            f"(1.5 % stuck Processing, 3 new jobs per 30 s refresh) | full re-page "
            f"{full_calls:.1f}, incremental {inc:.2f}: **{full_calls / inc:.0f}x fewer** |"
        )
        if size == sizes[-1]:
            rows.append(
                f"| CPU time per 1,000 jobs ingested (first full page-through, {size:,} jobs) "
                f"| {cpu * 1000:.0f} ms |"
            )
    refreshes = concurrent_scrapes(50)
    rows.append(f"| upstream refreshes caused by 50 concurrent scrapes (1 target) | {refreshes} |")
    rows.extend(serving_rows(quick))
    table = "\n".join(["| measure | result |", "| --- | --- |", *rows])
    print(table, flush=True)
    curve = "\n".join(curve_rows(quick))
    text = (
        "# Benchmark results\n\n"
        "Measured by `make bench` (`python -m bench`) in one run, "
        "against the simulator (in the benchmark's process) with its realistic job mix.\n\n"
        f"Machine: {machine()}.\n\n{table}\n\n"
        "## Scale curve\n\n"
        "Real exporter processes (`python -m exporter`), each target an account x region of "
        f"~{100 if quick else 1_000:,} jobs of the simulator's mix in the 1 h window, 20 ms "
        "added to every API call, `max_concurrent_refreshes: 32`, default budget "
        "(5 req/s per account x region), cache_ttl "
        f"{1 if quick else 30} s (the default; the steady round is one scrape after the TTL "
        "ran out, which refreshes every target and waits for them).\n\n"
        f"{curve}\n\n" + NOTES
    )
    print(text)
    if not quick:
        RESULTS.write_text(text + kept_sections())
    return 0


NOTES = """\
How each figure is taken:

- *old vs new* /metrics: the exporter's own WSGI app in process, no HTTP, after the
  first complete page-through; old is the same app without the render cache (every scrape
  renders, as before), new is the app as shipped. gzip accepted, as Prometheus sends it;
  both compress at level 6, so old is cheaper than main was (level 9: 4x the gzip CPU).
- *scrape wait*: one in-process App per setting, cache_ttl 0 so every scrape refreshes
  both regions (incremental listings) and renders; the same sizes, the same run.
- *first complete data*: from the exporter process's start to `/-/ready` 200 with every
  target `up`; the first refresh of a target pages through its whole window.
- *steady refresh of all*: the wall time of one scrape made after the cache TTL ran out,
  which refreshes every target (incremental listings, ~2 calls each) and renders; *CPU per
  target* is the exporter process's user+system CPU over that scrape (from /proc/PID/stat)
  divided by the targets, so it includes the one render of the whole exposition.
- *from cache*: sequential `GET`s over loopback HTTP with gzip while no refresh is due,
  the body read as sent (not inflated by the client), each on a new connection, so
  connection setup is included.
- *HTTP floor*: `GET /-/healthy` the same way, an answer with no work behind it: what
  the server and the connection cost on this machine, the bound of any cached answer.
- *peak RSS*: the exporter process's VmHWM at the end of its point.
"""


if __name__ == "__main__":
    sys.exit(main())
