"""Load test: many concurrent clients scraping a real exporter process on the simulator.

    python -m bench.load                       # 200 clients for 30 s (the issue's numbers)
    python -m bench.load --clients 50 --duration 3

Starts the simulator and the exporter as child processes on loopback, lets every client
scrape `/metrics` in a loop, samples the exporter's RSS and thread count from /proc, and
prints latency percentiles, errors, peak RSS and peak threads. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
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
    scenario: str = "normal"
    hostile_held: int = 0  # hostile connections open when the scrapes ended
    hostile_dropped: int = 0  # ... and closed by the server while they ran
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


def _start(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    timeout: float = 20,
    source: Path = REPO,
) -> Child:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    full_env.update(env or {})
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env["PYTHONPATH"] = str(source)  # the exporter's code: this tree, or another checkout
    popen = subprocess.Popen(
        [sys.executable, *args],
        cwd=source,
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
def exporter_on_simulator(regions: int = 2, source: Path = REPO) -> Iterator[Child]:
    """The simulator and an exporter scraping it, both real processes on loopback.

    `source`: the folder the exporter's code is run from (another checkout, to compare).
    """
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
                source=source,
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


def run(
    url: str,
    pid: int,
    clients: int,
    duration: float,
    path: str = "/metrics",
    timeout: float = 60,
) -> Result:
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
        with httpx.Client(timeout=timeout) as c:
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


# --- hostile clients ----------------------------------------------------------------------

#: What each kind of hostile client does; each reconnects when the server drops it, so the
#: pressure stays on for the whole scenario.
HOSTILE_KINDS = ("idle", "slowloris", "never_read")
_TRICKLE = b"GET /metrics HTTP/1.1\r\nHost: bench\r\nX-Slowloris: " + b"a" * 100_000


@dataclass
class HostileStats:
    """Per kind: connections opened, and closed by the server (with when, since opening)."""

    opened: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOSTILE_KINDS, 0))
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOSTILE_KINDS, 0))
    lifetimes: dict[str, list[float]] = field(
        default_factory=lambda: {kind: [] for kind in HOSTILE_KINDS}
    )


class Hostile:
    """Hostile connections to `url`, held by one asyncio loop in a thread.

    `idle`: connects and sends nothing. `slowloris`: trickles a request head a byte per
    `trickle` seconds. `never_read`: sends `GET /metrics` with a 4 KiB receive buffer and
    never reads the answer; reconnects every 5 s. Use as a context manager; `open(kind,
    n)` adds n connections of a kind.
    """

    def __init__(self, url: str, trickle: float = 1.0) -> None:
        parts = httpx.URL(url)
        self.address = (parts.host, parts.port or 80)
        self.trickle = trickle
        self.stats = HostileStats()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._tasks: list[asyncio.Task[None]] = []

    def __enter__(self) -> Hostile:
        _raise_open_files_limit()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._cancel_all(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()

    def open(self, kind: str, n: int) -> None:
        body = {"idle": self._idle, "slowloris": self._slowloris, "never_read": self._never_read}
        start = body[kind]

        async def spawn() -> None:
            self._tasks += [asyncio.create_task(self._forever(kind, start)) for _ in range(n)]

        asyncio.run_coroutine_threadsafe(spawn(), self.loop).result(30)

    def connected(self, kind: str) -> int:
        return self.stats.opened[kind] - self.stats.dropped[kind]

    async def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _forever(self, kind: str, body: Callable[[socket.socket], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            if kind == "never_read":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                await loop.sock_connect(sock, self.address)
            except OSError:
                sock.close()
                await asyncio.sleep(0.1)  # refused (backlog full): try again, not in a hot loop
                continue
            self.stats.opened[kind] += 1
            began = time.monotonic()
            try:
                await body(sock)
            except OSError:
                pass  # reset by the server: dropped all the same
            finally:
                sock.close()
            self.stats.dropped[kind] += 1
            self.stats.lifetimes[kind].append(time.monotonic() - began)

    async def _idle(self, sock: socket.socket) -> None:
        while await asyncio.get_running_loop().sock_recv(sock, 4096):
            pass  # returns when the server closes

    async def _slowloris(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        closed = asyncio.ensure_future(self._idle(sock))
        try:
            for i in range(len(_TRICKLE)):
                await loop.sock_sendall(sock, _TRICKLE[i : i + 1])
                done, _ = await asyncio.wait({closed}, timeout=self.trickle)
                if done:
                    return
        finally:
            closed.cancel()

    async def _never_read(self, sock: socket.socket) -> None:
        request = b"GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: identity\r\n\r\n"
        await asyncio.get_running_loop().sock_sendall(sock, request)
        await asyncio.sleep(5)
        raise ConnectionAbortedError  # gives up and comes back, never having read


def _raise_open_files_limit() -> None:
    # Thousands of client sockets in this process, too.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


#: The issue's scenarios: (kind of hostile client, how many); "normal" has none.
SCENARIOS = {"normal": ("", 0), "idle": ("idle", 1000), "slowloris": ("slowloris", 200)}
SCENARIOS["never_read"] = ("never_read", 200)


def scenario(
    url: str, pid: int, name: str, scrapers: int, duration: float, hostile: int | None = None
) -> Result:
    """Scrapes by `scrapers` clients for `duration` s while scenario `name`'s hostile
    connections are held (a 10 s client timeout, Prometheus's default scrape timeout)."""
    kind, n = SCENARIOS[name]
    n = n if hostile is None else hostile
    if not kind:
        result = run(url, pid, scrapers, duration)
        result.scenario = name
        return result
    threads, rss = proc_status(pid)  # before the crowd: its cost is the growth from here
    with Hostile(url) as crowd:
        crowd.open(kind, n)
        deadline = time.monotonic() + 15
        while crowd.stats.opened[kind] < n and time.monotonic() < deadline:
            time.sleep(0.05)
        dropped_before = crowd.stats.dropped[kind]
        result = run(url, pid, scrapers, duration, timeout=10)
        result.hostile_held = crowd.connected(kind)
        result.hostile_dropped = crowd.stats.dropped[kind] - dropped_before
    result.baseline_threads, result.baseline_rss_mib = threads, rss
    result.scenario = f"{name} x{n}"
    return result


def success_rate(result: Result) -> float:
    total = result.requests + result.errors
    return result.requests / total if total else 0.0


def report(result: Result) -> str:
    return (
        f"scenario={result.scenario} hostile held={result.hostile_held} "
        f"dropped={result.hostile_dropped} success={success_rate(result):.1%}\n"
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
    p.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "hostile", "all"],
        default=None,
        help="hostile clients held while --scrapers scrape (hostile: idle, slowloris and "
        "never_read in turn; all: those and normal); without it: --clients scrape alone",
    )
    p.add_argument("--scrapers", type=int, default=4, help="scrapers beside hostile clients")
    p.add_argument("--hostile", type=int, default=None, help="hostile connections (override)")
    p.add_argument(
        "--source",
        type=Path,
        action="append",
        default=None,
        help="run the exporter from this checkout instead (repeat to compare several)",
    )
    args = p.parse_args(argv)
    names = {None: [], "hostile": [*SCENARIOS][1:], "all": [*SCENARIOS]}.get(
        args.scenario, [args.scenario]
    )
    results: list[tuple[Path, Result]] = []
    for source in args.source or [REPO]:
        with exporter_on_simulator(args.regions, source) as exporter:
            if not names:
                results.append(
                    (
                        source,
                        run(exporter.url, exporter.pid, args.clients, args.duration, args.path),
                    )
                )
            for name in names:
                clients = args.clients if name == "normal" else args.scrapers
                results.append(
                    (
                        source,
                        scenario(
                            exporter.url, exporter.pid, name, clients, args.duration, args.hostile
                        ),
                    )
                )
    for source, result in results:
        if args.json:
            print(json.dumps({"source": str(source), **asdict(result)}, indent=2))
        else:
            print(f"== {source}\n{report(result)}\n")
    return 0 if all(r.errors == 0 for _, r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
