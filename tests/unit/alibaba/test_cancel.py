"""`ListAsynJobsClient.close()` cancels a call in flight (issue 23, item 4): a thread
blocked reading the answer of a hung API returns at once with CancelledError instead of
waiting out `request_timeout`, and the cancelled attempt is neither retried nor observed.
A real socket on loopback that accepts and never answers: closing httpx's pool alone does
not wake such a reader, which was the defect."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.signing import Credential, make_signer
from exporter.errors import CancelledError
from exporter.jobs.model import JobQuery
from exporter.wire import ACTION, API_VERSION


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections, reads nothing, answers nothing."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_close_cancels_a_call_blocked_on_a_hung_api(silent_server: str) -> None:
    observed: list[str] = []
    signer = make_signer(
        "v3", lambda: Credential("id", "secret"), action=ACTION, version=API_VERSION
    )
    client = ListAsynJobsClient(
        silent_server, signer, timeout=60, observer=lambda code, _s: observed.append(code)
    )
    outcome: dict[str, object] = {}

    def call() -> None:
        try:
            client.list_jobs(JobQuery(begin_time_ms=0))
        except Exception as exc:  # the outcome is what is asserted
            outcome["error"] = exc

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    time.sleep(0.5)  # connected and waiting for the answer
    assert caller.is_alive()
    client.close()
    caller.join(10)  # the timeout is 60 s: ending within 10 is the cancellation
    assert not caller.is_alive()
    assert isinstance(outcome.get("error"), CancelledError)
    assert observed == []  # not an answer of the API: no code counted
