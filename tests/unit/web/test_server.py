"""The server of exporter.web (exporter.web.server), exercised over real loopback HTTP."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.web import Server, WebHooks, make_wsgi_app, parse_listen_address
from tests.support import loopback
from tests.support.tlsutil import make_ca
from tests.unit.web.fakes import POLL, FakeApp, serving


def _require_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.fail("this Python has no IPv6 support (socket.has_ipv6 is False)")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.fail(f"cannot bind the IPv6 loopback [::1] on this machine: {exc}")


# --- server -----------------------------------------------------------------------------


def test_server_url_and_port(fake: FakeApp) -> None:
    with serving(fake.hooks()) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"


def test_requests_are_served_concurrently(fake: FakeApp) -> None:
    barrier = threading.Barrier(2, timeout=5)

    def rendezvous(budget: float | None) -> None:
        barrier.wait()

    hooks = replace(fake.hooks(), prepare_scrape=rendezvous)
    results: list[int] = []

    with serving(hooks) as server:

        def scrape() -> None:
            with loopback.client(base_url=server.url, timeout=10) as c:
                results.append(c.get("/metrics").status_code)

        threads = [threading.Thread(target=scrape) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert results == [200, 200]  # a serial server would break the barrier -> 500s


def test_shutdown_waits_for_in_flight_request(fake: FakeApp) -> None:
    entered = threading.Event()
    finished = threading.Event()

    def slow_prepare(budget: float | None) -> None:
        entered.set()
        time.sleep(1)
        finished.set()

    app = make_wsgi_app(replace(fake.hooks(), prepare_scrape=slow_prepare))
    server = Server(app, "127.0.0.1:0")
    serve = threading.Thread(target=server.serve_forever, args=(POLL,))
    serve.start()
    results: list[httpx.Response] = []

    def scrape() -> None:
        with loopback.client(base_url=server.url, timeout=10) as c:
            results.append(c.get("/metrics"))

    client_thread = threading.Thread(target=scrape)
    client_thread.start()
    try:
        assert entered.wait(5)
        server.shutdown()
        assert finished.is_set(), "shutdown returned before the in-flight request finished"
    finally:
        server.shutdown()
        serve.join(timeout=10)
        client_thread.join(timeout=10)
    assert not serve.is_alive() and not client_thread.is_alive()
    assert [r.status_code for r in results] == [200]
    assert 'main_gauge{account="prod"}' in results[0].text
    with pytest.raises(httpx.ConnectError), loopback.client(base_url=server.url) as c:
        c.get("/-/healthy")


def _gated(fake: FakeApp) -> tuple[WebHooks, threading.Event, list[int]]:
    """Hooks whose scrapes block until the returned event is set; counts them entering."""
    gate = threading.Event()
    entered: list[int] = []

    def wait_for_gate(budget: float | None) -> None:
        entered.append(1)
        assert gate.wait(10)

    return replace(fake.hooks(), prepare_scrape=wait_for_gate), gate, entered


def test_worker_pool_bounds_threads_and_the_rest_wait(fake: FakeApp) -> None:
    hooks, gate, entered = _gated(fake)
    results: list[int] = []
    lock = threading.Lock()
    with serving(hooks, max_workers=3) as server:

        def scrape() -> None:
            with loopback.client(base_url=server.url, timeout=20) as c:
                code = c.get("/metrics").status_code
            with lock:
                results.append(code)

        clients = [threading.Thread(target=scrape) for _ in range(12)]
        for t in clients:
            t.start()
        # Every request received: three in the workers, the other nine waiting for one.
        deadline = time.monotonic() + 10
        while (len(entered), server.queued_requests) != (3, 9) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.queued_requests == 9
        assert len(entered) == 3
        assert server.worker_count == 3
        gate.set()
        for t in clients:
            t.join(timeout=20)
        assert server.worker_count == 3
    assert results == [200] * 12


def test_pool_size_must_be_positive(fake: FakeApp) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        Server(make_wsgi_app(fake.hooks()), "127.0.0.1:0", max_workers=0)


def test_ssl_context_may_be_a_callable_asked_per_connection(fake: FakeApp, tmp_path: Path) -> None:
    cert_file, key_file, ca_file = _server_cert(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    asked: list[int] = []

    def current() -> ssl.SSLContext:
        asked.append(1)
        return server_ctx

    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    with serving(fake.hooks(), "localhost:0", ssl_context=current) as server:
        assert server.url.startswith("https://")
        for _ in range(2):
            with loopback.client(base_url=server.url, verify=client_ctx) as c:
                assert c.get("/-/healthy").status_code == 200
    assert len(asked) == 2


def _in_thread(call: Any) -> threading.Thread:
    # A daemon thread: if `call` hangs, the test fails at its join() instead of hanging.
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def test_shutdown_without_serve_forever(fake: FakeApp) -> None:
    server = Server(make_wsgi_app(fake.hooks()), "127.0.0.1:0")
    socket.create_connection(("127.0.0.1", server.port), timeout=1).close()  # bound

    def shut_down_twice() -> None:
        server.shutdown()
        server.shutdown()

    # socketserver's own shutdown() waits forever for a serve_forever() that never ran.
    stopping = _in_thread(shut_down_twice)
    stopping.join(timeout=1)
    assert not stopping.is_alive(), "shutdown() hangs without serve_forever()"
    loop = _in_thread(lambda: server.serve_forever(POLL))
    loop.join(timeout=1)
    assert not loop.is_alive(), "serve_forever() after shutdown() does not return"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_ipv6_loopback(fake: FakeApp) -> None:
    _require_ipv6_loopback()
    with serving(fake.hooks(), "[::1]:0") as server, loopback.client(base_url=server.url) as c:
        assert server.url == f"http://[::1]:{server.port}"
        assert c.get("/-/healthy").text == "Healthy\n"


def test_wildcard_port_is_dual_stack(fake: FakeApp) -> None:
    _require_ipv6_loopback()
    with serving(fake.hooks(), ":0") as server:
        assert server.url == f"http://localhost:{server.port}"
        for host in ("127.0.0.1", "[::1]"):
            with loopback.client(base_url=f"http://{host}:{server.port}") as c:
                assert c.get("/-/healthy").status_code == 200, host


def test_bind_conflict_raises_at_construction(fake: FakeApp) -> None:
    app = make_wsgi_app(fake.hooks())
    with Server(app, "127.0.0.1:0") as first, pytest.raises(OSError):
        Server(app, f"127.0.0.1:{first.port}")


def test_unresolvable_host_raises(fake: FakeApp) -> None:
    with pytest.raises(OSError, match="cannot resolve listen host"):
        Server(make_wsgi_app(fake.hooks()), "no-such-host.invalid:0")


def _server_cert(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(cert, key, CA cert) for "localhost", from the suite's shared test CA helper."""
    ca = make_ca(tmp_path)
    issued = ca.issue(tmp_path, "localhost", server=True)
    return issued.cert, issued.key, ca.cert


