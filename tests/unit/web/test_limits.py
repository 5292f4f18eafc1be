"""The server's limits (exporter.web.guard.Limits) against hostile clients, over real
loopback sockets: idle and slow connections hold no thread and are cut by the read
deadline; oversized heads and bodies are refused; unread answers are dropped."""

from __future__ import annotations

import resource
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest

from exporter.web import Limits, Server, raise_open_files_limit
from tests.support import loopback
from tests.support.tlsutil import make_ca
from tests.unit.web.fakes import FakeApp, big_app, serve_in_thread, serving
from tests.unit.web.rawhttp import (
    ask,
    closed_by_server,
    connect,
    read_answer,
    read_to_eof,
    status,
    wait_until,
)


@contextmanager
def _open_connections(server: Server, n: int, first_bytes: bytes = b"") -> Iterator[None]:
    with ExitStack() as stack:
        for _ in range(n):
            sock = stack.enter_context(connect(server))
            if first_bytes:
                sock.sendall(first_bytes)
        yield


# --- regressions: these failed on the old thread-per-connection server -----------------


def test_idle_and_half_sent_connections_do_not_starve_scrapes(fake: FakeApp) -> None:
    # The old server gave each connection a worker from accept until its request was
    # read: two silent clients held both workers and the scrape waited 30 s.
    with (
        serving(fake.hooks(), max_workers=2) as server,
        _open_connections(server, 20),
        _open_connections(server, 20, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "),
        loopback.client(base_url=server.url, timeout=3) as c,
    ):
        began = time.monotonic()
        for _ in range(5):
            assert c.get("/metrics").status_code == 200
        assert time.monotonic() - began < 3
        assert server.worker_count <= 2


def test_oversized_request_line_is_414(fake: FakeApp) -> None:
    with serving(fake.hooks()) as server:
        target = "/metrics?" + "a" * (Limits().max_request_line + 1)
        answer = ask(server, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status(answer) == 414
        # Arriving in pieces, before the line ends, makes no difference.
        with connect(server) as sock:
            sock.sendall(b"GET /" + b"b" * 5000)
            sock.sendall(b"c" * 5000)
            assert status(sock.recv(65536)) == 414


def test_oversized_header_block_is_431(fake: FakeApp) -> None:
    with serving(fake.hooks()) as server:
        one = f"X-Big: {'v' * 20_000}\r\n"
        many = "".join(f"X-Filler-{i}: {'v' * 100}\r\n" for i in range(150))  # ~17 KiB
        for filler in (one, many):
            answer = ask(server, f"GET /metrics HTTP/1.1\r\nHost: x\r\n{filler}\r\n".encode())
            assert status(answer) == 431
            assert b"Connection: close" in answer
        # Just under the limit is served.
        filler = "X-Filler: " + "v" * (Limits().max_head - 200) + "\r\n"
        answer = ask(
            server,
            f"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{filler}\r\n".encode(),
        )
        assert status(answer) == 200


# --- the read deadline ----------------------------------------------------------------


def test_a_trickled_header_is_cut_by_the_read_deadline(fake: FakeApp) -> None:
    limits = Limits(read_timeout=0.5)
    with serving(fake.hooks(), limits=limits) as server, connect(server) as sock:
        began = time.monotonic()
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        try:
            for byte in b"Host: example.com\r\n":  # a byte per 0.1 s: past the deadline
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while trickling
        assert closed_by_server(sock, within=3)
        assert time.monotonic() - began >= limits.read_timeout


def test_a_silent_connection_is_cut_and_a_prompt_one_is_not(fake: FakeApp) -> None:
    limits = Limits(read_timeout=0.3)
    with serving(fake.hooks(), limits=limits) as server:
        with connect(server) as silent:
            began = time.monotonic()
            assert closed_by_server(silent, within=3)
            assert time.monotonic() - began >= limits.read_timeout * 0.9
        # A keep-alive client asking again within the deadline keeps its connection: one
        # raw socket, so a reconnect (as httpx would do on its own) cannot hide a cut.
        with connect(server) as sock:
            for _ in range(3):
                sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_answer(sock) == (200, b"Healthy\n")
                time.sleep(0.15)  # the client's think time: 0.45 s in all, past a deadline


def test_a_trickled_body_is_cut_by_the_read_deadline(fake: FakeApp) -> None:
    limits = Limits(read_timeout=0.5)
    with serving(fake.hooks(), limits=limits) as server, connect(server) as sock:
        began = time.monotonic()
        sock.sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        assert closed_by_server(sock, within=3)
        assert time.monotonic() - began >= limits.read_timeout * 0.9
    assert fake.reloads == 0  # the app never ran on a body that never came whole


# --- bodies, answers nobody reads, connection count -----------------------------------


def test_a_declared_body_over_the_limit_is_413(fake: FakeApp) -> None:
    with serving(fake.hooks()) as server:
        length = Limits().max_body + 1
        answer = ask(
            server,
            f"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode(),
        )
        assert status(answer) == 413
    assert fake.reloads == 0


def test_a_chunked_body_over_the_limit_is_413(fake: FakeApp) -> None:
    chunk = b"x" * 16384
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    with serving(fake.hooks()) as server:
        head = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        assert status(ask(server, head + body)) == 413
        small = b"4\r\nabcd\r\n0\r\n\r\n"
        assert (
            status(ask(server, head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + small))
            == 200
        )
    assert fake.reloads == 1


def test_an_answer_never_read_is_dropped_after_the_send_timeout() -> None:
    limits = Limits(send_timeout=0.5)
    with Server(big_app, "127.0.0.1:0", limits=limits) as server:
        serve = serve_in_thread(server)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: server.open_connections == 1)
            began = time.monotonic()
            # Reads nothing: the server is stuck sending, then gives up on the connection.
            wait_until(lambda: server.open_connections == 0)
            assert time.monotonic() - began >= limits.send_timeout * 0.5
            received = 0
            sock.settimeout(5)
            try:
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
            except ConnectionResetError:
                pass
            assert received < 8 << 20  # cut short, not delivered late
    serve.join(timeout=10)
    assert not serve.is_alive()


def test_a_full_server_closes_its_oldest_idle_connection_not_a_request(fake: FakeApp) -> None:
    # uvicorn's own cap answered 503 to every request, even on a connection already open,
    # while idle connections filled it: a crowd of idle connects blinded the scrapes.
    request = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
    with (
        serving(fake.hooks(), limits=Limits(max_connections=3)) as server,
        connect(server) as scraper,
        connect(server) as idle_1,
        connect(server) as idle_2,
    ):
        wait_until(lambda: server.open_connections == 3)
        scraper.sendall(request)  # at the cap, on an open connection: served
        assert read_answer(scraper) == (200, b"Healthy\n")
        with connect(server) as newcomer:  # one over: the oldest idle one makes room
            assert closed_by_server(idle_1, within=3)
            newcomer.sendall(request)
            assert read_answer(newcomer)[0] == 200
            assert not closed_by_server(idle_2, within=0.05)
            scraper.sendall(request)
            assert read_answer(scraper)[0] == 200
        assert server.open_connections <= 3


def test_a_full_server_of_busy_connections_refuses_the_newcomer(fake: FakeApp) -> None:
    gate = threading.Event()

    def held(budget: float | None) -> None:
        assert gate.wait(10)

    hooks = replace(fake.hooks(), prepare_scrape=held)
    with serving(hooks, limits=Limits(max_connections=2)) as server:
        busy = [connect(server), connect(server)]
        try:
            for sock in busy:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: server.open_connections == 2)
            with connect(server) as newcomer:
                assert status(read_to_eof(newcomer)) == 503
            gate.set()
            assert [read_answer(sock)[0] for sock in busy] == [200, 200]
        finally:
            gate.set()
            for sock in busy:
                sock.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /metrics HTTP/1.0\r\n\r\n",
    ],
    ids=["keep-alive", "connection-close", "http-1.0"],
)
def test_an_answer_slower_than_the_read_deadline_is_delivered(
    fake: FakeApp, request_bytes: bytes
) -> None:
    # The read deadline is for the request; once it is in, the answer takes what it takes.
    def slow(budget: float | None) -> None:
        time.sleep(0.35)

    hooks = replace(fake.hooks(), prepare_scrape=slow)
    with serving(hooks, limits=Limits(read_timeout=0.2)) as server, connect(server) as sock:
        sock.sendall(request_bytes)
        assert read_answer(sock)[0] == 200


