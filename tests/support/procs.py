"""Helpers for end-to-end tests: run the real exporter and simulator as processes on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
_URL = re.compile(r"listening on (https?://[^\s\"]+)")


@dataclass
class Proc:
    """A child process whose output is collected (for secret-leak checks and debugging)."""

    popen: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def output(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise


def _pump(proc: Proc, stream: object, found: threading.Event) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        with proc._lock:
            proc.lines.append(line)
        if not proc.url:
            m = _URL.search(line)
            if m:
                proc.url = m.group(1).rstrip("/")
                found.set()


def start(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    wait_for_url: bool = True,
    timeout: float = 20.0,
) -> Proc:
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
    proc = Proc(popen)
    found = threading.Event()
    threading.Thread(target=_pump, args=(proc, popen.stdout, found), daemon=True).start()
    if wait_for_url and not found.wait(timeout):
        popen.kill()
        popen.wait()
        raise AssertionError(f"{args} did not start:\n{proc.output()}")
    return proc


@contextmanager
def running(args: Sequence[str], env: Mapping[str, str] | None = None) -> Iterator[Proc]:
    proc = start(args, env)
    try:
        yield proc
    finally:
        if proc.popen.poll() is None:
            proc.stop()
        if proc.popen.stdout:
            proc.popen.stdout.close()


def simulator(*extra: str) -> list[str]:
    return ["-m", "exporter.simulator", "--listen", "127.0.0.1:0", *extra]


def exporter(config_file: Path, *extra: str) -> list[str]:
    return [
        "-m",
        "exporter",
        "--config.file",
        str(config_file),
        "--web.listen-address",
        "127.0.0.1:0",
        "--log.level",
        "debug",
        *extra,
    ]


def control(sim: Proc, method: str, path: str, body: object = None) -> Any:
    """Call the simulator's loopback control API (/_sim/...) and return its JSON answer."""
    r = httpx.request(method, sim.url + path, json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_until(predicate: object, timeout: float = 20.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, path: str = "/metrics") -> tuple[str, Samples]:
    r = httpx.get(url + path, timeout=30)
    assert r.status_code == 200, r.text
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return r.text, samples


def select(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Samples of one metric whose labels include `labels`."""
    want = set(labels.items())
    return {lbl: v for (n, lbl), v in samples.items() if n == name and want <= lbl}
