"""Load test: many concurrent clients scraping a real exporter process on the simulator.

    python -m bench.load                       # 200 clients for 30 s (the issue's numbers)
    python -m bench.load --clients 50 --duration 3

Starts the simulator and the exporter as child processes on loopback, lets every client
scrape `/metrics` in a loop, samples the exporter's RSS and thread count from /proc, and
prints latency percentiles, errors, peak RSS and peak threads. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
_URL = re.compile(r"listening on (https?://[^\s\"]+)")
KEY_ID = "LTAI5tLoadTestKeyId00001"
SECRET = "load-test-secret-not-real"


@dataclass
class Result:
    clients: int
    duration: float
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    requests_per_second: float = 0.0
    baseline_threads: int = 0
    max_threads: int = 0
    baseline_rss_mib: float = 0.0
    max_rss_mib: float = 0.0
    end_rss_mib: float = 0.0


@dataclass
class Child:
    popen: subprocess.Popen[str]
    url: str
    lines: list[str]

    @property
    def pid(self) -> int:
        return self.popen.pid


def _start(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 20) -> Child:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    full_env.update(env or {})
    full_env["PYTHONUNBUFFERED"] = "1"
    popen = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    child = Child(popen, "", [])
    found = threading.Event()

    def pump() -> None:
        assert popen.stdout is not None
        for line in iter(popen.stdout.readline, ""):
            child.lines.append(line)
            m = _URL.search(line)
            if m and not child.url:
                child.url = m.group(1).rstrip("/")
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout):
        popen.kill()
        popen.wait()
        raise RuntimeError(f"{args} did not start:\n{''.join(child.lines)}")
    return child


def _stop(child: Child) -> int:
    if child.popen.poll() is None:
        child.popen.terminate()
    try:
        code = child.popen.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.popen.kill()
        code = child.popen.wait()
    if child.popen.stdout is not None:
        child.popen.stdout.close()
    return code


@contextmanager
def exporter_on_simulator(regions: int = 2) -> Iterator[Child]:
    """The simulator and an exporter scraping it, both real processes on loopback."""
    names = ["cn-hangzhou", "cn-shanghai", "cn-beijing", "eu-central-1"][:regions]
    sim = _start(
        [
            "-m",
            "exporter.simulator",
            "--listen",
            "127.0.0.1:0",
            "--regions",
            ",".join(names),
            "--history",
            "30m",
            "--jobs-per-minute",
            "20",
            "--access-key-id",
            KEY_ID,
            "--access-key-secret",
            SECRET,
        ]
    )
    exporter = None
    try:
        with tempfile.TemporaryDirectory(prefix="alb-load-") as folder:
            cfg = Path(folder) / "config.yaml"
            cfg.write_text(
                "cache_ttl: 5s\naccounts:\n  - name: load\n"
                f"    regions: [{', '.join(names)}]\n"
                f'    endpoint: "{sim.url}/{{region}}/"\n'
                f"    credentials:\n      access_key_id: {KEY_ID}\n"
                "      access_key_secret: ${LOAD_SECRET}\n"
            )
            exporter = _start(
                [
                    "-m",
                    "exporter",
                    "--config.file",
                    str(cfg),
                    "--web.listen-address",
                    "127.0.0.1:0",
                    "--log.level",
                    "info",
                ],
                env={"LOAD_SECRET": SECRET},
            )
            deadline = time.monotonic() + 20
            while httpx.get(exporter.url + "/-/ready").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the exporter did not get ready")
                time.sleep(0.1)
            yield exporter
    finally:
        if exporter is not None:
            _stop(exporter)
        _stop(sim)


def proc_status(pid: int) -> tuple[int, float]:
    """(threads, RSS in MiB) of a process, from /proc."""
    threads, rss = 0, 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return threads, rss


def run(url: str, pid: int, clients: int, duration: float, path: str = "/metrics") -> Result:
    """`clients` threads each scraping `url + path` in a loop for `duration` seconds."""
    result = Result(clients=clients, duration=duration)
    result.baseline_threads, result.baseline_rss_mib = proc_status(pid)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client() -> None:
        mine: list[float] = []
        with httpx.Client(timeout=60) as c:
            start.wait()
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    r = c.get(url + path)
                    kind = None if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    kind = type(exc).__name__
                if kind is None:
                    mine.append(time.perf_counter() - began)
                else:
                    with lock:
                        errors[kind] = errors.get(kind, 0) + 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.monotonic()
    max_threads, max_rss = result.baseline_threads, result.baseline_rss_mib
    while time.monotonic() - began < duration:
        n, rss = proc_status(pid)
        max_threads, max_rss = max(max_threads, n), max(max_rss, rss)
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.monotonic() - began
    _, result.end_rss_mib = proc_status(pid)
    result.max_threads, result.max_rss_mib = max_threads, max_rss
    result.requests = len(latencies)
    result.errors = sum(errors.values())
    result.error_kinds = errors
    if latencies:
        ordered = sorted(latencies)
        result.p50_ms = statistics.median(ordered) * 1000
        result.p99_ms = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        result.max_ms = ordered[-1] * 1000
        result.requests_per_second = len(latencies) / elapsed
    return result


def report(result: Result) -> str:
    return (
        f"clients={result.clients} duration={result.duration:g}s requests={result.requests} "
        f"({result.requests_per_second:.0f}/s) errors={result.errors} {result.error_kinds or ''}\n"
        f"latency p50={result.p50_ms:.1f}ms p99={result.p99_ms:.1f}ms max={result.max_ms:.1f}ms\n"
        f"exporter threads: {result.baseline_threads} idle, {result.max_threads} peak\n"
        f"exporter RSS: {result.baseline_rss_mib:.1f} MiB idle, {result.max_rss_mib:.1f} MiB peak, "
        f"{result.end_rss_mib:.1f} MiB after"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument("--path", default="/metrics")
    p.add_argument("--regions", type=int, default=2, help="targets scraped (1 to 4)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    with exporter_on_simulator(args.regions) as exporter:
        result = run(exporter.url, exporter.pid, args.clients, args.duration, args.path)
    print(json.dumps(asdict(result), indent=2) if args.json else report(result))
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
