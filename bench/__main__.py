"""`python -m bench [--quick]`: measures against the in-process simulator with 30 ms per
call and writes bench/RESULTS.md (`--quick`: tiny sizes, no file written; used by tests).

Peak RSS and /metrics over HTTP are measured out of process: the real exporter
(`python -m exporter`) runs as a child process against the simulator in this one, so its
VmHWM is the exporter's alone and each scrape goes through its HTTP server.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.alibaba.api import ACTION, API_VERSION
from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.signing import Credential, make_signer
from exporter.jobs.refresher import Refresher
from exporter.jobs.store import JobStore
from exporter.jobs.target import RefreshPolicy, Target
from exporter.metrics.collector import JobsCollector
from exporter.simulator import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    Simulator,
    SimulatorServer,
)

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


def metrics_latency(jobs: int, renders: int) -> tuple[float, float]:
    with simulator(("cn-hangzhou",), 0.0) as (sim, url):
        load(sim, "cn-hangzhou", jobs, stuck=jobs * 15 // 1000)
        t, _ = target(url, "cn-hangzhou", sim, RefreshPolicy())
        t.refresh()
        registry = CollectorRegistry()
        registry.register(JobsCollector(lambda: [t]))
        samples = []
        for _ in range(renders):
            started = time.perf_counter()
            generate_latest(registry)
            samples.append(time.perf_counter() - started)
        samples.sort()
        return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


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


def first_data(regions: int, jobs: int) -> tuple[float, float]:
    names = tuple(f"cn-region{i}" for i in range(regions))
    with simulator(names, LATENCY) as (sim, url):
        for name in names:
            load(sim, name, jobs, 1)
        walls = []
        for workers in (regions, 1):
            targets = {}
            for name in names:
                t, _ = target(url, name, sim, RefreshPolicy())
                targets[t.key] = t
            refresher = Refresher(targets, cache_ttl=30, max_workers=workers)
            started = time.perf_counter()
            refresher.ensure_fresh()
            walls.append(time.perf_counter() - started)
            refresher.shutdown()
        return walls[0], walls[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _scrape(http: httpx.Client, url: str) -> dict[str, float]:
    """The exporter's self-metrics of the one target, by name."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(http.get(url).raise_for_status().text):
        for sample in family.samples:
            if sample.name in ("alb_exporter_up", "alb_exporter_jobs_tracked"):
                values[sample.name] = sample.value
    return values


def _vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


