"""Routes and server of exporter.web, exercised over real loopback HTTP."""

from __future__ import annotations

import base64
import gzip
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.web.server import (
    LandingInfo,
    LandingTarget,
    Server,
    WebHooks,
    make_wsgi_app,
    parse_listen_address,
    scrape_budget,
)
from tests.support.tlsutil import make_ca

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
POLL = 0.01  # serve_forever poll interval: shutdown latency per test


def _registry(name: str, value: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge(name, "A test gauge.", ["account"], registry=registry)
    gauge.labels(account="prod").set(value)
    return registry


@dataclass
class FakeApp:
    """Stands in for the hook callables the composition root would pass."""

    registry: CollectorRegistry = field(default_factory=lambda: _registry("main_gauge", 1))
    probe_registry: CollectorRegistry = field(default_factory=lambda: _registry("probe_gauge", 2))
    ready: bool = False
    reload_error: str | None = None
    scrape_budgets: list[float | None] = field(default_factory=list)
    probe_calls: list[tuple[str, str, float | None]] = field(default_factory=list)
    reloads: int = 0
    targets: tuple[LandingTarget, ...] = ()

    def prepare_scrape(self, budget: float | None) -> None:
        self.scrape_budgets.append(budget)

    def probe(self, account: str, region: str, budget: float | None) -> CollectorRegistry | None:
        self.probe_calls.append((account, region, budget))
        if (account, region) == ("prod", "cn-hangzhou"):
            return self.probe_registry
        return None

    def reload(self) -> str | None:
        self.reloads += 1
        return self.reload_error

    def landing(self) -> LandingInfo:
        return LandingInfo(version="1.2.3", targets=self.targets, telemetry_path="/metrics")

    def hooks(self) -> WebHooks:
        return WebHooks(
            prepare_scrape=self.prepare_scrape,
            registry=self.registry,
            probe=self.probe,
            is_ready=lambda: self.ready,
            reload=self.reload,
            landing=self.landing,
        )


@contextmanager
def serving(
    hooks: WebHooks,
    listen: str = "127.0.0.1:0",
    telemetry_path: str = "/metrics",
    **kwargs: Any,
) -> Iterator[Server]:
    authenticate = kwargs.pop("authenticate", None)
    headers = kwargs.pop("headers", None)
    app = make_wsgi_app(hooks, telemetry_path, authenticate=authenticate, headers=headers)
    server = Server(app, listen, **kwargs)
    thread = threading.Thread(target=server.serve_forever, args=(POLL,), name="test-server")
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.fixture
def fake() -> FakeApp:
    return FakeApp()


@pytest.fixture
def client(fake: FakeApp) -> Iterator[httpx.Client]:
    with serving(fake.hooks()) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def _require_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.fail("this Python has no IPv6 support (socket.has_ipv6 is False)")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.fail(f"cannot bind the IPv6 loopback [::1] on this machine: {exc}")


# --- /metrics ---------------------------------------------------------------------


def test_metrics_text_format(client: httpx.Client, fake: FakeApp) -> None:
    response = client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "content-encoding" not in response.headers
    assert response.content == generate_latest(fake.registry)
    assert 'main_gauge{account="prod"} 1.0' in response.text
    assert fake.scrape_budgets == [None]


def test_metrics_openmetrics_when_asked(client: httpx.Client, fake: FakeApp) -> None:
    response = client.get(
        "/metrics", headers={"Accept": OPENMETRICS, "Accept-Encoding": "identity"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(OPENMETRICS)
    assert response.content == generate_openmetrics(fake.registry)  # type: ignore[no-untyped-call]
    assert response.text.endswith("# EOF\n")


def test_metrics_gzip(client: httpx.Client, fake: FakeApp) -> None:
    with client.stream("GET", "/metrics", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) == len(raw)
    assert gzip.decompress(raw) == generate_latest(fake.registry)


@pytest.mark.parametrize(
    ("header", "budget"),
    [("10", 9.5), ("2.5", 2.0), ("0.3", 0.1), ("abc", None), ("-1", None), ("nan", None)],
)
def test_scrape_timeout_header_becomes_budget(
    client: httpx.Client, fake: FakeApp, header: str, budget: float | None
) -> None:
    response = client.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": header})
    assert response.status_code == 200
    assert fake.scrape_budgets == [budget]


@pytest.mark.parametrize(
    ("header", "budget"),
    [(None, None), ("", None), (" 15 ", 14.5), ("0.5", 0.1), ("inf", None), ("0", None)],
)
def test_scrape_budget(header: str | None, budget: float | None) -> None:
    assert scrape_budget(header) == budget


def test_custom_telemetry_path(fake: FakeApp) -> None:
    with (
        serving(fake.hooks(), telemetry_path="/custom/metrics") as server,
        httpx.Client(base_url=server.url) as c,
    ):
        assert c.get("/custom/metrics").status_code == 200
        assert c.get("/metrics").status_code == 404


@pytest.mark.parametrize("path", ["metrics", "/", "/probe", "/-/metrics"])
def test_telemetry_path_must_not_clash(fake: FakeApp, path: str) -> None:
    with pytest.raises(ValueError, match="telemetry path"):
        make_wsgi_app(fake.hooks(), path)


# --- /probe -----------------------------------------------------------------------


def test_probe_known_target_serves_only_its_registry(client: httpx.Client, fake: FakeApp) -> None:
    response = client.get(
        "/probe",
        params={"account": "prod", "region": "cn-hangzhou"},
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "5", "Accept-Encoding": "identity"},
    )
    assert response.status_code == 200
    assert response.content == generate_latest(fake.probe_registry)
    assert "main_gauge" not in response.text
    assert fake.probe_calls == [("prod", "cn-hangzhou", 4.5)]
    assert fake.scrape_budgets == []


def test_probe_openmetrics(client: httpx.Client, fake: FakeApp) -> None:
    response = client.get(
        "/probe",
        params={"account": "prod", "region": "cn-hangzhou"},
        headers={"Accept": OPENMETRICS},
    )
    assert response.headers["content-type"].startswith(OPENMETRICS)
    assert response.content == generate_openmetrics(fake.probe_registry)  # type: ignore[no-untyped-call]


def test_probe_unknown_target(client: httpx.Client, fake: FakeApp) -> None:
    response = client.get("/probe", params={"account": "nope", "region": "cn-hangzhou"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert (
        response.text == "unknown target: account 'nope' region 'cn-hangzhou' is not configured\n"
    )
    assert fake.probe_calls == [("nope", "cn-hangzhou", None)]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "missing parameter account\n"),
        ("region=cn-hangzhou", "missing parameter account\n"),
        ("account=&region=cn-hangzhou", "missing parameter account\n"),
        ("account=prod", "missing parameter region\n"),
        ("account=prod&account=dev&region=r", "parameter account given more than once\n"),
    ],
)
def test_probe_bad_parameters(
    client: httpx.Client, fake: FakeApp, query: str, message: str
) -> None:
    response = client.get("/probe?" + query)
    assert response.status_code == 400
    assert response.text == message
    assert fake.probe_calls == []


# --- health, readiness, reload ----------------------------------------------------------


def test_healthy(client: httpx.Client) -> None:
    response = client.get("/-/healthy")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "Healthy\n"


def test_ready_follows_hook(client: httpx.Client, fake: FakeApp) -> None:
    response = client.get("/-/ready")
    assert (response.status_code, response.text) == (503, "Not ready\n")
    fake.ready = True
    response = client.get("/-/ready")
    assert (response.status_code, response.text) == (200, "Ready\n")


def test_reload_ok(client: httpx.Client, fake: FakeApp) -> None:
    response = client.post("/-/reload")
    assert (response.status_code, response.text) == (200, "config reloaded\n")
    assert fake.reloads == 1


def test_reload_error_is_reported(client: httpx.Client, fake: FakeApp) -> None:
    fake.reload_error = "accounts[0].regions: must not be empty"
    response = client.post("/-/reload", content=b"ignored body")
    assert response.status_code == 400
    assert response.text == "accounts[0].regions: must not be empty\n"


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
def test_reload_needs_post(client: httpx.Client, fake: FakeApp, method: str) -> None:
    response = client.request(method, "/-/reload")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert fake.reloads == 0


@pytest.mark.parametrize("path", ["/metrics", "/-/healthy", "/-/ready", "/", "/probe"])
def test_post_on_get_routes_is_405(client: httpx.Client, fake: FakeApp, path: str) -> None:
    response = client.post(path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert fake.scrape_budgets == []


@pytest.mark.parametrize("path", ["/metrics", "/-/healthy", "/"])
def test_head_is_get_without_body(client: httpx.Client, path: str) -> None:
    identity = {"Accept-Encoding": "identity"}
    get = client.get(path, headers=identity)
    head = client.head(path, headers=identity)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.content))


