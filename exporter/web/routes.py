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

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from exporter.web.exposition import fast_encoder
from exporter.web.landing import LandingInfo, render_landing

logger = logging.getLogger(__name__)

#: Subtracted from `X-Prometheus-Scrape-Timeout-Seconds` so the answer (rendering,
#: compression, network) still reaches Prometheus before it gives up on the scrape.
SCRAPE_TIMEOUT_OFFSET = 0.5
#: Smallest budget handed to the hooks when the scrape timeout is nearly all offset.
MIN_SCRAPE_BUDGET = 0.1
#: zlib's default, as client_golang's exporters use: level 9 (gzip.compress's default)
#: takes 4x the CPU (40 ms against 11 ms per MB of exposition) for 15 % fewer bytes.
GZIP_LEVEL = 6
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
    None on success or an error message safe to show. `generation` and `probe_version`
    let renders be cached (see `_RenderCache`).
    """

    prepare_scrape: Callable[[float | None], None]
    registry: Collector
    probe: Callable[[str, str, float | None], Collector | OtherShard | None]
    is_ready: Callable[[], bool]
    reload: Callable[[], str | None]
    landing: Callable[[], LandingInfo]
    # The data generation behind `registry`: a number that grows (after the change is
    # published) whenever anything `registry` exposes may have changed. With it a render
    # is reused until the generation moves; without it every scrape renders.
    generation: Callable[[], int] | None = None
    # What one target's probe exposition is made of (any value that compares equal
    # exactly when the exposition would be the same), None for an unknown target.
    probe_version: Callable[[str, str], object] | None = None


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
    renders = _RenderCache(hooks.generation)
    probes = _ProbeCache()

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
            "/probe": lambda hooks, environ: _probe(hooks, environ, probes),
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


Variant = tuple[str, bool]  # (content type, gzip)


def _known_content_types() -> frozenset[str]:
    formats = (
        "application/openmetrics-text; version=1.0.0",
        "text/plain; version=0.0.4",
        "text/plain; version=1.0.0",
    )
    escapings = (
        "",
        "; escaping=underscores",
        "; escaping=allow-utf-8",
        "; escaping=values",
        "; escaping=dots",
    )
    return frozenset(choose_encoder(f + e)[1] for f in formats for e in escapings)


#: What the caches may be keyed by. prometheus_client copies the version a client asks for
#: into the content type (`version=1.0.<n>` for any n), so an unknown one is answered as
#: its format's standard version: a client cannot make the render caches grow without end.
KNOWN_CONTENT_TYPES = _known_content_types()
_STANDARD_ACCEPT = {True: "application/openmetrics-text; version=1.0.0", False: "text/plain"}


def _variant(environ: WSGIEnvironment) -> tuple[Variant, Callable[[Collector], bytes]]:
    encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
    if content_type not in KNOWN_CONTENT_TYPES:
        openmetrics = content_type.startswith("application/openmetrics-text")
        encoder, content_type = choose_encoder(_STANDARD_ACCEPT[openmetrics])
    compress = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
    return (content_type, compress), fast_encoder(content_type, encoder)


def _answer(variant: Variant, body: bytes) -> _Response:
    content_type, compress = variant
    headers: tuple[tuple[str, str], ...] = (("Vary", "Accept, Accept-Encoding"),)
    if compress:
        headers += (("Content-Encoding", "gzip"),)
    return _Response(HTTPStatus.OK, body, content_type, headers)


def _metrics(hooks: WebHooks, environ: WSGIEnvironment, renders: _RenderCache) -> _Response:
    hooks.prepare_scrape(scrape_budget(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")))
    variant, encoder = _variant(environ)
    content_type, compress = variant
    registry = hooks.registry

    def plain() -> bytes:
        return encoder(registry)

    if compress:
        # The compressed variant is made from the plain one of the same generation: one
        # collect per change of the data, however many variants are asked for.
        body = renders.get(
            variant,
            lambda: gzip.compress(
                renders.get((content_type, False), plain, arrive=False), GZIP_LEVEL
            ),
        )
    else:
        body = renders.get(variant, plain)
    return _answer(variant, body)


@dataclass
class _Entry:
    generation: int = -1  # of the data `body` was rendered from (at least)
    body: bytes | None = None
    running: int | None = None  # the generation the render in progress started at


class _RenderCache:
    """The newest render of each exposition variant, reused while the data is unchanged.

    A caller reads the data generation when it arrives (after its `prepare_scrape`) and
    takes only a render that started at that generation or later, so it never gets data
    older than what it waited for. Renders of a variant run one at a time (rendering is
    CPU-bound and holds the GIL), and the callers waiting for one share its result
    ("group commit"). Without a generation source each arrival counts as a change: every
    scrape then gets a render that started after it arrived, shared with the scrapes that
    arrived during the render before it.
    """

    def __init__(self, generation: Callable[[], int] | None) -> None:
        self._source = generation
        self._cond = threading.Condition()
        self._arrivals = 0
        self._entries: dict[Variant, _Entry] = {}

    def _generation(self, *, arrive: bool) -> int:
        if self._source is not None:
            return self._source()
        with self._cond:
            self._arrivals += int(arrive)
            return self._arrivals

    def get(self, variant: Variant, render: Callable[[], bytes], *, arrive: bool = True) -> bytes:
        wanted = self._generation(arrive=arrive)
        with self._cond:
            entry = self._entries.setdefault(variant, _Entry())
            while True:
                if entry.body is not None and entry.generation >= wanted:
                    return entry.body
                if entry.running is None:
                    break
                self._cond.wait()  # for the render in progress: ours or the one before it
            started = self._generation(arrive=False)
            entry.running = started
        try:
            body = render()
        except BaseException:
            with self._cond:
                entry.running = None
                self._cond.notify_all()
            raise
        with self._cond:
            entry.running = None
            if started >= entry.generation:
                entry.generation, entry.body = started, body
            self._cond.notify_all()
        return body


class _ProbeCache:
    """Each target's last probe render per variant, with the version it was made from.

    No coalescing: a target is probed by one Prometheus job, rarely twice at once.
    """

    # Entries of targets a reload removed stay until this many are held; then all go.
    MAX_ENTRIES = 8192

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, Variant], tuple[object, bytes]] = {}

    def get(self, key: tuple[str, str, Variant], version: object) -> bytes | None:
        with self._lock:
            held = self._entries.get(key)
        if held is None or held[0] != version:
            return None
        return held[1]

    def put(self, key: tuple[str, str, Variant], version: object, body: bytes) -> None:
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (version, body)


def _probe(hooks: WebHooks, environ: WSGIEnvironment, cache: _ProbeCache) -> _Response:
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
    variant, encoder = _variant(environ)
    # Read after the probe's refresh and before rendering: the render holds this data or
    # newer, so a later scrape that finds the same version may reuse it.
    version = None if hooks.probe_version is None else hooks.probe_version(account, region)
    key = (account, region, variant)
    body = None if version is None else cache.get(key, version)
    if body is None:
        body = encoder(registry)
        if variant[1]:
            body = gzip.compress(body, GZIP_LEVEL)
        if version is not None:
            cache.put(key, version, body)
    return _answer(variant, body)


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
