"""The exposition store (exporter.metrics.exposition) and the render caches keyed on its
version: whatever changes a family's values, the next scrape serves the change.

Each step below changes what is exposed one way (every mutator of the self-metrics, a
target published, the target set, the options) and the served /metrics, through the
web's render cache, must then be byte for byte a fresh render of the store, and differ
from the one before. A change that does not reach the store's version (the old bug: a
self-metric changed without bumping `Generation`) is served stale and fails here.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from wsgiref.types import WSGIApplication
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client import generate_latest

from exporter.jobs.target import TargetStatus
from exporter.metrics.exposition import Exposition
from exporter.metrics.samples import ExpositionOptions
from exporter.web import LandingInfo, WebHooks, make_wsgi_app
from tests.unit.metrics.fakes import T0, FakeView, mkjob


def served(wsgi: WSGIApplication, path: str = "/metrics", query: str = "") -> bytes:
    env: dict[str, Any] = {"PATH_INFO": path, "QUERY_STRING": query, "wsgi.input": io.BytesIO()}
    setup_testing_defaults(env)
    status: list[str] = []
    body = b"".join(wsgi(env, lambda s, h, e=None: status.append(s)))  # type: ignore[arg-type]
    assert status == ["200 OK"], status
    return body


def serving(exposition: Exposition) -> WSGIApplication:
    hooks = WebHooks(
        prepare_scrape=lambda budget: None,
        registry=exposition,
        probe=lambda account, region, budget: exposition.target(account, region),
        is_ready=lambda: True,
        reload=lambda: None,
        landing=lambda: LandingInfo(version="test", targets=[], telemetry_path="/metrics"),
        generation=exposition.version,
        probe_version=exposition.target_version,
    )
    return make_wsgi_app(hooks)


class Prod(FakeView):
    """The target the steps change, with the request observer its client would have."""

    observe: Callable[[str, float], None]


def _refresh(e: Exposition, prod: FakeView) -> None:
    prod.store.update(
        [mkjob(f"j{T0}", "Failed", "acl", "CreateAcl", "Create", "acl-1", T0, T0 + 2, "E")],
        [],
        T0 + 10,
    )
    prod.state = TargetStatus(tried=True, up=True, last_success=T0 + 10, refresh_duration=0.25)
    e.publish(prod)


# Every way what is exposed changes. A new self-metric mutator belongs here.
STEPS: dict[str, Callable[[Exposition, Prod], None]] = {
    "register_target": lambda e, _: e.metrics.register_target("dev", "cn-beijing"),
    "request observed": lambda e, prod: prod.observe("OK", 0.2),
    "request error code": lambda e, prod: prod.observe("Throttling.User", 0.1),
    "forget_target": lambda e, _: e.metrics.forget_target("prod", "cn-hangzhou"),
    "credential_refresh": lambda e, _: e.metrics.credential_refresh("prod", "ram_role_arn", "OK"),
    "set_credentials_expiry": lambda e, _: e.metrics.set_credentials_expiry(
        "prod", "ram_role_arn", T0 + 3600
    ),
    "expiry removed": lambda e, _: e.metrics.set_credentials_expiry("prod", "ram_role_arn", None),
    "forget_account": lambda e, _: e.metrics.forget_account("prod"),
    "set_reload_ok": lambda e, _: e.metrics.set_reload_ok(False),
    "discovery succeeded": lambda e, _: e.metrics.succeeded("resource_directory", "", T0),
    "discovery failed": lambda e, _: e.metrics.failed("regions", "prod", "Throttling"),
    "discovery targets": lambda e, _: e.metrics.set_discovery_targets(1, 4),
    "target refreshed and published": _refresh,
    "target removed": lambda e, _: e.set_targets([]),
    "options reloaded": lambda e, _: e.configure(
        ExpositionOptions(disabled=frozenset({"alb_async_jobs_failed"}))
    ),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_every_change_reaches_the_served_exposition(step: str) -> None:
    exposition = Exposition()
    prod = Prod("prod", "cn-hangzhou")
    exposition.set_targets([prod])
    # The state each step changes from: a series for the forgetting steps to remove.
    prod.observe = exposition.metrics.request_observer("prod", "cn-hangzhou")
    prod.observe("OK", 0.1)
    exposition.metrics.credential_refresh("prod", "ram_role_arn", "OK")
    exposition.metrics.set_credentials_expiry("prod", "ram_role_arn", T0)
    wsgi = serving(exposition)
    before = served(wsgi)
    assert served(wsgi) == before  # the render cache serves it again

    STEPS[step](exposition, prod)

    after = served(wsgi)
    assert after == generate_latest(exposition)  # a fresh render of the store
    assert after != before


def test_a_probe_serves_its_targets_lines_and_follows_their_changes() -> None:
    exposition = Exposition()
    prod, dev = FakeView("prod", "cn-hangzhou"), FakeView("dev", "cn-shanghai")
    exposition.set_targets([prod, dev])
    wsgi = serving(exposition)
    query = "account=dev&region=cn-shanghai"
    before = served(wsgi, "/probe", query)
    assert b'alb_exporter_up{account="dev",region="cn-shanghai"} 0.0' in before
    assert b'account="prod"' not in before
    _refresh(exposition, prod)  # another target: this probe's version is unchanged
    assert served(wsgi, "/probe", query) == before
    dev.state = TargetStatus(tried=True, up=True, last_success=T0)
    exposition.publish(dev)
    after = served(wsgi, "/probe", query)
    assert b'alb_exporter_up{account="dev",region="cn-shanghai"} 1.0' in after
    probe = exposition.target("dev", "cn-shanghai")
    assert probe is not None and after == generate_latest(probe)


def test_a_target_not_in_the_set_is_neither_published_nor_probed() -> None:
    exposition = Exposition()
    stray = FakeView("stray", "cn-hangzhou")
    exposition.publish(stray)  # a refresh finishing after its target was removed
    assert b"stray" not in generate_latest(exposition)
    assert exposition.target("stray", "cn-hangzhou") is None
    assert exposition.target_version("stray", "cn-hangzhou") is None
