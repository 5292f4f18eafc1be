"""The stand-in for the composition root's hooks, and a server run around them, shared
by the exporter.web tests (which all go over real loopback HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry, Gauge

from exporter.web import LandingInfo, LandingTarget, OtherShard, Server, WebHooks, make_wsgi_app

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

    def probe(
        self, account: str, region: str, budget: float | None
    ) -> CollectorRegistry | OtherShard | None:
        self.probe_calls.append((account, region, budget))
        if (account, region) == ("prod", "cn-hangzhou"):
            return self.probe_registry
        if (account, region) == ("prod", "eu-central-1"):  # configured, another shard's
            return OtherShard(owner=2, count=3, this=0)
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


def serve_in_thread(server: Server) -> threading.Thread:
    """`server` serving in a daemon thread; the test shuts it down (and may time that)."""
    thread = threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True)
    thread.start()
    return thread


def big_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """An 8 MiB answer: more than the socket buffers hold, so a client that reads nothing
    keeps the server sending."""
    body = b"x" * (8 << 20)
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
