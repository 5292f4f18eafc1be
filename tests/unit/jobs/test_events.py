"""Job events: the line of one job, what reaches the output, and the output's life
(configure, reopen after a rename, an unwritable path)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from exporter.alibaba.answers import decode_answer, parse_page
from exporter.jobs.events import JobEvents, event, line
from exporter.jobs.model import Job
from exporter.wire import FAILED, SUCCEEDED
from tests.support.clock import T0
from tests.support.jobs import job as make_job


def job(job_id: str, status: str = FAILED, message: str = "locked") -> Job:
    return make_job(job_id, status, T0, T0 + 12.5, message=message)


def test_the_event_of_a_failed_job() -> None:
    assert event("prod", "cn-hangzhou", job("j1"), T0 + 30) == {
        "type": "alb_job_event",
        "ts": "2023-11-14T22:13:50.000Z",
        "account": "prod",
        "region": "cn-hangzhou",
        "job_id": "j1",
        "status": "Failed",
        "api_name": "CreateListener",
        "operate_type": "Create",
        "resource_type": "listener",
        "resource_id": "lsn-1",
        "error_code": "Conflict.Lock",
        "error_message": "locked",
        "create_time": "2023-11-14T22:13:20.000Z",
        "modify_time": "2023-11-14T22:13:32.500Z",
        "duration_seconds": 12.5,
    }


def test_invalid_utf8_from_the_api_is_one_valid_json_line() -> None:
    raw = (
        b'{"TotalCount":1,"Jobs":[{"Id":"j","Status":"Failed","CreateTime":1700000000000,'
        b'"ErrorMessage":"bad \xff\xfe byte\\nand a newline"}]}'
    )
    jobs, _ = parse_page(decode_answer(httpx.Response(200, content=raw)))
    text = line(event("prod", "cn-hangzhou", jobs[0], T0))
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text)["error_message"] == "bad \ufffd\ufffd byte\nand a newline"


def ids(text: str) -> list[str]:
    return [json.loads(x)["job_id"] for x in text.splitlines()]


def test_only_the_chosen_statuses_reach_the_output(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = JobEvents(str(path), ["Failed"])
    events.emit("prod", "r", [job("f"), job("s", SUCCEEDED)], T0)
    assert events.flush(5)
    assert ids(path.read_text()) == ["f"]
    events.configure(str(path), ["Failed", "Succeeded"])
    events.emit("prod", "r", [job("s2", SUCCEEDED)], T0)
    assert events.flush(5)
    events.configure("", ["Failed"])  # off
    events.emit("prod", "r", [job("f2")], T0)
    events.close()
    assert ids(path.read_text()) == ["f", "s2"]


def test_stdout_goes_to_the_given_descriptor(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    events = JobEvents("stdout", ["Failed"], stdout_fd=write_end)
    events.emit("prod", "r", [job("a"), job("b")], T0)
    events.close()
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        assert ids(reader.read()) == ["a", "b"]


def test_a_renamed_file_is_reopened_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = JobEvents(str(path), ["Failed"])
    events.emit("prod", "r", [job("a")], T0)
    assert events.flush(5)
    path.rename(tmp_path / "events.jsonl.1")
    events.emit("prod", "r", [job("b")], T0)  # before the signal: the old file, or the new
    events.reopen()
    procs_wait(lambda: path.exists())
    events.emit("prod", "r", [job("c")], T0)
    events.close()
    old = ids((tmp_path / "events.jsonl.1").read_text())
    new = ids(path.read_text())
    assert old[0] == "a" and new[-1] == "c" and sorted(old + new) == ["a", "b", "c"]


def test_an_unwritable_output_is_one_error_line_and_loses_nothing_queued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing-dir" / "events.jsonl"
    with caplog.at_level(logging.ERROR, logger="exporter.jobs.events"):
        events = JobEvents(str(path), ["Failed"])
        for name in ("a", "b", "c"):
            events.emit("prod", "r", [job(name)], T0)
        time.sleep(1.2)  # a few attempts to open it
    assert len(caplog.records) == 1 and "cannot open job_events.output" in caplog.text
    assert events.stats() == (3, 0)
    path.parent.mkdir()
    events.emit("prod", "r", [job("d")], T0)
    assert events.flush(5)
    events.close()
    assert ids(path.read_text()) == ["a", "b", "c", "d"]


def procs_wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


# --- a stalled output never blocks emit (issue 23) -----------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe for the output: opening it for writing blocks until a reader opens it."""
    path = tmp_path / "events.fifo"
    os.mkfifo(path)
    return path


@contextlib.contextmanager
def reading(fifo: Path) -> Iterator[int]:
    """The read end of `fifo`, non-blocking; closed on leaving (after the events are)."""
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield reader
    finally:
        os.close(reader)


