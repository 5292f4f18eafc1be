"""Shutdown cancels the calls in flight (issue 23, item 4): a thread blocked reading the
answer of a hung API returns at once instead of waiting out `request_timeout`. A real
socket on loopback that accepts and never answers: closing httpx's pool alone does not wake
such a reader, which was the defect, first of `ListAsynJobsClient`, then (found in review)
of discovery's `RpcCaller` and of credential fetches (AssumeRole into a member)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from exporter.alibaba.cancel import Cancel
from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.credentials import provider_for
from exporter.alibaba.discovery import RpcCaller, describe_regions
from exporter.alibaba.signing import Credential, make_signer
from exporter.config import AccountConfig, CredentialsConfig
from exporter.errors import CancelledError, CredentialsError
from exporter.jobs.model import JobQuery
from exporter.wire import ACTION, API_VERSION, DESCRIBE_REGIONS


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
    error = _cancelled_within_seconds(
        lambda: client.list_jobs(JobQuery(begin_time_ms=0)), client.close
    )
    assert isinstance(error, CancelledError)
    assert observed == []  # not an answer of the API: no code counted


def _cancelled_within_seconds(call: Callable[[], object], cancel: Callable[[], None]) -> object:
    """What `call` raised, once `cancel()` ran while it waited for a silent server; the
    calls' timeouts are 60 s, so ending within 10 is the cancellation."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            call()
        except Exception as exc:  # the outcome is what is asserted
            outcome["error"] = exc

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    time.sleep(0.5)  # connected and waiting for the answer
    assert caller.is_alive()
    started = time.monotonic()
    cancel()
    caller.join(10)
    assert not caller.is_alive(), "the call outlived its cancellation"
    assert time.monotonic() - started < 10
    return outcome.get("error")


def test_closing_a_discovery_caller_cancels_its_call_in_flight(silent_server: str) -> None:
    signer = make_signer(
        "v3", lambda: Credential("id", "secret"), action=DESCRIBE_REGIONS, version=API_VERSION
    )
    caller = RpcCaller(silent_server, signer, action=DESCRIBE_REGIONS, timeout=60)
    error = _cancelled_within_seconds(lambda: describe_regions(caller), caller.close)
    assert isinstance(error, CancelledError)  # not retried as a transport failure


def test_a_credential_fetch_in_flight_is_cancelled(silent_server: str) -> None:
    account = AccountConfig(
        "member",
        ("cn-hangzhou",),
        credentials=CredentialsConfig(
            type="ram_role_arn",
            role_arn="acs:ram::1234567890123456:role/alb-jobs-exporter",
            role_session_name="test",
            sts_endpoint=silent_server,
            source=CredentialsConfig(access_key_id="id", access_key_secret="secret"),
        ),
    )
    cancel = Cancel()
    provider = provider_for(account, {}, timeout=60, cancel=cancel)
    error = _cancelled_within_seconds(provider.get, cancel.cancel)
    assert isinstance(error, CredentialsError)
    assert "cancelled" in str(error)
    # And a fetch that starts after the cancellation does not connect at all.
    with pytest.raises(CredentialsError, match="cancelled"):
        provider.invalidate()
        provider.get()
