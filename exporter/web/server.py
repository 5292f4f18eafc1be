"""The exporter's HTTP(S) server: a listen-address parser and an event-loop WSGI server.

uvicorn's event loop reads every request whole (head and body, under the deadlines and
sizes of `exporter.web.guard.Limits`) before a worker thread runs the WSGI app (see
`exporter.web.routes`), so idle, slow and never-reading clients hold a socket, never a
thread. TLS comes in as an `ssl.SSLContext`, or a callable asked per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import re
import resource
import socket
import ssl
import threading
from collections.abc import Callable
from itertools import count
from typing import Any
from wsgiref.types import WSGIApplication

import uvicorn

from exporter.web.bridge import WSGIBridge
from exporter.web.guard import Limits, protocol_for
from exporter.web.workers import Workers

logger = logging.getLogger(__name__)

#: Threads running the WSGI app: at most this many requests are answered at once; more
#: wait (on the event loop, costing no thread) for a free one.
MAX_WORKERS = 64
#: The kernel's backlog of connections not yet accepted.
LISTEN_BACKLOG = 1024
#: How long shutdown waits for in-flight answers before dropping them: well inside
#: Kubernetes' default 30 s grace, which must also cover flushing the state and exiting.
GRACEFUL_TIMEOUT = 20.0
#: At most this long for a TLS client to answer our close_notify (asyncio waits 30 s).
_TLS_SHUTDOWN_TIMEOUT = 5.0
#: File descriptors kept free for everything but client connections (targets' HTTP
#: clients, the state file, certificates).
_FD_RESERVE = 256

_servers = count()

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


def raise_open_files_limit(wanted: int = Limits().max_connections + _FD_RESERVE) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as Go's runtime does); return it.

    Each client connection is a file descriptor; distributions' default soft limit of
    1,024 would cap the exporter near a thousand connections. Logs a warning when the
    limit stays below `wanted`.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            logger.debug("cannot raise the open files limit to %d: %s", target, exc)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        logger.warning(
            "open files limit is %d: fewer than %d client connections fit (raise `ulimit -n`)",
            soft,
            max(soft - _FD_RESERVE, 0),
        )
    return soft


SSLContextSource = ssl.SSLContext | Callable[[], ssl.SSLContext]


class _PerConnectionContext(ssl.SSLContext):
    """Hands each new connection to the context `source()` returns at that moment.

    asyncio makes every server-side TLS connection with `wrap_bio`, once, when it is
    accepted: delegating it lets certificates, client CAs and verify mode reloaded from
    disk apply to the next connection, whole, with no restart.
    """

    _source: Callable[[], ssl.SSLContext]

    def __new__(cls, source: Callable[[], ssl.SSLContext]) -> _PerConnectionContext:
        self = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        self._source = source
        return self

    def __init__(self, source: Callable[[], ssl.SSLContext]) -> None:
        pass  # all done in __new__ (ssl.SSLContext takes its protocol there)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        return self._source().wrap_bio(*args, **kwargs)


def _listening_socket(
    host: str, port: int, family: socket.AddressFamily, dual: bool
) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP. Without it Nagle holds an answer's body behind its headers until the
    # client's delayed ACK, 40 ms on Linux, on every request of a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dual:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind(host: str, port: int) -> socket.socket:
    if host == "":
        if socket.has_ipv6:
            try:
                return _listening_socket("::", port, socket.AF_INET6, dual=True)
            except OSError as exc:
                if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    raise
                logger.debug("IPv6 unavailable (%s); listening on IPv4 only", exc)
        return _listening_socket("0.0.0.0", port, socket.AF_INET, dual=False)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve listen host {host!r}: {exc}") from exc
    # Like Go's net.Listen, a name that resolves to both families listens on IPv4.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    return _listening_socket(str(sockaddr[0]), port, family, dual=False)


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, with a stop that is prompt and bounded.

    uvicorn polls its exit flag every 0.1 s, sleeps 0.1 s more on the way out, and at
    its graceful timeout cancels the answers still running, each logged as a crash with
    a traceback. Here a stop wakes the loop at once; in-flight answers get `graceful`
    seconds; then their connections are aborted with one warning.
    """

    def __init__(self, config: uvicorn.Config, graceful: float, read_timeout: float) -> None:
        super().__init__(config)
        self._graceful = graceful
        self._read_timeout = read_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.draining = threading.Event()  # set once no new request can start

    def request_exit(self) -> None:
        """Ask the loop to stop, from any thread."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just ended
                loop.call_soon_threadsafe(wake.set)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's own startup passes no ssl_handshake_timeout, so asyncio's default of
        # 60 s let a client that never sends a ClientHello hold a socket that long (its
        # protocol, and the read deadline, start only after the handshake).
        config = self.config
        loop = asyncio.get_running_loop()
        read_timeout = self._read_timeout
        tls: dict[str, Any] = {}
        if config.ssl is not None:
            tls = {
                "ssl": config.ssl,
                "ssl_handshake_timeout": read_timeout,
                "ssl_shutdown_timeout": min(read_timeout, _TLS_SHUTDOWN_TIMEOUT),
            }

        def create_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=loop,
            )

        self.servers = [
            await loop.create_server(create_protocol, sock=sock, backlog=config.backlog, **tls)
            for sock in sockets or ()
        ]
        self.started = True

    async def main_loop(self) -> None:
        # Both set before the first look at should_exit: a request_exit() racing with
        # the start either sees the loop (and wakes it) or is seen here.
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        while not await self.on_tick(0):  # tick 0: the Date header is refreshed each time
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()  # idle: closed; in flight: closed once answered
        self.draining.set()
        try:
            await asyncio.wait_for(self._drained(), self._graceful)
        except TimeoutError:
            logger.warning(
                "shutdown: drain timeout of %gs passed; dropping %d unfinished answers",
                self._graceful,
                len(state.tasks),
            )
            for connection in list(state.connections):
                connection.transport.abort()
            for task in list(state.tasks):
                task.cancel()  # the bridge ends quietly (see exporter.web.bridge)

    async def _drained(self) -> None:
        while self.server_state.connections or self.server_state.tasks:
            await asyncio.sleep(0.005)


class Server:
    """An HTTP(S) server for a WSGI app, bound at construction.

    Connections live on one event loop (uvicorn) that reads each request whole, under
    `limits` (read deadline, sizes, connection count); then one of at most
    `max_workers` threads runs the app. `shutdown()` stops accepting, closes idle
    connections and waits for in-flight requests, up to `graceful_timeout` seconds, then
    drops them. `ssl_context` (server side,
    certificates loaded; or a callable returning the context for each new connection,
    so it can be swapped at runtime) turns on TLS: the seam for `--web.config.file`.
    Binding errors raise OSError, a malformed address ValueError.
    """

    def __init__(
        self,
        app: WSGIApplication,
        listen_address: str,
        *,
        ssl_context: SSLContextSource | None = None,
        max_workers: int = MAX_WORKERS,
        limits: Limits | None = None,
        graceful_timeout: float = GRACEFUL_TIMEOUT,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        host, port = parse_listen_address(listen_address)
        self._host = host
        self._scheme = "https" if ssl_context is not None else "http"
        self._limits = limits or Limits()
        self._threads = f"http-{next(_servers)}"
        self._executor = Workers(max_workers, self._threads)
        self._sock = _bind(host, port)
        self._port = int(self._sock.getsockname()[1])
        self._config = self._uvicorn_config(app, ssl_context)
        self._graceful = graceful_timeout
        self._uvicorn = _Uvicorn(self._config, graceful_timeout, self._limits.read_timeout)
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._stopped = threading.Event()

    def _uvicorn_config(
        self, app: WSGIApplication, ssl_context: SSLContextSource | None
    ) -> uvicorn.Config:
        limits = self._limits
        self._protocol = protocol_for(limits)
        config = uvicorn.Config(
            WSGIBridge(app, self._executor, limits.max_body),
            http=self._protocol,
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,  # ours is in exporter.web.bridge, at debug
            proxy_headers=False,
            server_header=False,
            # Not uvicorn's limit_concurrency: it answers 503 to every request, even on an
            # open connection, while idle ones fill it; the guard caps at accept instead.
            limit_concurrency=None,
            backlog=LISTEN_BACKLOG,
            timeout_keep_alive=int(max(limits.keep_alive, 1)),
            h11_max_incomplete_event_size=limits.max_head,
        )
        config.load()
        if ssl_context is not None:
            config.ssl = (
                ssl_context
                if isinstance(ssl_context, ssl.SSLContext)
                else _PerConnectionContext(ssl_context)
            )
        # uvicorn's own info lines (startup banner) and per-request warnings for bad
        # requests would flood the exporter's log under hostile clients.
        logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
        return config

    @property
    def worker_count(self) -> int:
        """Worker threads started so far (never more than `max_workers`)."""
        return sum(t.name.startswith(self._threads + "_") for t in threading.enumerate())

    @property
    def queued_requests(self) -> int:
        """Requests received that wait for a worker thread."""
        return self._executor.queued

    @property
    def open_connections(self) -> int:
        """Client connections open now (TLS ones once their handshake is done)."""
        return len(self._uvicorn.server_state.connections)

    @property
    def unsent_bytes(self) -> int:
        """Answer bytes waiting for clients to read them, as last counted (see Limits)."""
        return self._protocol.unsent.total

    @property
    def port(self) -> int:
        return self._port

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
        """Serve until `shutdown()`; returns at once if already shut down.

        `poll_interval` is kept for callers of the old server: a shutdown request
        wakes the loop at once.
        """
        with self._lock:
            if self._closed:
                return
            self._started = True
        try:
            asyncio.run(self._uvicorn.serve(sockets=[self._sock]))
        finally:
            self._sock.close()
            # Not waiting: a worker still in the app after the drain is given up on.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._stopped.set()

    def begin_shutdown(self) -> None:
        """Stop accepting and starting requests; return then, while in-flight ones go on."""
        if self._request_stop():
            self._wait_for(self._uvicorn.draining)

    def shutdown(self) -> None:
        """Stop accepting, wait for in-flight requests (at most `graceful_timeout`), close
        the socket. Idempotent."""
        if self._request_stop():
            self._wait_for(self._stopped)

    def _request_stop(self) -> bool:
        """Ask the loop to stop; False when it never ran (nothing to wait for then)."""
        with self._lock:
            already, self._closed = self._closed, True
            started = self._started
        if not started:
            if not already:
                self._sock.close()
                self._executor.shutdown(wait=False)
            return False
        self._uvicorn.request_exit()
        return True

    def _wait_for(self, event: threading.Event) -> None:
        # Either event, so a loop that died early does not leave the caller waiting.
        deadline = self._graceful + 5
        while not (event.is_set() or self._stopped.wait(min(deadline, 0.05))):
            deadline -= 0.05
            if deadline <= 0:
                return

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
