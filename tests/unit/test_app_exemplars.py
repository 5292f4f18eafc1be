"""Exemplars through the wiring (SPEC "Exemplars"): /metrics and /probe answers in
OpenMetrics carry them, the text format none. The App runs in-process against the
in-process simulator over loopback."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication
from wsgiref.util import setup_testing_defaults

from exporter import simulator
from exporter.app import App
from exporter.web import make_wsgi_app
from tests.support.exemplars import exemplars
from tests.unit.appkit import start, write_config

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def _get(wsgi: WSGIApplication, path: str, accept: str, query: str = "") -> str:
    env: dict[str, Any] = {
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "HTTP_ACCEPT": accept,
        "wsgi.input": io.BytesIO(),
    }
    setup_testing_defaults(env)
    status: list[str] = []
    body = b"".join(wsgi(env, lambda s, h, e=None: status.append(s)))  # type: ignore[arg-type]
    assert status == ["200 OK"], (status, body[:200])
    return body.decode()


def test_openmetrics_scrapes_and_probes_carry_the_counted_failure_the_text_format_none(
    sim: simulator.SimulatorServer, cfg_path: Path, apps: list[App]
) -> None:
    region = "cn-hangzhou"
    app = start(apps, write_config(cfg_path, sim.url, cache_ttl="0s"), cfg_path)
    wsgi = make_wsgi_app(app.web_hooks())
    query = f"account=prod&region={region}"
    _get(wsgi, "/probe", "", query)  # the first refresh: what is terminal now is history
    failed = sim.simulator.upsert_job(
        region, Id="job-exemplar-1", ApiName="ExemplarApi", Status="Failed", ErrorCode="E.X"
    )
    for path, q in (("/probe", query), ("/metrics", "")):
        found, _ = exemplars(_get(wsgi, path, OPENMETRICS, q))
        ours = [e for e in found if e.job_id == "job-exemplar-1"]
        # The failures and finished counters, and one duration bucket.
        assert sorted(e.sample.split("{")[0] for e in ours) == [
            "alb_async_job_duration_seconds_bucket",
            "alb_async_jobs_failures_total",
            "alb_async_jobs_finished_total",
        ], path
        assert all(e.timestamp == failed["ModifyTime"] / 1000 for e in ours)
        assert exemplars(_get(wsgi, path, "text/plain; version=0.0.4", q))[0] == []
