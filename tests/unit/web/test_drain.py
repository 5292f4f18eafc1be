"""How the server stops (exporter.web.server.Server.shutdown) when clients make that hard:
an answer slower than the drain allows, a pipelining client that reads nothing. SIGTERM
must end well inside Kubernetes' 30 s grace, so the state can still be flushed."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest

from exporter.web import Limits, Server
from tests.unit.web.fakes import big_app, serve_in_thread
from tests.unit.web.rawhttp import connect, wait_until


def test_an_answer_slower_than_the_drain_is_dropped_on_time_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entered, release = threading.Event(), threading.Event()

    def stuck(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        entered.set()
        release.wait(10)
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    server = Server(stuck, "127.0.0.1:0", graceful_timeout=0.3)
    serve = serve_in_thread(server)
    try:
        with connect(server) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert entered.wait(5)
            began = time.monotonic()
            with caplog.at_level(logging.WARNING):
                server.shutdown()
            took = time.monotonic() - began
            assert 0.3 <= took < 1.5, f"shutdown took {took:.2f}s for a 0.3 s drain"
            assert not serve.is_alive()
            assert sock.recv(100) == b""  # dropped, not answered after the drain
        # No traceback: one warning saying what was given up.
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert any("drain" in r.getMessage() for r in caplog.records)
        # The worker still stuck in the app must not keep the process from exiting.
        workers = [t for t in threading.enumerate() if t.name.startswith("http-")]
        assert workers and all(t.daemon for t in workers)
    finally:
        release.set()
        server.shutdown()


def test_a_pipelining_client_that_reads_nothing_does_not_hold_up_shutdown() -> None:
    # The second answer waits for the first to leave the buffer: "in flight" for as long
    # as the send timeout (30 s), which used to outlast the whole drain.
    limits = Limits(drain_send_timeout=0.2)
    server = Server(big_app, "127.0.0.1:0", limits=limits, graceful_timeout=10)
    serve = serve_in_thread(server)
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
            wait_until(lambda: server.open_connections == 1)
            time.sleep(0.2)  # not a synchronisation: the client's refusal to read, in time
            began = time.monotonic()
            server.shutdown()
            took = time.monotonic() - began
            assert took < 2, f"shutdown took {took:.2f}s"
            assert not serve.is_alive()
    finally:
        server.shutdown()


def test_shutdown_of_an_idle_server_is_prompt() -> None:
    # uvicorn polls for the exit flag every 0.1 s and sleeps 0.1 s more on the way out.
    server = Server(big_app, "127.0.0.1:0")
    serve = serve_in_thread(server)
    with connect(server):  # serving: one connection accepted
        wait_until(lambda: server.open_connections == 1)
    began = time.monotonic()
    server.shutdown()
    assert time.monotonic() - began < 0.15
    assert not serve.is_alive()