def test_tls_via_ssl_context(fake: FakeApp, tmp_path: Path) -> None:
    cert_file, key_file, ca_file = _server_cert(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    with serving(fake.hooks(), "localhost:0", ssl_context=server_ctx) as server:
        assert server.url.startswith("https://localhost:")
        with loopback.client(base_url=server.url, verify=client_ctx) as c:
            assert c.get("/-/healthy").text == "Healthy\n"
        # A plain-HTTP client fails its handshake without disturbing the server.
        with (
            loopback.client(base_url=server.url.replace("https", "http")) as plain,
            pytest.raises(httpx.HTTPError),
        ):
            plain.get("/-/healthy")
        with loopback.client(base_url=server.url, verify=client_ctx) as c:
            assert c.get("/-/healthy").status_code == 200


# --- parse_listen_address --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        (":9868", ("", 9868)),
        ("0.0.0.0:9868", ("0.0.0.0", 9868)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9868", ("::1", 9868)),
        ("[::]:80", ("::", 80)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
        ("localhost:9868", ("localhost", 9868)),
        ("exporter.example.com:65535", ("exporter.example.com", 65535)),
    ],
)
def test_parse_listen_address(addr: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(addr) == expected


@pytest.mark.parametrize(
    ("addr", "message"),
    [
        ("", "empty"),
        ("9868", "missing port"),
        ("localhost", "missing port"),
        ("localhost:", "missing port"),
        (":", "missing port"),
        ("localhost:http", "port must be a number"),
        ("localhost:65536", "port must be a number from 0 to 65535"),
        ("localhost:-1", "port must be a number"),
        ("localhost:+80", "port must be a number"),
        ("localhost: 80", "port must be a number"),
        ("localhost:123456", "port must be a number"),
        ("[::1:9868", "missing ']'"),
        ("::1]:9868", "unbalanced ']'"),
        ("[::1]9868", "expected ':port' after ']'"),
        ("[::1]", "expected ':port' after ']'"),
        ("[::1]:", "missing port"),
        ("[localhost]:80", "not an IPv6 address"),
        ("::1:9868", "IPv6 addresses must be in brackets"),
        ("[[::1]]:80", "expected ':port' after ']'"),
        (" localhost:80", "invalid host"),
    ],
)
def test_parse_listen_address_rejects(addr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_listen_address(addr)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::1]:0", ":0"])
def test_accepted_connections_send_without_nagles_delay(listen: str) -> None:
    # Nagle's algorithm held each answer's body behind its headers until the client's
    # delayed ACK: 40 ms per request on a kept-alive connection (44 ms for /-/healthy).
    # asyncio turns it off (TCP_NODELAY) only on sockets whose proto is IPPROTO_TCP, so
    # what counts is that a connection accepted from the server's socket gets it.
    if listen.startswith("[") and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    server = Server(lambda environ, start_response: [], listen)
    try:
        sock = server._sock  # the listening socket, as uvicorn is handed it

        async def accepted_nodelay() -> int:
            loop = asyncio.get_running_loop()
            seen: asyncio.Future[int] = loop.create_future()

            class Probe(asyncio.Protocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    peer = transport.get_extra_info("socket")
                    seen.set_result(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                    transport.close()

            aserver = await loop.create_server(Probe, sock=sock)
            host = "::1" if listen.startswith("[") else "127.0.0.1"
            _, writer = await asyncio.open_connection(host, server.port)
            try:
                return await asyncio.wait_for(seen, 10)
            finally:
                writer.close()
                aserver.close()

        assert asyncio.run(accepted_nodelay()) != 0
    finally:
        server.shutdown()