@pytest.mark.parametrize("path", ["/nope", "/metrics/", "/-/", "/favicon.ico"])
def test_unknown_path_is_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert (response.status_code, response.text) == (404, "not found\n")


# --- landing page ---------------------------------------------------------------------


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False
        self.scripts = 0
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_title = tag == "title"
        self.scripts += tag == "script"
        self.images += tag == "img"
        if tag == "a":
            self.links.extend(value or "" for name, value in attrs if name == "href")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False


def test_landing_page_escapes_and_links(client: httpx.Client, fake: FakeApp) -> None:
    hostile = "<script>alert(1)</script>"
    fake.targets = (
        LandingTarget(
            hostile, "cn-hangzhou", up=False, last_success=None, last_error="<img src=x>"
        ),
        LandingTarget("prod", "cn-shanghai", up=True, last_success=0.0, last_error=None),
        LandingTarget("new", "cn-beijing", up=None, last_success=None, last_error=None),
    )
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    text = response.text
    assert text.startswith("<!DOCTYPE html>")
    assert hostile not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x&gt;" in text
    assert "1.2.3" in text
    assert "1970-01-01T00:00:00Z" in text
    page = _Page()
    page.feed(text)
    page.close()
    assert page.title == "ALB Jobs Exporter"
    assert (page.scripts, page.images) == (0, 0)
    assert page.links == [
        "/metrics",
        "/-/healthy",
        "/-/ready",
        "/probe?account=%3Cscript%3Ealert%281%29%3C%2Fscript%3E&region=cn-hangzhou",
        "/probe?account=prod&region=cn-shanghai",
        "/probe?account=new&region=cn-beijing",
    ]
    probe = client.get(page.links[4])
    assert probe.status_code == 400  # FakeApp knows prod only in cn-hangzhou


