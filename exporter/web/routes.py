"""The exporter's WSGI routes: /metrics, /probe, /-/healthy, /-/ready, /-/reload and `/`.

Knows nothing of ALB: the routes are served from a `WebHooks` bundle of callables and
registries that the composition root wires up.
"""

from __future__ import annotations

import gzip
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporter.web.landing import LandingInfo, render_landing

logger = logging.getLogger(__name__)

#: Subtracted from `X-Prometheus-Scrape-Timeout-Seconds` so the answer (rendering,
#: compression, network) still reaches Prometheus before it gives up on the scrape.
SCRAPE_TIMEOUT_OFFSET = 0.5
#: Smallest budget handed to the hooks when the scrape timeout is nearly all offset.
MIN_SCRAPE_BUDGET = 0.1
#: At most this many bytes of an unused request body are read (and dropped) so that
#: closing the connection does not reset it before the client has read the answer.
_MAX_DRAIN = 64 * 1024
_MAX_ECHO = 200

_GET = ("GET", "HEAD")
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class OtherShard:
    """`probe`'s answer for a target that another replica serves (`--shard.*`): shard
    `owner` of `count`; this replica is shard `this`."""

    owner: int
    count: int
    this: int


@dataclass(frozen=True)
class WebHooks:
    """What the routes need from the application.

    `prepare_scrape(budget)` runs before `/metrics` renders `registry`; budget is the
    scrape deadline in seconds (see `scrape_budget`) or None. `probe(account, region,
    budget)` returns a registry holding one target's metrics, an `OtherShard` for a
    target another replica serves, or None for an unknown target. `reload()` returns
    None on success or an error message safe to show.
    """

    prepare_scrape: Callable[[float | None], None]
    registry: CollectorRegistry
    probe: Callable[[str, str, float | None], CollectorRegistry | OtherShard | None]
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
    if isinstance(registry, OtherShard):
        # 404, not 400: the target is configured, just not here. A multi-target scrape
        # config pointed at one replica sees at once which replica to ask instead.
        return _Response.text(
            HTTPStatus.NOT_FOUND,
            f"account {_echo(account)} region {_echo(region)} belongs to shard "
            f"{registry.owner} of {registry.count}; this replica is shard {registry.this}",
            (("X-Shard-Owner", str(registry.owner)),),
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
