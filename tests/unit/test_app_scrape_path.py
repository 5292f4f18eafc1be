"""What a scrape waits for in the wiring (exporter.app): the exposition is rendered when the
data changes, not per scrape, and the state file is written off the refresh a scrape waits
on. The App runs in-process against the in-process simulator over loopback."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter import simulator
from exporter.app import App, Seams
from exporter.jobs.state import write_atomically
from exporter.web import make_wsgi_app
from tests.unit.appkit import start, write_config

pytestmark = pytest.mark.usefixtures("sim")


class _Renders(Collector):
    """The App's exposition, counting its renders (collects)."""

    def __init__(self, exposition: Collector) -> None:
        self.exposition = exposition
        self.count = 0

    def collect(self) -> Iterable[Metric]:
        self.count += 1
        return self.exposition.collect()


def _get(wsgi: WSGIApplication, path: str = "/metrics", **environ: str) -> str:
    env: dict[str, Any] = {"PATH_INFO": path, "wsgi.input": io.BytesIO(), **environ}
    setup_testing_defaults(env)
    status: list[str] = []
    body = b"".join(wsgi(env, lambda s, h, e=None: status.append(s)))  # type: ignore[arg-type]
    assert status == ["200 OK"], (status, body[:200])
    return body.decode()


def _tracked(text: str) -> float:
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("alb_exporter_jobs_tracked{")
    )


def test_scrapes_of_unchanged_data_share_one_render_and_a_refresh_is_seen_at_once(
    sim: simulator.SimulatorServer,
    cfg_path: Path,
    apps: list[App],
) -> None:
    # Regression: every /metrics scrape re-rendered every series (21.6 ms p50 at the
    # simulator's 10k-job mix) although the data changes once per refresh.
    app = start(apps, write_config(cfg_path, sim.url, cache_ttl="1h"), cfg_path)
    hooks = app.web_hooks()
    renders = _Renders(hooks.registry)
    wsgi = make_wsgi_app(replace(hooks, registry=renders))
    first = _get(wsgi)
    assert [_get(wsgi) for _ in range(3)] == [first] * 3
    assert renders.count == 1
    # New jobs, and a reload that makes the next scrape refresh: seen by that scrape.
    held = _tracked(first)
    for _ in range(3):
        sim.simulator.upsert_job("cn-hangzhou", Status="Succeeded")
    write_config(cfg_path, sim.url, cache_ttl="0s")
    assert app.reload() is None
    assert _tracked(_get(wsgi)) == held + 3
    assert renders.count == 2


def test_a_probe_is_rendered_again_only_after_its_target_refreshed(
    sim: simulator.SimulatorServer,
    cfg_path: Path,
    apps: list[App],
) -> None:
    app = start(apps, write_config(cfg_path, sim.url, cache_ttl="0s"), cfg_path)
    wsgi = make_wsgi_app(app.web_hooks())
    query = {"QUERY_STRING": "account=prod&region=cn-hangzhou"}
    before = _get(wsgi, "/probe", **query)
    sim.simulator.upsert_job("cn-hangzhou", Status="Succeeded")
    after = _get(wsgi, "/probe", **query)  # cache_ttl 0: this probe refreshed its target
    assert _tracked(after) == _tracked(before) + 1


def test_the_state_file_is_not_written_inside_the_refresh_a_scrape_waits_for(
    sim: simulator.SimulatorServer,
    cfg_path: Path,
    apps: list[App],
) -> None:
    # Regression: each refresh encoded and fsynced every target's state before the
    # scrape waiting for it could render (p50 45 ms -> 221 ms at 2 x 10k jobs).
    writing, release = threading.Event(), threading.Event()

    def slow_write(path: str, data: bytes) -> None:
        writing.set()
        assert release.wait(10)
        write_atomically(path, data)

    state_path = cfg_path.parent / "state.json"
    cfg = write_config(cfg_path, sim.url, state_file=str(state_path))
    app = start(apps, cfg, cfg_path, Seams(state_debounce=0, state_write=slow_write))
    try:
        # The refreshes finish (and the scrape renders) while the write is held up.
        assert app.refresher.ensure_fresh(None, timeout=3)
        assert writing.wait(5)
        assert _tracked(_get(make_wsgi_app(app.web_hooks()))) > 0
    finally:
        release.set()
    app.close()
    assert state_path.exists()
