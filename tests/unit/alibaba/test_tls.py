"""Outgoing HTTPS clients share one TLS context (exporter.alibaba.tls).

A context loads the whole CA bundle: at 1,000 targets one per client cost 800 MiB of RSS
and 10 s of start-up CPU, found by the 1,000-target bench. Shared, its ALPN list must be
set once: httpcore sets it for every connection, which on a shared context races with
other threads' connections in C.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import certifi
import httpx
import pytest

from exporter.alibaba import tls
from exporter.alibaba.client import ListAsynJobsClient
from tests.support.tlsutil import make_ca


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Counts CA bundle loads (whoever loads them); a new shared context per test."""
    loads: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(kwargs.get("cafile") or kwargs.get("capath") or args)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls.shared_context.cache_clear()
    yield loads
    tls.shared_context.cache_clear()


def test_many_clients_load_the_ca_bundle_once(fresh: list[object]) -> None:
    clients = [
        ListAsynJobsClient(f"https://alb.cn-region{i}.aliyuncs.com", httpx.Auth())
        for i in range(50)
    ]
    try:
        assert fresh == [certifi.where()]
    finally:
        for client in clients:
            client.close()


def test_the_shared_context_verifies_certificates(fresh: list[object]) -> None:
    context = tls.shared_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0


def test_ssl_cert_file_is_honoured_as_httpx_does(
    fresh: list[object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    tls.shared_context()
    assert fresh == [str(bundle)]


def test_alpn_is_set_once_however_often_connections_ask(
    fresh: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    context = tls.shared_context()
    sets: list[tuple[str, ...]] = []
    real = ssl.SSLContext.set_alpn_protocols

    def counting(self: ssl.SSLContext, protocols: list[str]) -> None:
        sets.append(tuple(protocols))
        real(self, protocols)

    monkeypatch.setattr(ssl.SSLContext, "set_alpn_protocols", counting)
    for _ in range(100):  # what httpcore does for each new HTTPS connection
        context.set_alpn_protocols(["http/1.1"])
    assert sets == []
    context.set_alpn_protocols(["h2", "http/1.1"])  # a different list still takes effect
    assert sets == [("h2", "http/1.1")]


def test_clients_on_many_threads_connect_over_tls_with_the_shared_context(
    fresh: list[object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Real handshakes on loopback: each request a new connection (as after keep-alive
    # expiry), from four threads at once, every one verified against the test CA.
    ca = make_ca(tmp_path)
    issued = ca.issue(tmp_path, "localhost", server=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert))
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(issued.cert, issued.key)
    server_side.set_alpn_protocols(["http/1.1"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.socket = server_side.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://localhost:{server.server_address[1]}/"
    try:
        clients = [httpx.Client(verify=tls.shared_context()) for _ in range(4)]

        def fetch(client: httpx.Client) -> list[int]:
            codes = []
            for _ in range(5):
                codes.append(client.get(url, headers={"Connection": "close"}).status_code)
            return codes

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(fetch, clients))
        assert results == [[200] * 5] * 4
        assert fresh == [str(ca.cert)]
    finally:
        server.shutdown()
        server.server_close()


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass
