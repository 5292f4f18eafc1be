"""A stalled job-events output never stops the exporter (issue 23, item 1), end to end:
the real exporter process against the real simulator process, `job_events.output` a named
pipe made with `os.mkfifo`.

1. No reader for 30 s: the exporter starts, scrapes answer within 2 s and refreshes
   advance; events queue up to `job_events.queue_size`, the rest are dropped and counted.
2. A reader attaches, reads, then stops reading for 30 s (the pipe fills): the same.
3. The reader resumes: every failure the exporter counted arrives exactly once (ids
   compared with the simulator's truth), or is counted in
   `alb_exporter_job_events_dropped_total`.

The simulator fails 15 jobs a second throughout, so both stalls overflow the queue.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import loopback, procs
from tests.support.configs import UNPACED, access_key, account, write_config

# timing: scrapes answer within 2 s while the output is stalled.
pytestmark = [pytest.mark.e2e, pytest.mark.timing]

KEY_ID = "LTAI5tEventsStallKey0001"
SECRET = "stall-Secret-Value-00001"
REGION = "cn-hangzhou"
STALL = 30.0
QUEUE = 100
TICK = 0.2  # seconds
# Failed jobs per tick: 15 a second, with lines of about 1 kB (a 250-character multibyte
# ErrorMessage), so a 30 s stall overflows the pipe (64 KiB, about 65 lines) and the queue
# (100 lines) both, with room to spare on a slow machine.
PER_TICK = 3
MESSAGE = "é" * 250


class Failures:
    """Fails PER_TICK new jobs every TICK in the simulator until stopped; `ids` is the
    truth."""

    def __init__(self, sim: procs.Proc) -> None:
        self.sim = sim
        self.ids: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            now_ms = int(procs.control(self.sim, "GET", "/_sim/state")["now"] * 1000)
            ids = [f"fail-{len(self.ids) + n:05d}" for n in range(PER_TICK)]
            procs.put_jobs(
                self.sim,
                REGION,
                *[{"Id": job_id, "Status": "Failed", "ErrorCode": "Conflict.Lock",
                   "ErrorMessage": MESSAGE, "CreateTime": now_ms} for job_id in ids],
            )  # fmt: skip
            self.ids.extend(ids)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def sample(url: str) -> dict[str, float]:
    started = time.monotonic()
    r = loopback.get(url + "/metrics", timeout=30)
    took = time.monotonic() - started
    assert r.status_code == 200
    samples = procs.parse(r.text)

    def total(name: str) -> float:
        return sum(procs.select(samples, name).values())

    return {
        "took": took,
        "last_success": total("alb_exporter_last_success_timestamp_seconds"),
        "failed": total("alb_async_jobs_failures_total"),
        "queued": total("alb_exporter_job_events_queued"),
        "dropped": total("alb_exporter_job_events_dropped_total"),
        "up": total("alb_exporter_up"),
    }


def stalled_phase(url: str, seconds: float) -> dict[str, float]:
    """Scrapes every half second for `seconds`: each answered within 2 s, refreshes
    advancing; returns the last sample."""
    first = last = sample(url)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        last = sample(url)
        assert last["took"] < 2, f"a scrape took {last['took']:.1f}s"
        assert last["up"] == 1
        time.sleep(0.5)
    # cache_ttl is 0.3 s and each scrape refreshes: the data served keeps up with the clock.
    assert last["last_success"] - first["last_success"] >= seconds - 5
    assert last["failed"] > first["failed"]
    return last


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "events.fifo"
    os.mkfifo(path)
    yield path


def test_a_stalled_named_pipe_stops_neither_refreshes_nor_scrapes_and_loses_no_count(
    tmp_path: Path, fifo: Path, start_simulator: procs.Simulators, start_exporter: procs.Exporters
) -> None:
    sim = start_simulator([REGION], keys={KEY_ID: SECRET}, jobs_per_minute=0, history="0s")
    prod = account(sim, "prod", [REGION], access_key(KEY_ID, SECRET), **UNPACED)
    cfg = write_config(
        tmp_path / "config.yaml",
        [prod],
        cache_ttl=0.3,
        job_events={"output": str(fifo), "queue_size": QUEUE},
    )
    failures: Failures | None = None
    reader = -1
    try:
        # 1. No reader: it starts all the same (before the fix it never listened).
        with start_exporter(cfg) as proc:
            # Only now: a job already failed when the exporter first lists is history.
            failures = Failures(sim)
            last = stalled_phase(proc.url, STALL)
            assert last["queued"] == QUEUE and last["dropped"] > 0
            assert "no reader has open" in proc.output()

            # 2. A reader attaches, takes what is there, then stops reading: the pipe fills.
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            received = bytearray()
            until = time.monotonic() + 3
            while time.monotonic() < until:
                received += read_available(reader)
                time.sleep(0.1)
            assert received.count(b"\n") >= QUEUE  # the queue went out at once
            dropped_before = sample(proc.url)["dropped"]
            last = stalled_phase(proc.url, STALL)
            assert last["queued"] == QUEUE and last["dropped"] > dropped_before

            # 3. The reader resumes: the queue drains, nothing twice, nothing lost uncounted.
            failures.stop()
            procs.wait_until(lambda: sample(proc.url)["failed"] == len(failures.ids), timeout=30)

            def drained() -> bool:
                received.extend(read_available(reader))
                return sample(proc.url)["queued"] == 0

            procs.wait_until(drained, timeout=30)
            time.sleep(0.5)
            received += read_available(reader)
            final = sample(proc.url)
    finally:
        if failures is not None:
            failures.stop()
        if reader >= 0:
            os.close(reader)
    lines = bytes(received).decode().splitlines()
    got = [json.loads(line)["job_id"] for line in lines]
    assert len(got) == len(set(got)), "an event was written twice"
    assert set(got) <= set(failures.ids)
    assert final["failed"] == len(failures.ids)  # every failure counted...
    assert len(got) + final["dropped"] == len(failures.ids)  # ...and written once or dropped
    # What each stall queued was delivered: the bound drops the overflow, not the queue.
    assert len(got) >= 2 * QUEUE


def read_available(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