def test_a_pipe_with_no_reader_is_not_ready_and_emit_does_not_wait(
    fifo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="exporter.jobs.events"):
        started = time.monotonic()
        events = JobEvents(str(fifo), ["Failed"], queue_size=3)
        events.emit("prod", "r", [job(f"j{i}") for i in range(5)], T0)
        assert time.monotonic() - started < 1  # not a timing bound: a blocked open never returns
        assert events.stats() == (3, 2)
        time.sleep(1.2)
    assert "no reader has open" in caplog.text and caplog.text.count("no reader") == 1
    assert caplog.text.count("dropped until it does") == 1
    with reading(fifo) as reader:
        try:
            assert events.flush(5)
            assert ids(os.read(reader, 65536).decode()) == ["j0", "j1", "j2"]
            assert events.stats() == (0, 2)
        finally:
            events.close(timeout=1)


def test_a_reader_that_stops_reading_fills_the_queue_then_gets_every_line_once(
    fifo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with reading(fifo) as reader:
        changes: list[tuple[int, int]] = []
        events = JobEvents(
            str(fifo), ["Failed"], queue_size=100, on_change=lambda q, d: changes.append((q, d))
        )
        try:
            sent = [f"j{i:05d}" for i in range(3000)]  # far more than the pipe holds (64 KiB)
            for start in range(0, len(sent), 10):
                events.emit(
                    "prod", "r", [job(i, message="m" * 200) for i in sent[start : start + 10]], T0
                )
            queued, dropped = events.stats()
            assert queued == 100 and dropped > 0
            assert changes[-1][0] == 100 and sum(d for _, d in changes) == dropped
            got: list[str] = []
            buffer = b""
            deadline = time.monotonic() + 10
            while len(got) + dropped < len(sent):
                assert time.monotonic() < deadline
                try:
                    buffer += os.read(reader, 65536)
                except BlockingIOError:
                    time.sleep(0.01)
                *lines, buffer = buffer.split(b"\n")
                got += [json.loads(x)["job_id"] for x in lines]
            assert len(set(got)) == len(got)  # none twice
            assert got == sorted(got)  # in order
            assert set(got) <= set(sent)
            assert events.stats() == (0, dropped) and changes[-1] == (0, 0)
            # One line per episode, not per write: the queue may empty once while the pipe still
            # had room (a first episode), then fills for good (a second); never more.
            assert 1 <= caplog.text.count("dropped until it does") <= 2
        finally:
            events.close(timeout=1)


def test_close_gives_up_on_a_stalled_output_at_its_deadline(
    fifo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = JobEvents(str(fifo), ["Failed"])
    events.emit("prod", "r", [job("a")], T0)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="exporter.jobs.events"):
        events.close(timeout=0.5)
    assert time.monotonic() - started < 3
    assert "1 events were not written" in caplog.text


def test_a_full_stdout_pipe_does_not_block_emit_and_gets_every_line_once_it_drains() -> None:
    # A container runtime's log pipe that nobody drains: stdout stays a blocking descriptor
    # (the log lines share it), yet emit returns at once and the writer waits alone.
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"#" * 4096)
    os.set_blocking(write_end, True)
    events = JobEvents("stdout", ["Failed"], stdout_fd=write_end, queue_size=10)
    try:
        started = time.monotonic()
        for i in range(15):
            events.emit("prod", "r", [job(f"j{i:02d}")], T0)
        assert time.monotonic() - started < 1  # not a timing bound: a blocked write never returns
        time.sleep(0.5)
        assert events.stats() == (10, 5)
        os.set_blocking(read_end, False)
        received = b""
        deadline = time.monotonic() + 5
        while received.count(b"\n") < 10:
            assert time.monotonic() < deadline
            with contextlib.suppress(BlockingIOError):
                received += os.read(read_end, 1 << 16)
        # The first line follows the filler (no newline of its own in between).
        lines = [x[x.index(b"{") :] for x in received.split(b"\n") if b"{" in x]
        assert [json.loads(x)["job_id"] for x in lines] == [f"j{i:02d}" for i in range(10)]
        assert events.flush(5) and events.stats() == (0, 5)
    finally:
        events.close(timeout=1)
        os.close(write_end)
        os.close(read_end)


def test_the_queued_count_reported_last_is_the_queue_as_it_is(tmp_path: Path) -> None:
    """Found in review: `emit` reported the queue's length after releasing its lock, so
    a report of the writer emptying the queue could come first and the stale length stick
    (`alb_exporter_job_events_queued` above 0 with nothing queued). The hook holds emit's
    report until the writer's report of an empty queue arrived, or for 0.3 s: reported
    under the lock, the writer cannot report before it."""

    drained = threading.Event()
    reports: list[int] = []

    def on_change(queued: int, _dropped: int) -> None:
        thread = threading.current_thread()
        if thread.name == "emitter" and queued:
            drained.wait(0.3)
        elif thread is not threading.main_thread() and not queued:
            drained.set()  # the writer took every line
        reports.append(queued)

    path = tmp_path / "events.jsonl"
    events = JobEvents(str(path), ["Failed"], on_change=on_change)
    emitter = threading.Thread(
        target=events.emit, args=("prod", "r", [job("a"), job("b")], T0), name="emitter"
    )
    emitter.start()
    emitter.join(10)
    assert events.flush(5)
    events.close()
    assert ids(path.read_text()) == ["a", "b"]
    assert reports[-1] == events.stats()[0] == 0
