"""The exporter's HTTP(S) server: a listen-address parser and a pooled, threaded WSGI server.

Serves any WSGI application (see `exporter.web.routes`); TLS comes in as an `ssl.SSLContext`.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import queue
import re
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import WSGIApplication

logger = logging.getLogger(__name__)

#: Seconds a connection may stay silent (request line, headers, TLS handshake) before
#: it is dropped; bounds how long `Server.shutdown` can wait on an idle client.
CONNECTION_TIMEOUT = 30.0
#: Threads serving requests. wsgiref answers one request per connection, so this bounds
#: concurrent requests; more connections wait in a queue instead of each getting a thread.
MAX_WORKERS = 64
#: Accepted connections waiting for a worker; beyond this a new connection is closed at
#: once (the client sees a reset and retries) rather than holding memory and a socket.
MAX_QUEUED = 512
#: The kernel's backlog of connections not yet accepted.
LISTEN_BACKLOG = 128


_PORT = re.compile(r"[0-9]{1,5}")


def parse_listen_address(addr: str) -> tuple[str, int]:
    """Split `host:port`, `:port` or `[ipv6]:port`; host "" means all interfaces.

    Raises ValueError naming the problem.
    """
    if not addr:
        raise ValueError("listen address is empty; expected host:port, :port or [ipv6]:port")
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise ValueError(f"listen address {addr!r}: missing ']'")
        host, rest = addr[1:end], addr[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"listen address {addr!r}: expected ':port' after ']'")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"listen address {addr!r}: {host!r} in brackets is not an IPv6 address"
            ) from None
    else:
        if "]" in addr:
            raise ValueError(f"listen address {addr!r}: unbalanced ']'")
        host, sep, port_text = addr.rpartition(":")
        if not sep:
            raise ValueError(f"listen address {addr!r}: missing port (expected host:port)")
        if ":" in host:
            raise ValueError(
                f"listen address {addr!r}: IPv6 addresses must be in brackets, e.g. [::1]:9868"
            )
        if host.strip() != host or "[" in host:
            raise ValueError(f"listen address {addr!r}: invalid host {host!r}")
    if not port_text:
        raise ValueError(f"listen address {addr!r}: missing port")
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(f"listen address {addr!r}: port must be a number from 0 to 65535")
    return host, int(port_text)


class _QuietHandler(WSGIRequestHandler):
    """Access and protocol-error lines go to logging (debug) instead of stderr."""

    timeout = CONNECTION_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def get_stderr(self) -> Any:
        # wsgiref prints application errors it catches to this stream.
        return _LogStream()


class _LogStream:
    def write(self, text: str) -> int:
        if text.strip():
            logger.error("wsgi: %s", text.rstrip())
        return len(text)

    def flush(self) -> None:
        pass


SSLContextSource = ssl.SSLContext | Callable[[], ssl.SSLContext]


class _PooledServer(WSGIServer):
    """WSGIServer whose connections are served by a bounded, lazily grown thread pool.

    Threads are started as concurrent connections need them, up to `max_workers`; they
    then stay for the life of the server. `server_close()` lets queued and in-flight
    requests finish, then stops the workers (graceful shutdown).
    """

    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        host: str,
        port: int,
        family: socket.AddressFamily,
        *,
        dual_stack: bool,
        ssl_context: SSLContextSource | None,
        max_workers: int = MAX_WORKERS,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        if max_workers < 1 or max_queued < 1:
            raise ValueError("max_workers and max_queued must be at least 1")
        self.address_family = family
        self.dual_stack = dual_stack
        self.ssl_context = ssl_context
        self._max_workers = max_workers
        self._queue: queue.Queue[tuple[Any, Any] | None] = queue.Queue(maxsize=max_queued)
        self._pool_lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._pending = 0  # connections queued or being served
        self._closing = False
        self._dropped = 0
        self._drop_logged = -math.inf
        super().__init__((host, port), _QuietHandler, bind_and_activate=False)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    @property
    def worker_count(self) -> int:
        with self._pool_lock:
            return len(self._workers)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._pool_lock:
            if self._closing:
                self.shutdown_request(request)
                return
            self._pending += 1
            if self._pending > len(self._workers) and len(self._workers) < self._max_workers:
                worker = threading.Thread(
                    target=self._work, name=f"http-{len(self._workers)}", daemon=True
                )
                self._workers.append(worker)
                worker.start()
        try:
            self._queue.put_nowait((request, client_address))
        except queue.Full:
            with self._pool_lock:
                self._pending -= 1
            self._drop(request, client_address)

    def _drop(self, request: Any, client_address: Any) -> None:
        self.shutdown_request(request)
        self._dropped += 1
        now = time.monotonic()
        if now - self._drop_logged >= 10:
            self._drop_logged = now
            logger.warning(
                "too many connections: %d waiting for %d workers; dropped %d so far (last from %s)",
                self._queue.maxsize,
                self._max_workers,
                self._dropped,
                client_address,
            )

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self._pool_lock:
                    self._pending -= 1

    def server_close(self) -> None:
        super().server_close()
        with self._pool_lock:
            self._closing = True
            workers = list(self._workers)
        for _ in workers:
            self._queue.put(None)  # behind every queued connection: those are served first
        for worker in workers:
            worker.join()

    def server_bind(self) -> None:
        if self.dual_stack:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # HTTPServer.server_bind would reverse-resolve the address (getfqdn), which can
        # stall startup on a host with broken DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()
        if self.ssl_context is not None:
            self.base_environ["HTTPS"] = "on"

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs here, in the request's thread, so a slow or broken client
        # cannot hold up the accept loop. A callable source is asked per connection, so
        # certificates reloaded from disk apply to the next connection.
        request.settimeout(CONNECTION_TIMEOUT)
        source = self.ssl_context
        try:
            context = source if isinstance(source, ssl.SSLContext) else source()
            tls = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            self.shutdown_request(tls)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s failed", client_address, exc_info=True)


def _bind(host: str, port: int, ssl_context: SSLContextSource | None, **pool: int) -> _PooledServer:
    if host == "":
        if socket.has_ipv6:
            try:
                return _PooledServer(
                    "::", port, socket.AF_INET6, dual_stack=True, ssl_context=ssl_context, **pool
                )
            except OSError as exc:
                if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    raise
                logger.debug("IPv6 unavailable (%s); listening on IPv4 only", exc)
        return _PooledServer(
            "0.0.0.0", port, socket.AF_INET, dual_stack=False, ssl_context=ssl_context, **pool
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve listen host {host!r}: {exc}") from exc
    # Like Go's net.Listen, a name that resolves to both families listens on IPv4.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    return _PooledServer(
        str(sockaddr[0]), port, family, dual_stack=False, ssl_context=ssl_context, **pool
    )


class Server:
    """A threaded HTTP(S) server for a WSGI app, bound at construction.

    Requests run on a pool of at most `max_workers` threads; up to `max_queued` further
    connections wait for a free worker, later ones are closed at once. `shutdown()`
    stops accepting and waits for queued and in-flight requests. `ssl_context` (server
    side, certificates loaded; or a callable returning the context for each new
    connection, so it can be swapped at runtime) turns on TLS: the seam for
    `--web.config.file`. Binding errors raise OSError, a malformed address ValueError.
    """

    def __init__(
        self,
        app: WSGIApplication,
        listen_address: str,
        *,
        ssl_context: SSLContextSource | None = None,
        max_workers: int = MAX_WORKERS,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        host, port = parse_listen_address(listen_address)
        self._host = host
        self._scheme = "https" if ssl_context is not None else "http"
        self._httpd = _bind(host, port, ssl_context, max_workers=max_workers, max_queued=max_queued)
        self._httpd.set_app(app)
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    @property
    def worker_count(self) -> int:
        """Worker threads started so far (never more than `max_workers`)."""
        return self._httpd.worker_count

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without trailing slash; wildcard hosts are shown as localhost."""
        host = self._host
        if host in {"", "0.0.0.0", "::"}:
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"{self._scheme}://{host}:{self.port}"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until `shutdown()` (noticed within `poll_interval` seconds).

        Returns at once if already shut down.
        """
        with self._lock:
            if self._closed:
                return
            self._started = True
        self._httpd.serve_forever(poll_interval)

    def shutdown(self) -> None:
        """Stop accepting, wait for in-flight requests, close the socket. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        if started:
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()