@contextmanager
def exporter_process(
    jobs: int, cache_ttl: str
) -> Iterator[tuple[subprocess.Popen[bytes], Simulator, str, Path]]:
    """A real exporter (`python -m exporter --config.file ...`) as a child process, against
    a simulator served from this process holding `jobs` jobs (1.5 % Processing), without
    added latency; the simulator runs on the wall clock so the exporter's own clock places
    the jobs in its window. Yields (process, simulator, base URL, log file)."""
    sim = Simulator(regions=("cn-hangzhou",), jobs_per_minute=0, history_seconds=0)
    with SimulatorServer(sim) as server, tempfile.TemporaryDirectory() as tmp:
        load(sim, "cn-hangzhou", jobs, stuck=jobs * 15 // 1000)
        config = Path(tmp, "config.yaml")
        config.write_text(
            f"lookback: {LOOKBACK:.0f}s\n"
            f"cache_ttl: {cache_ttl}\n"
            "max_pages: 5000\n"
            "accounts:\n"
            "  - name: bench\n"
            "    regions: [cn-hangzhou]\n"
            f"    endpoint: {server.endpoint_template}\n"
            "    max_requests_per_second: 100000\n"
            "    credentials:\n"
            f"      access_key_id: {DEMO_ACCESS_KEY_ID}\n"
            f"      access_key_secret: {DEMO_ACCESS_KEY_SECRET}\n"
        )
        port = _free_port()
        log = Path(tmp, "exporter.log")
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", "--config.file", str(config),
                 "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            yield proc, sim, f"http://127.0.0.1:{port}", log
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def exporter_rss(jobs: int, refreshes: int) -> tuple[float, float]:
    """(peak RSS MiB, RSS MiB at the end) of a real exporter process holding `jobs` jobs.

    Read from /proc/PID/status after its first complete page-through and `refreshes`
    incremental refreshes, each caused by a scrape (1 s cache TTL) after 3 new jobs
    arrived."""
    with exporter_process(jobs, "1s") as (proc, sim, base, log):
        _drive(proc, sim, f"{base}/metrics", jobs, refreshes, log)
        return _vm_kib(proc.pid, "VmHWM") / 1024, _vm_kib(proc.pid, "VmRSS") / 1024


def metrics_over_http(jobs: int, scrapes: int) -> tuple[float, float, int, int]:
    """(p50 s, p99 s, exposition bytes, bytes on the wire) of `scrapes` sequential
    `GET /metrics` over loopback HTTP to a real exporter process holding `jobs` jobs.

    Timed only once the first complete page-through is served (target up, all jobs
    tracked, /-/ready 200); the 1 h cache TTL means every timed scrape is served from
    cache. One persistent client, as Prometheus would send it (gzip accepted); the server
    closes each connection, so every request opens a new one."""
    with exporter_process(jobs, "1h") as (proc, _sim, base, log):
        url = f"{base}/metrics"
        with httpx.Client(timeout=120) as http:
            _wait_paged_through(proc, http, url, jobs, log)
            if http.get(f"{base}/-/ready").status_code != 200:
                raise RuntimeError(f"the exporter is not ready:\n{log.read_text()}")
            samples = []
            body, wire = b"", 0
            for _ in range(scrapes):
                started = time.perf_counter()
                response = http.get(url).raise_for_status()
                body = response.content
                samples.append(time.perf_counter() - started)
                wire = response.num_bytes_downloaded
        values = {
            s.name: s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
            if s.name in ("alb_exporter_up", "alb_exporter_jobs_tracked")
        }
        if values != {"alb_exporter_up": 1, "alb_exporter_jobs_tracked": jobs}:
            raise RuntimeError(f"the last timed scrape was not the complete data: {values}")
        samples.sort()
        p99 = samples[int(len(samples) * 0.99) - 1]
        return statistics.median(samples), p99, len(body), wire


def _wait_paged_through(
    proc: subprocess.Popen[bytes], http: httpx.Client, url: str, jobs: int, log: Path
) -> None:
    """Scrape until the first complete page-through is served (up, all `jobs` tracked)."""
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the exporter did not page through:\n{log.read_text()}")
        try:
            values = _scrape(http, url)
        except httpx.HTTPError:
            values = {}
        up, tracked = values.get("alb_exporter_up"), values.get("alb_exporter_jobs_tracked")
        if up == 1 and tracked == jobs:
            return
        time.sleep(0.5)


def _drive(
    proc: subprocess.Popen[bytes], sim: Simulator, url: str, jobs: int, refreshes: int, log: Path
) -> None:
    """Scrape until the first complete page-through is served, then cause `refreshes`
    incremental refreshes (3 new jobs before each), checking each one's outcome."""
    with httpx.Client(timeout=120) as http:
        _wait_paged_through(proc, http, url, jobs, log)
        for step in range(1, refreshes + 1):
            for _ in range(3):
                sim.upsert_job("cn-hangzhou", Status="Succeeded")
            time.sleep(1.1)  # past the cache TTL: the scrape refreshes
            values = _scrape(http, url)
            up, tracked = values.get("alb_exporter_up"), values.get("alb_exporter_jobs_tracked")
            if up != 1 or tracked != jobs + 3 * step:
                raise RuntimeError(f"incremental refresh {step} went wrong: {values}")


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
        f"{os.cpu_count()} CPUs ({model}), {memory} RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


#: Sections of RESULTS.md written by hand from other benchmarks (`python -m bench.load`):
#: kept when `make bench` rewrites the rest.
KEPT_HEADING = "\n## Serving under hostile clients"


def kept_sections() -> str:
    try:
        text = RESULTS.read_text()
    except FileNotFoundError:
        return ""
    at = text.find(KEPT_HEADING)
    return text[at:] if at >= 0 else ""


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="python -m bench")
    args.add_argument("--quick", action="store_true", help="tiny sizes; no RESULTS.md")
    quick = args.parse_args(argv).quick
    sizes = (50, 200) if quick else (1_000, 10_000, 100_000)
    rows = []
    for size in sizes:
        full, inc, cpu = calls_per_refresh(size, 2 if quick else 10)
        rows.append(
            f"| API calls per refresh at steady state, {size:,} jobs in the window "
            f"(1.5 % stuck Processing, 3 new jobs per 30 s refresh) | full re-page {full:.1f}, "
            f"incremental {inc:.2f}: **{full / inc:.0f}x fewer** |"
        )
        if size == sizes[-1]:
            rows.append(
                f"| CPU time per 1,000 jobs ingested (first full page-through, {size:,} jobs) "
                f"| {cpu * 1000:.0f} ms |"
            )
    p50, p99 = metrics_latency(sizes[-1], 20 if quick else 200)
    rows.append(
        f"| /metrics render from cache, {sizes[-1]:,} jobs in the window "
        f"| p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms |"
    )
    http_jobs, scrapes = (200, 20) if quick else (10_000, 300)
    p50, p99, size, wire = metrics_over_http(http_jobs, scrapes)
    rows.append(
        f"| /metrics over HTTP from cache, {http_jobs:,} jobs in the window "
        f"({scrapes} sequential scrapes of the exporter process over loopback) "
        f"| p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
        f"(exposition {size:,} bytes, {wire:,} gzipped on the wire) |"
    )
    refreshes = concurrent_scrapes(50)
    rows.append(f"| upstream refreshes caused by 50 concurrent scrapes (1 target) | {refreshes} |")
    together, apart = first_data(5, 20 if quick else 1_000)
    rows.append(
        f"| time to first complete data, 5 regions x {20 if quick else 1_000:,} jobs | "
        f"concurrent {together:.2f} s, one after the other {apart:.2f} s "
        f"({apart / together:.1f}x) |"
    )
    rss_jobs = 500 if quick else 100_000
    idle, _ = exporter_rss(0, 2)
    peak, end = exporter_rss(rss_jobs, 2 if quick else 5)
    rows.append(
        f"| peak RSS of the exporter process (VmHWM), {rss_jobs:,} jobs in the window and "
        f"tracked (1.5 % Processing), after the first complete page-through, "
        f"{2 if quick else 5} incremental refreshes and scrapes | **{peak:.0f} MiB** "
        f"(RSS at the end {end:.0f} MiB; the same process with no jobs: {idle:.0f} MiB) |"
    )
    table = "\n".join(["| measure | result |", "| --- | --- |", *rows])
    text = (
        "# Benchmark results\n\n"
        f"Measured by `make bench` (`python -m bench`) against the in-process simulator with "
        f"{LATENCY * 1000:.0f} ms added to every call, in one run.\n\n"
        f"Machine: {machine()}.\n\n{table}\n\n"
        "CPU time is the refreshing thread's alone (HTTP client, JSON parsing, job store); "
        "the simulator answers from other threads. Peak RSS is measured out of process: "
        "the real exporter (`python -m exporter --config.file ...`) runs as a child of the "
        "benchmark, against the simulator in the benchmark's process without added latency, "
        "and its VmHWM is read from /proc/PID/status. /metrics over HTTP is measured the "
        "same way, against another such process (cache TTL 1 h), once its first complete "
        "page-through is served and /-/ready is 200: wall time per `GET /metrics` seen by "
        "an httpx client over loopback on a kept-alive connection, as Prometheus scrapes, "
        "gzip accepted as Prometheus does; the exposition size is uncompressed."
        "\n\n"
        "Steady state: simulated time advances 30 s per refresh while the loaded jobs stay "
        "put, so the window sheds its oldest jobs as it slides (at 100,000 jobs, about "
        "8,600 over the 10 refreshes); hence fewer full re-page calls than jobs / 100.\n"
    )
    print(text)
    if not quick:
        RESULTS.write_text(text + kept_sections())
    return 0


if __name__ == "__main__":
    sys.exit(main())
