"""HTTP side of the exporter: WSGI routes and a threaded server.

Knows nothing of ALB: the routes are served from a `WebHooks` bundle of callables and
registries that the composition root wires up.
"""

from __future__ import annotations

import errno
import gzip
import html
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

logger = logging.getLogger(__name__)

#: Subtracted from `X-Prometheus-Scrape-Timeout-Seconds` so the answer (rendering,
#: compression, network) still reaches Prometheus before it gives up on the scrape.
SCRAPE_TIMEOUT_OFFSET = 0.5
#: Smallest budget handed to the hooks when the scrape timeout is nearly all offset.
MIN_SCRAPE_BUDGET = 0.1
#: Seconds a connection may stay silent (request line, headers, TLS handshake) before
#: it is dropped; bounds how long `Server.shutdown` can wait on an idle client.
CONNECTION_TIMEOUT = 30.0
#: At most this many bytes of an unused request body are read (and dropped) so that
#: closing the connection does not reset it before the client has read the answer.
_MAX_DRAIN = 64 * 1024
_MAX_ECHO = 200
#: Threads serving requests. wsgiref answers one request per connection, so this bounds
#: concurrent requests; more connections wait in a queue instead of each getting a thread.
MAX_WORKERS = 64
#: Accepted connections waiting for a worker; beyond this a new connection is closed at
#: once (the client sees a reset and retries) rather than holding memory and a socket.
MAX_QUEUED = 512
#: The kernel's backlog of connections not yet accepted.
LISTEN_BACKLOG = 128

_GET = ("GET", "HEAD")
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class LandingTarget:
    """One configured target as shown on the landing page (no secrets)."""

    account: str
    region: str
    up: bool | None  # None: not tried yet
    last_success: float | None  # Unix time
    last_error: str | None


@dataclass(frozen=True)
class LandingInfo:
    version: str
    targets: Sequence[LandingTarget]
    telemetry_path: str


@dataclass(frozen=True)
class WebHooks:
    """What the routes need from the application.

    `prepare_scrape(budget)` runs before `/metrics` renders `registry`; budget is the
    scrape deadline in seconds (see `scrape_budget`) or None. `probe(account, region,
    budget)` returns a registry holding one target's metrics, or None for an unknown
    target. `reload()` returns None on success or an error message safe to show.
    """

    prepare_scrape: Callable[[float | None], None]
    registry: CollectorRegistry
    probe: Callable[[str, str, float | None], CollectorRegistry | None]
    is_ready: Callable[[], bool]
    reload: Callable[[], str | None]
    landing: Callable[[], LandingInfo]


def scrape_budget(header: str | None) -> float | None:
    """Seconds the app may spend refreshing, from `X-Prometheus-Scrape-Timeout-Seconds`.

    The header value minus `SCRAPE_TIMEOUT_OFFSET`, at least `MIN_SCRAPE_BUDGET`; None
    when the header is absent or not a positive finite number.
    """
    if header is None:
        return None
    try:
        timeout = float(header.strip())
    except ValueError:
        return None
    if not math.isfinite(timeout) or timeout <= 0:
        return None
    return max(timeout - SCRAPE_TIMEOUT_OFFSET, MIN_SCRAPE_BUDGET)