def test_landing_page_uses_telemetry_path_from_info(fake: FakeApp) -> None:
    hooks = replace(
        fake.hooks(),
        landing=lambda: LandingInfo(version="x", targets=(), telemetry_path='/m?a=1&b="2"'),
    )
    with serving(hooks) as server, httpx.Client(base_url=server.url) as c:
        text = c.get("/").text
    assert 'href="/m?a=1&amp;b=&quot;2&quot;"' in text
    assert "no targets configured" in text


# --- errors -----------------------------------------------------------------------------


def _raise(*args: object) -> Any:
    raise RuntimeError("boom with secret AKIDsecret123")


@pytest.mark.parametrize(
    ("hook", "method", "path"),
    [
        ("prepare_scrape", "GET", "/metrics"),
        ("probe", "GET", "/probe?account=a&region=b"),
        ("is_ready", "GET", "/-/ready"),
        ("reload", "POST", "/-/reload"),
        ("landing", "GET", "/"),
    ],
)
def test_hook_exception_is_500_without_details(
    fake: FakeApp, caplog: pytest.LogCaptureFixture, hook: str, method: str, path: str
) -> None:
    overrides: dict[str, Any] = {hook: _raise}
    hooks = replace(fake.hooks(), **overrides)
    with (
        caplog.at_level(logging.ERROR, logger="exporter.web.server"),
        serving(hooks) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        response = c.request(method, path)
    assert (response.status_code, response.text) == (500, "internal error\n")
    assert "secret" not in response.text
    errors = [r for r in caplog.records if r.name == "exporter.web.server" and r.exc_info]
    assert len(errors) == 1
    assert path.split("?")[0] in errors[0].getMessage()


def test_collector_exception_is_500(fake: FakeApp) -> None:
    class Broken:
        def collect(self) -> Iterator[Any]:
            raise RuntimeError("secret")

    registry = CollectorRegistry()
    registry.register(Broken())
    with (
        serving(replace(fake.hooks(), registry=registry)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        response = c.get("/metrics")
    assert (response.status_code, response.text) == (500, "internal error\n")


# --- authentication seam -------------------------------------------------------------------


def test_authenticate_hook_guards_every_route(fake: FakeApp) -> None:
    good = "Basic " + base64.b64encode(b"alice:pw").decode()
    seen: list[str | None] = []

    def authenticate(environ: dict[str, Any]) -> bool:
        seen.append(environ.get("HTTP_AUTHORIZATION"))
        return environ.get("HTTP_AUTHORIZATION") == good

    with (
        serving(fake.hooks(), authenticate=authenticate) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        for path in ("/metrics", "/-/healthy", "/", "/nope"):
            denied = c.get(path)
            assert denied.status_code == 401
            assert denied.headers["www-authenticate"].startswith("Basic realm=")
        assert c.get("/metrics", headers={"Authorization": good}).status_code == 200
    assert fake.scrape_budgets == [None]
    assert seen[-1] == good


def test_configured_headers_go_on_every_answer(fake: FakeApp) -> None:
    configured = [("X-Frame-Options", "deny"), ("x-content-type-options", "nosniff")]
    with (
        serving(
            fake.hooks(),
            authenticate=lambda env: "HTTP_AUTHORIZATION" in env,
            headers=lambda: configured,
        ) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        for r in (c.get("/metrics"), c.get("/nope", headers={"Authorization": "x"})):
            assert r.status_code in (401, 404)
            assert r.headers["X-Frame-Options"] == "deny"
            # A configured header replaces the default of the same name, not doubles it.
            assert r.headers.get_list("X-Content-Type-Options") == ["nosniff"]


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
            with httpx.Client(base_url=server.url, timeout=10) as c:
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
        with httpx.Client(base_url=server.url, timeout=10) as c:
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
    with pytest.raises(httpx.ConnectError), httpx.Client(base_url=server.url) as c:
        c.get("/-/healthy")


class _SlowCollector:
    """Each collect() takes a while and exposes how many renders came before it."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.renders = 0
        self.started = threading.Event()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        self.renders += 1
        generation = self.renders
        self.started.set()
        time.sleep(self.delay)
        yield GaugeMetricFamily("render_generation", "which render this is", value=generation)


def test_concurrent_scrapes_share_renders_started_after_they_arrived(fake: FakeApp) -> None:
    collector = _SlowCollector(0.8)
    registry = CollectorRegistry()
    registry.register(collector)
    hooks = replace(fake.hooks(), registry=registry)
    bodies: list[str] = []
    lock = threading.Lock()
    with serving(hooks) as server:

        def scrape() -> None:
            with httpx.Client(base_url=server.url, timeout=20) as c:
                r = c.get("/metrics")
            assert r.status_code == 200
            with lock:
                bodies.append(r.text)

        first = threading.Thread(target=scrape)
        first.start()
        assert collector.started.wait(5)
        # These arrive while render 1 runs: they must not get its (older) result, and
        # they share one render between them instead of rendering five times.
        later = [threading.Thread(target=scrape) for _ in range(5)]
        for t in later:
            t.start()
        for t in [first, *later]:
            t.join(timeout=20)
    generations = sorted(
        float(line.split()[-1])
        for b in bodies
        for line in b.splitlines()
        if line.startswith("render_generation ")
    )
    assert generations == [1.0] + [2.0] * 5
    assert collector.renders == 2


def _gated(fake: FakeApp) -> tuple[WebHooks, threading.Event, list[int]]:
    """Hooks whose scrapes block until the returned event is set; counts them entering."""
    gate = threading.Event()
    entered: list[int] = []

    def wait_for_gate(budget: float | None) -> None:
        entered.append(1)
        assert gate.wait(10)

    return replace(fake.hooks(), prepare_scrape=wait_for_gate), gate, entered


def test_worker_pool_bounds_threads_and_queues_the_rest(fake: FakeApp) -> None:
    hooks, gate, entered = _gated(fake)
    results: list[int] = []
    lock = threading.Lock()
    with serving(hooks, max_workers=3, max_queued=50) as server:

        def scrape() -> None:
            with httpx.Client(base_url=server.url, timeout=20) as c:
                code = c.get("/metrics").status_code
            with lock:
                results.append(code)

        clients = [threading.Thread(target=scrape) for _ in range(12)]
        for t in clients:
            t.start()
        deadline = time.monotonic() + 5
        while len(entered) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the other nine would have entered by now if they had threads
        assert len(entered) == 3
        assert server.worker_count == 3
        gate.set()
        for t in clients:
            t.join(timeout=20)
        assert server.worker_count == 3
    assert results == [200] * 12


def test_connections_beyond_the_queue_are_closed(fake: FakeApp) -> None:
    hooks, gate, entered = _gated(fake)
    with serving(hooks, max_workers=1, max_queued=1) as server:
        done: list[int] = []

        def scrape() -> None:
            with httpx.Client(base_url=server.url, timeout=20) as c:
                done.append(c.get("/metrics").status_code)

        first = threading.Thread(target=scrape)
        first.start()
        deadline = time.monotonic() + 5
        while not entered and time.monotonic() < deadline:
            time.sleep(0.01)
        queued = socket.create_connection(("127.0.0.1", server.port))  # waits in the queue
        time.sleep(0.2)
        with (
            httpx.Client(base_url=server.url, timeout=5) as c,
            pytest.raises(httpx.TransportError),
        ):
            c.get("/-/healthy")  # no room: closed at once rather than kept waiting
        gate.set()
        first.join(timeout=20)
        queued.close()
        with httpx.Client(base_url=server.url, timeout=5) as c:
            assert c.get("/-/healthy").status_code == 200
    assert done == [200]


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
            with httpx.Client(base_url=server.url, verify=client_ctx) as c:
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
    with serving(fake.hooks(), "[::1]:0") as server, httpx.Client(base_url=server.url) as c:
        assert server.url == f"http://[::1]:{server.port}"
        assert c.get("/-/healthy").text == "Healthy\n"


def test_wildcard_port_is_dual_stack(fake: FakeApp) -> None:
    _require_ipv6_loopback()
    with serving(fake.hooks(), ":0") as server:
        assert server.url == f"http://localhost:{server.port}"
        for host in ("127.0.0.1", "[::1]"):
            with httpx.Client(base_url=f"http://{host}:{server.port}") as c:
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
        with httpx.Client(base_url=server.url, verify=client_ctx) as c:
            assert c.get("/-/healthy").text == "Healthy\n"
        # A plain-HTTP client fails its handshake without disturbing the server.
        with (
            httpx.Client(base_url=server.url.replace("https", "http")) as plain,
            pytest.raises(httpx.HTTPError),
        ):
            plain.get("/-/healthy")
        with httpx.Client(base_url=server.url, verify=client_ctx) as c:
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
