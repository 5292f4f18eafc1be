"""Helpers for end-to-end tests: run the real exporter and simulator as processes on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from prometheus_client.parser import text_string_to_metric_families

from tests.support import loopback

REPO = Path(__file__).resolve().parents[2]
_URL = re.compile(r"listening on (https?://[^\s\"]+)")
LOOPBACK = "127.0.0.1:0"


@dataclass
class Proc:
    """A child process whose output is collected (for secret-leak checks and debugging).

    Also a context manager: leaving the block stops it (if it still runs) and closes its pipe.
    """

    popen: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    pump: threading.Thread | None = None  # reads the output until the process closes it

    def output(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.popen.kill()
            self.popen.wait()
            if self.pump is not None:
                self.pump.join(timeout=10)
            # What it was doing is the only clue a CI log can give.
            raise AssertionError(
                f"{self.popen.args!r} did not stop within {timeout:g}s of signal {sig}; "
                f"its last output:\n{self.output()[-3000:]}"
            ) from exc

    def close(self) -> int:
        """Stops the process if it still runs, closes its pipe and returns its exit code."""
        code = self.stop() if self.popen.poll() is None else self.popen.returncode
        if self.pump is not None:
            # The process has exited, so its end of the pipe is closed and the pump reaches
            # EOF; closing our end while it still reads would fail it in its thread.
            self.pump.join(timeout=10)
        if self.popen.stdout:
            self.popen.stdout.close()
        return code

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pump(proc: Proc, stream: object, found: threading.Event) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        with proc._lock:
            proc.lines.append(line)
        if not proc.url:
            m = _URL.search(line)
            if m:
                proc.url = m.group(1).rstrip("/")
                found.set()


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment plus `env`, without the developer's own Alibaba Cloud settings:
    a test must never pick up real credentials or profiles by accident."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    return {**clean, **(env or {})}


def start(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    wait_for_url: bool = True,
    timeout: float = 20.0,
) -> Proc:
    """Starts `python <args>` in the repo; waits until it prints the URL it listens on."""
    popen = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env={**child_env(env), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc = Proc(popen)
    found = threading.Event()
    proc.pump = threading.Thread(target=_pump, args=(proc, popen.stdout, found), daemon=True)
    proc.pump.start()
    if wait_for_url and not found.wait(timeout):
        popen.kill()
        popen.wait()
        raise AssertionError(f"{args} did not start:\n{proc.output()}")
    return proc


def run(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    inherit: bool = True,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Runs `python <args>` in the repo to its end, output captured. With `inherit=False` the
    child gets `env` and nothing else."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=child_env(env) if inherit else dict(env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def exporter_args(config: Path | None, *extra: str, listen: str = LOOPBACK) -> list[str]:
    """`python -m exporter` arguments, logging at debug level (so that secret-leak checks
    see everything); without `config`, `extra` says what to run (`--demo`, ...)."""
    args = ["-m", "exporter", "--web.listen-address", listen, "--log.level", "debug"]
    if config is not None:
        args += ["--config.file", str(config)]
    return [*args, *extra]


class _Launcher:
    """Starts processes and stops every one still running when it is closed."""

    def __init__(self) -> None:
        self._stack = ExitStack()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self, args: Sequence[str], env: Mapping[str, str] | None) -> Proc:
        return self._stack.enter_context(start(args, env))


class Simulators(_Launcher):
    """`start_simulator(regions, ...)`: a `python -m exporter.simulator` process. `keys`
    maps the access key ids it accepts to their secrets; options left at None are the
    simulator's defaults."""

    def __call__(
        self,
        regions: Iterable[str],
        *,
        keys: Mapping[str, str] | None = None,
        seed: int | None = None,
        history: str | None = None,
        jobs_per_minute: float | None = None,
        frozen: bool = False,
        listen: str = LOOPBACK,
    ) -> Proc:
        args = ["-m", "exporter.simulator", "--listen", listen, "--regions", ",".join(regions)]
        if seed is not None:
            args += ["--seed", str(seed)]
        if history is not None:
            args += ["--history", history]
        if jobs_per_minute is not None:
            args += ["--jobs-per-minute", f"{jobs_per_minute:g}"]
        for key_id, secret in (keys or {}).items():
            args += ["--access-key-id", key_id, "--access-key-secret", secret]
        proc = self._start(args, None)
        if frozen:
            # Time stands still unless a test advances it, so the exporter and the truth agree.
            control(proc, "POST", "/_sim/time", {"freeze": True})
        return proc


class Exporters(_Launcher):
    """`start_exporter(config, *extra, ...)`: an exporter process (see `exporter_args`),
    returned once /-/ready answers 200 unless `ready=False` (TLS, or a test of startup)."""

    def __call__(
        self,
        config: Path | None,
        *extra: str,
        env: Mapping[str, str] | None = None,
        listen: str = LOOPBACK,
        ready: bool = True,
    ) -> Proc:
        proc = self._start(exporter_args(config, *extra, listen=listen), env)
        if ready:
            wait_until(lambda: loopback.get(proc.url + "/-/ready").status_code == 200)
        return proc


def control(sim: Proc, method: str, path: str, body: object = None) -> Any:
    """Call the simulator's loopback control API (/_sim/...) and return its JSON answer."""
    r = loopback.request(method, sim.url + path, json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def put_jobs(sim: Proc, region: str, *jobs: Mapping[str, object]) -> list[dict[str, Any]]:
    """Creates jobs in the simulator, or changes them (by Id); returns them as it holds them."""
    answer = control(sim, "POST", "/_sim/jobs", {"region": region, "jobs": list(jobs)})
    return answer["jobs"]  # type: ignore[no-any-return]


def status_counts(sim: Proc, regions: Iterable[str]) -> Counter[tuple[str, str]]:
    """(region, status) -> jobs the simulator holds now in `regions`: the truth an
    exporter's counts are compared with."""
    counts: Counter[tuple[str, str]] = Counter()
    for region in regions:
        for job in control(sim, "GET", f"/_sim/jobs?region={region}"):
            counts[(region, job["Status"])] += 1
    return counts


def wait_until(predicate: object, timeout: float = 20.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a text exposition, keyed by name and label set."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def scrape(url: str, path: str = "/metrics") -> tuple[str, Samples]:
    r = loopback.get(url + path, timeout=30)
    assert r.status_code == 200, r.text
    return r.text, parse(r.text)


def select(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Samples of one metric whose labels include `labels`."""
    want = set(labels.items())
    return {lbl: v for (n, lbl), v in samples.items() if n == name and want <= lbl}