@dataclass(frozen=True)
class _Response:
    status: HTTPStatus
    body: bytes
    content_type: str = _TEXT
    headers: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def text(
        cls, status: HTTPStatus, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> _Response:
        return cls(status, (message + "\n").encode("utf-8"), _TEXT, headers)


def _method_not_allowed(allowed: Sequence[str]) -> _Response:
    return _Response.text(
        HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed", (("Allow", ", ".join(allowed)),)
    )


def check_telemetry_path(path: str) -> None:
    """ValueError unless `path` can serve the metrics without shadowing another route."""
    if not path.startswith("/") or path in {"/", "/probe"} or path.startswith("/-/"):
        raise ValueError(
            f"telemetry path {path!r} must start with / and not be /, /probe or under /-/"
        )


def make_wsgi_app(
    hooks: WebHooks,
    telemetry_path: str = "/metrics",
    *,
    authenticate: Callable[[WSGIEnvironment], bool] | None = None,
    headers: Callable[[], Sequence[tuple[str, str]]] | None = None,
) -> WSGIApplication:
    """The exporter's routes as a WSGI application.

    `authenticate(environ)`, when given, guards every route: False answers 401 with a
    Basic challenge. `headers()`, when given, returns extra response headers for every
    answer (401s included), replacing defaults of the same name. Both are the seams for
    `--web.config.file`.
    """
    check_telemetry_path(telemetry_path)
    renders = _SharedRenders()

    def route(environ: WSGIEnvironment) -> _Response:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO") or "/"
        if authenticate is not None and not authenticate(environ):
            return _Response.text(
                HTTPStatus.UNAUTHORIZED,
                "unauthorized",
                (("WWW-Authenticate", 'Basic realm="alb-jobs-exporter"'),),
            )
        if path == "/-/reload":
            if method != "POST":
                return _method_not_allowed(["POST"])
            _drain_body(environ)
            return _reload(hooks)
        handler = {
            telemetry_path: lambda hooks, environ: _metrics(hooks, environ, renders),
            "/probe": _probe,
            "/-/healthy": _healthy,
            "/-/ready": _ready,
            "/": _landing,
        }.get(path)
        if handler is None:
            return _Response.text(HTTPStatus.NOT_FOUND, "not found")
        if method not in _GET:
            return _method_not_allowed(_GET)
        return handler(hooks, environ)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = route(environ)
        except Exception:
            logger.exception(
                "error while answering %s %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
            )
            response = _Response.text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        out = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("X-Content-Type-Options", "nosniff"),
            *response.headers,
        ]
        if headers is not None:
            extra = list(headers())
            names = {name.lower() for name, _ in extra}
            out = [h for h in out if h[0].lower() not in names] + extra
        start_response(f"{response.status.value} {response.status.phrase}", out)
        return [b"" if environ["REQUEST_METHOD"] == "HEAD" else response.body]

    return app


def _drain_body(environ: WSGIEnvironment) -> None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if length > 0:
        environ["wsgi.input"].read(min(length, _MAX_DRAIN))


def _exposition(
    registry: CollectorRegistry,
    environ: WSGIEnvironment,
    renders: _SharedRenders | None = None,
) -> _Response:
    encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
    compress = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))

    def render() -> bytes:
        body = encoder(registry)
        return gzip.compress(body) if compress else body

    body = render() if renders is None else renders.get((content_type, compress), render)
    headers: tuple[tuple[str, str], ...] = (("Vary", "Accept, Accept-Encoding"),)
    if compress:
        headers += (("Content-Encoding", "gzip"),)
    return _Response(HTTPStatus.OK, body, content_type, headers)