def test_a_half_closed_client_gets_its_answer(fake: FakeApp) -> None:
    # `printf 'GET ...' | nc host port` sends the request, then its end of the stream.
    with serving(fake.hooks()) as server, connect(server) as sock:
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        answer = read_to_eof(sock)  # and the server closes after answering
        assert status(answer) == 200
        assert answer.endswith(b"Healthy\n")


def test_a_tls_handshake_never_finished_is_cut_by_the_read_deadline(
    fake: FakeApp, tmp_path: Path
) -> None:
    ca = make_ca(tmp_path)
    issued = ca.issue(tmp_path, "localhost", server=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    limits = Limits(read_timeout=0.3)
    with (
        serving(fake.hooks(), ssl_context=context, limits=limits) as server,
        connect(server) as sock,  # plain TCP: no ClientHello ever comes
    ):
        began = time.monotonic()
        assert closed_by_server(sock, within=3)
        assert time.monotonic() - began >= limits.read_timeout * 0.9


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        got = raise_open_files_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == got
        assert got == hard or hard == resource.RLIM_INFINITY
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _huge(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    # Big next to what the kernel's socket buffers take off the server (~3 MiB here).
    body = b"x" * (24 << 20)
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def _never_reading(server: Server) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def test_unread_answers_over_the_memory_budget_drop_the_oldest_stalled() -> None:
    # Each never-reading client holds a whole copy of its answer for the send timeout;
    # 10,000 of them, one of /metrics each, was the only memory bound.
    limits = Limits(max_unsent=32 << 20)  # room for one 24 MiB answer, not two
    with Server(_huge, "127.0.0.1:0", limits=limits) as server:
        serve = serve_in_thread(server)
        with _never_reading(server) as first:
            wait_until(lambda: server.unsent_bytes > 16 << 20)
            with _never_reading(server) as second:
                assert closed_by_server(first, within=3)  # long before the 30 s timeout
                assert server.open_connections == 1
                assert 0 < server.unsent_bytes <= limits.max_unsent
                second.settimeout(5)
                received = 0
                while received < 24 << 20 and (chunk := second.recv(1 << 20)):
                    received += len(chunk)
                assert received >= 24 << 20  # the newer one, read at last, is whole
    serve.join(timeout=10)


def test_an_oversized_pipelined_header_block_is_431_after_the_answer_before_it(
    fake: FakeApp,
) -> None:
    filler = f"X-Big: {'v' * 20_000}\r\n".encode()
    with serving(fake.hooks()) as server, connect(server) as sock:
        # One write, so both requests come in before the first is answered.
        sock.sendall(
            b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n"
            + filler
            + b"\r\n"
        )
        first, healthy, second = read_to_eof(sock).partition(b"Healthy\n")
        assert healthy and status(first) == 200
        assert status(second) == 431
