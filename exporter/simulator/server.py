"""Serves a Simulator over real HTTP (threaded, keep-alive, IPv4 or IPv6) from a background
thread, and shuts down without leaving a connection or a thread behind."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from exporter.simulator.core import Simulator
from exporter.simulator.messages import JSON, SimRequest, SimResponse, log


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads are joined on close; `SimulatorServer.shutdown` first shuts their
    # sockets down so idle keep-alive connections cannot hold the close up.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], owner: SimulatorServer, family: int) -> None:
        self.address_family = family
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that go away mid-answer (timeouts, shutdown) are expected, not errors.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Tengine"  # what Alibaba's API gateway says in its Server header
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped after this many seconds
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
    # would add ~40 ms to every answer.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        cast(_HTTPServer, self.server).owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            cast(_HTTPServer, self.server).owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        # The default logs the request line, whose query holds Signature and SecurityToken.
        pass

    def _dispatch(self) -> None:
        owner = cast(_HTTPServer, self.server).owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = SimRequest(
            method=self.command,
            target=self.path,
            headers=tuple(self.headers.items()),
            body=body,
            client=str(self.client_address[0]),
        )
        try:
            response = owner.simulator.handle(request)
        except Exception:
            log.exception("simulator failed on %s %s", self.command, self.path.partition("?")[0])
            response = SimResponse(500, (("Content-Type", JSON),), b'{"Code":"InternalError"}')
        log.debug("%s %s -> %d", self.command, self.path.partition("?")[0], response.status)
        if response.delay > 0 and owner._held_back(response):
            self.close_connection = True
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if owner._stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch


class SimulatorServer:
    """Serves a `Simulator` over HTTP from a background thread.

    `SimulatorServer(sim, "127.0.0.1", 0).start()` binds (port 0: a free port) and serves;
    `.url`, `.port`, `.endpoint_template` describe it; `shutdown()` stops it, wakes hanging
    answers, closes every connection and joins every thread. Also a context manager.
    """

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self._host = host
        self._requested_port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def _held_back(self, response: SimResponse) -> bool:
        """Wait out `response.delay`; True when the server stopped meanwhile. Ends early
        when the fault knobs are cleared (`response.cut`) or the server stops."""
        deadline = time.monotonic() + response.delay
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.wait(min(left, 0.05)):
                return True
            if response.cut is not None and response.cut.is_set():
                return False
        return self._stopping.is_set()

    def start(self) -> SimulatorServer:
        if self._httpd is not None:
            raise RuntimeError("already started")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        self._httpd = _HTTPServer((self._host, self._requested_port), self, family)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # how soon shutdown() is noticed
            name="alb-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if not add:
                self._conns.discard(conn)
            elif self._stopping.is_set():
                conn.shutdown(socket.SHUT_RDWR)  # accepted while stopping: serve nothing
            else:
                self._conns.add(conn)

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("not started")
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        if self._httpd is None:
            raise RuntimeError("not started")
        return str(self._httpd.server_address[0])

    @property
    def url(self) -> str:
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def endpoint_template(self) -> str:
        """An exporter `endpoint` that routes each region to its own simulated job set."""
        return self.url + "/{region}/"

    def shutdown(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> SimulatorServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