def _metrics(hooks: WebHooks, environ: WSGIEnvironment, renders: _SharedRenders) -> _Response:
    hooks.prepare_scrape(scrape_budget(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")))
    return _exposition(hooks.registry, environ, renders)


class _Coalesced:
    """Runs one render at a time and shares each result among the callers that were
    waiting for it ("group commit").

    A caller only takes a result whose render started after the caller arrived, so it
    never sees data older than its own `prepare_scrape`; concurrent scrapers then cost one
    render per batch instead of one each (rendering is CPU-bound and holds the GIL).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._started = 0
        self._done = 0
        self._running = False
        self._last: tuple[bytes | None, BaseException | None] = (None, None)

    def get(self, render: Callable[[], bytes]) -> bytes:
        with self._cond:
            wanted = self._started + 1  # the first render to start after our arrival
            while True:
                if self._done >= wanted:
                    return self._result()
                if not self._running:
                    self._running = True
                    self._started += 1
                    generation = self._started
                    break
                self._cond.wait()
        body: bytes | None = None
        error: BaseException | None = None
        try:
            body = render()
        except BaseException as exc:
            error = exc
        with self._cond:
            self._running = False
            self._done = generation
            self._last = (body, error)
            self._cond.notify_all()
            return self._result()

    def _result(self) -> bytes:
        body, error = self._last
        if error is not None:
            raise error
        assert body is not None
        return body


class _SharedRenders:
    """One `_Coalesced` per exposition variant (format, compression)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._variants: dict[tuple[str, bool], _Coalesced] = {}

    def get(self, variant: tuple[str, bool], render: Callable[[], bytes]) -> bytes:
        with self._lock:
            coalesced = self._variants.setdefault(variant, _Coalesced())
        return coalesced.get(render)


def _probe(hooks: WebHooks, environ: WSGIEnvironment) -> _Response:
    params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    values: dict[str, str] = {}
    for name in ("account", "region"):
        given = params.get(name, [])
        if not given or not given[0]:
            return _Response.text(HTTPStatus.BAD_REQUEST, f"missing parameter {name}")
        if len(given) > 1:
            return _Response.text(HTTPStatus.BAD_REQUEST, f"parameter {name} given more than once")
        values[name] = given[0]
    account, region = values["account"], values["region"]
    budget = scrape_budget(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"))
    registry = hooks.probe(account, region, budget)
    if registry is None:
        return _Response.text(
            HTTPStatus.BAD_REQUEST,
            f"unknown target: account {_echo(account)} region {_echo(region)} is not configured",
        )
    return _exposition(registry, environ)


def _echo(value: str) -> str:
    """A request parameter quoted for a plain-text answer: bounded, control chars escaped."""
    return repr(value[:_MAX_ECHO] + ("..." if len(value) > _MAX_ECHO else ""))


def _healthy(hooks: WebHooks, environ: WSGIEnvironment) -> _Response:
    return _Response.text(HTTPStatus.OK, "Healthy")


def _ready(hooks: WebHooks, environ: WSGIEnvironment) -> _Response:
    if hooks.is_ready():
        return _Response.text(HTTPStatus.OK, "Ready")
    return _Response.text(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready")


def _reload(hooks: WebHooks) -> _Response:
    error = hooks.reload()
    if error is None:
        return _Response.text(HTTPStatus.OK, "config reloaded")
    return _Response.text(HTTPStatus.BAD_REQUEST, error)


def _landing(hooks: WebHooks, environ: WSGIEnvironment) -> _Response:
    page = render_landing(hooks.landing())
    return _Response(HTTPStatus.OK, page.encode("utf-8"), _HTML)


def _utc(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return (
        datetime.fromtimestamp(timestamp, tz=UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def _link(href: str, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def render_landing(info: LandingInfo) -> str:
    """The `/` page: every interpolated value is escaped (names and errors are user data)."""
    up_text = {None: "not tried yet", True: "yes", False: "no"}
    rows = []
    for target in info.targets:
        probe = "/probe?" + urlencode({"account": target.account, "region": target.region})
        rows.append(
            "<tr>"
            f"<td>{html.escape(target.account)}</td>"
            f"<td>{html.escape(target.region)}</td>"
            f"<td>{up_text[target.up]}</td>"
            f"<td>{html.escape(_utc(target.last_success))}</td>"
            f"<td>{html.escape(target.last_error or '')}</td>"
            f"<td>{_link(probe, 'probe')}</td>"
            "</tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="6">no targets configured</td></tr>')
    body = "\n".join(rows)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ALB Jobs Exporter</title>
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}</style>
</head>
<body>
<h1>ALB Jobs Exporter</h1>
<p>Version {html.escape(info.version)}</p>
<ul>
<li>{_link(info.telemetry_path, "Metrics")}</li>
<li>{_link("/-/healthy", "Health")}</li>
<li>{_link("/-/ready", "Readiness")}</li>
</ul>
<table>
<thead><tr><th>account</th><th>region</th><th>up</th><th>last success (UTC)</th>\
<th>last error</th><th>probe</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""


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
