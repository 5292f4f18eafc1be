"""The state file's background writer (exporter.jobs.state_writer): debounced, at most one
save pending, a last save on close, an unwritable file reported once."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Iterable, Iterator

import pytest

from exporter.jobs.state_writer import StateWriter


class FakeState:
    """Records the saves; `hold` keeps a save running until released; `fail` raises."""

    path = "/state/file.json"

    def __init__(self) -> None:
        self.saves: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.running = threading.Event()
        self.fail: OSError | None = None

    def _save(self, kind: str) -> None:
        self.running.set()
        assert self.hold.wait(10)
        self.saves.append(kind)
        if self.fail is not None:
            raise self.fail

    def maybe_save(self, targets: Iterable[object]) -> bool:
        self._save("maybe")
        return True

    def save(self, targets: Iterable[object]) -> None:
        self._save("final")


@pytest.fixture
def state() -> FakeState:
    return FakeState()


@pytest.fixture
def writers() -> Iterator[list[StateWriter]]:
    made: list[StateWriter] = []
    yield made
    for w in made:
        w.close(timeout=5)


def writer(writers: list[StateWriter], state: FakeState, debounce: float) -> StateWriter:
    w = StateWriter(state, lambda: [], debounce=debounce)  # type: ignore[arg-type]
    writers.append(w)
    return w


def test_a_burst_of_requests_is_one_save(writers: list[StateWriter], state: FakeState) -> None:
    w = writer(writers, state, debounce=0.3)
    for _ in range(20):
        w.request()
    assert w.wait_idle(5)
    assert state.saves == ["maybe"]


def test_requests_during_a_save_are_one_more_save_not_one_each(
    writers: list[StateWriter], state: FakeState
) -> None:
    w = writer(writers, state, debounce=0.0)
    state.hold.clear()
    w.request()
    assert state.running.wait(5)  # the first save is running, held
    for _ in range(10):
        w.request()  # at most one save pending behind it
    state.hold.set()
    assert w.wait_idle(5)
    assert state.saves == ["maybe", "maybe"]


def test_close_writes_once_more_even_with_a_request_still_debouncing(
    writers: list[StateWriter], state: FakeState
) -> None:
    w = StateWriter(state, lambda: [], debounce=60)  # type: ignore[arg-type]
    w.request()
    w.close(timeout=5)  # does not wait out the debounce
    assert state.saves == ["final"]
    w.request()  # after close: ignored, no thread left to write
    assert state.saves == ["final"]


def test_an_unwritable_file_is_one_error_line_until_the_cause_changes(
    writers: list[StateWriter], state: FakeState, caplog: pytest.LogCaptureFixture
) -> None:
    w = writer(writers, state, debounce=0.0)
    state.fail = OSError(errno.EROFS, "Read-only file system")
    with caplog.at_level(logging.INFO, logger="exporter"):
        for _ in range(3):
            w.request()
            assert w.wait_idle(5)
        state.fail = OSError(errno.ENOSPC, "No space left on device")
        w.request()
        assert w.wait_idle(5)
        state.fail = None
        w.request()
        assert w.wait_idle(5)
    lines = [(r.levelname, r.getMessage().split(";")[0]) for r in caplog.records]
    assert lines == [
        ("ERROR", "cannot write state file /state/file.json: [Errno 30] Read-only file system"),
        ("ERROR", "cannot write state file /state/file.json: [Errno 28] No space left on device"),
        ("INFO", "state file /state/file.json written again"),
    ]
    assert "written once it can be" in caplog.records[0].getMessage()
    assert len(state.saves) == 5
