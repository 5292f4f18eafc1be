"""Routes of exporter.web (exporter.web.routes), exercised over real loopback HTTP."""

from __future__ import annotations

import base64
import gzip
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.web import make_wsgi_app, scrape_budget
from tests.support import loopback
from tests.unit.web.fakes import OPENMETRICS, FakeApp, serving

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
        loopback.client(base_url=server.url) as c,
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


def test_probe_of_another_shards_target_is_404_naming_the_owner(
    client: httpx.Client, fake: FakeApp
) -> None:
    response = client.get("/probe", params={"account": "prod", "region": "eu-central-1"})
    assert response.status_code == 404
    assert response.text == (
        "account 'prod' region 'eu-central-1' belongs to shard 2 of 3; this replica is shard 0\n"
    )
    assert response.headers["x-shard-owner"] == "2"
    assert "probe_gauge" not in response.text


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
        caplog.at_level(logging.ERROR, logger="exporter.web.routes"),
        serving(hooks) as server,
        loopback.client(base_url=server.url) as c,
    ):
        response = c.request(method, path)
    assert (response.status_code, response.text) == (500, "internal error\n")
    assert "secret" not in response.text
    errors = [r for r in caplog.records if r.name == "exporter.web.routes" and r.exc_info]
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
        loopback.client(base_url=server.url) as c,
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
        loopback.client(base_url=server.url) as c,
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
        loopback.client(base_url=server.url) as c,
    ):
        for r in (c.get("/metrics"), c.get("/nope", headers={"Authorization": "x"})):
            assert r.status_code in (401, 404)
            assert r.headers["X-Frame-Options"] == "deny"
            # A configured header replaces the default of the same name, not doubles it.
            assert r.headers.get_list("X-Content-Type-Options") == ["nosniff"]


# --- coalesced renders -------------------------------------------------------------------


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
            with loopback.client(base_url=server.url, timeout=20) as c:
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


# --- the render cache ----------------------------------------------------------------------


class _CountingCollector:
    """Exposes `value`; counts its collects (one per render of the exposition)."""

    def __init__(self) -> None:
        self.value = 1.0
        self.collects = 0

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        self.collects += 1
        yield GaugeMetricFamily("cached_value", "the data", value=self.value)


class _Data:
    """A collector and its generation, bumped after each change as the App does."""

    def __init__(self) -> None:
        self.collector = _CountingCollector()
        self.generation = 0
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)

    def change(self, value: float) -> None:
        self.collector.value = value
        self.generation += 1


def _cached(fake: FakeApp, data: _Data) -> Any:
    return replace(fake.hooks(), registry=data.registry, generation=lambda: data.generation)


def _value(text: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("cached_"))


def test_scrapes_without_a_change_share_one_render_and_a_change_is_seen_at_once(
    fake: FakeApp,
) -> None:
    data = _Data()
    with serving(_cached(fake, data)) as server, loopback.client(base_url=server.url) as c:
        assert [_value(c.get("/metrics").text) for _ in range(3)] == [1.0] * 3
        assert data.collector.collects == 1
        data.change(7.0)
        assert _value(c.get("/metrics").text) == 7.0  # the very next scrape
        assert _value(c.get("/metrics").text) == 7.0
        assert data.collector.collects == 2


def test_each_format_and_encoding_is_cached_apart(fake: FakeApp) -> None:
    data = _Data()
    asks = {
        "text": {"Accept-Encoding": "identity"},
        "text+gzip": {"Accept-Encoding": "gzip"},
        "openmetrics": {"Accept": OPENMETRICS, "Accept-Encoding": "identity"},
        "openmetrics+gzip": {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"},
    }
    with serving(_cached(fake, data)) as server, loopback.client(base_url=server.url) as c:
        for _ in range(2):  # the second round is served from the cache
            got = {name: c.get("/metrics", headers=h) for name, h in asks.items()}
            for name, r in got.items():
                assert ("openmetrics" in r.headers["Content-Type"]) == name.startswith("open")
                assert (r.headers.get("Content-Encoding") == "gzip") == name.endswith("gzip")
                assert r.text.rstrip().endswith("# EOF") == name.startswith("open")
                assert _value(r.text) == 1.0
        # One collect per format: a compressed variant is made from the plain one.
        assert data.collector.collects == 2
        data.change(3.0)
        assert {name: _value(c.get("/metrics", headers=h).text) for name, h in asks.items()} == {
            name: 3.0 for name in asks
        }


def test_a_scrape_waiting_for_an_older_render_gets_a_newer_one(fake: FakeApp) -> None:
    # A scrape arriving after a change, while a render of the data before it runs, must
    # not be given that render.
    data = _Data()
    collector = _SlowCollector(0.3)
    data.registry.register(collector)
    bodies: list[str] = []
    with serving(_cached(fake, data)) as server:

        def scrape() -> None:
            with loopback.client(base_url=server.url, timeout=20) as c:
                bodies.append(c.get("/metrics").text)

        first = threading.Thread(target=scrape)
        first.start()
        assert collector.started.wait(5)
        data.change(9.0)
        scrape()
        first.join(timeout=20)
    assert sorted(_value(b) for b in bodies) == [1.0, 9.0]


def test_probe_renders_are_reused_while_the_targets_version_holds(fake: FakeApp) -> None:
    data = _Data()
    version = ["v1"]
    hooks = replace(
        fake.hooks(),
        probe=lambda account, region, budget: data.registry,
        probe_version=lambda account, region: (account, region, version[0]),
    )
    with serving(hooks) as server, loopback.client(base_url=server.url) as c:
        url = "/probe?account=prod&region=cn-hangzhou"
        assert [_value(c.get(url).text) for _ in range(3)] == [1.0] * 3
        assert data.collector.collects == 1
        assert _value(c.get("/probe?account=prod&region=cn-beijing").text) == 1.0
        assert data.collector.collects == 2  # another target is another render
        data.collector.value, version[0] = 5.0, "v2"
        assert _value(c.get(url).text) == 5.0


def test_any_openmetrics_version_asked_for_is_answered_in_the_standard_one(
    client: httpx.Client,
) -> None:
    # prometheus_client echoes the version a client asks for into the content type, and
    # the render caches are keyed by it: 40 made-up versions were 40 cached expositions
    # (a client could grow the exporter's memory without end). Now one variant.
    seen = set()
    for n in range(40):
        accept = f"application/openmetrics-text; version=1.0.{n + 1}"
        r = client.get("/metrics", headers={"Accept": accept})
        assert r.status_code == 200 and r.text.endswith("# EOF\n")
        seen.add(r.headers["content-type"])
    assert seen == {
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
    }
