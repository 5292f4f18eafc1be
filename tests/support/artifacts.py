"""The chart's monitoring artifacts as data: alert rules and the Grafana dashboard (with its
expressions, via ci/dashboard_rules.py), for the artifact checks and the Prometheus e2e test;
and the monitoring mixin's renderer (mixin/render.py) that generates both."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "alb-jobs-exporter"
ALERTS = CHART / "files" / "alerts.yaml"
ALERTS_TEST = CHART / "files" / "alerts_test.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"


@cache
def alerts() -> dict[str, Any]:
    return yaml.safe_load(ALERTS.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _script(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Loaded from their files: ci/ and mixin/ hold scripts, not packages (ci/check-artifacts.sh
# and `make mixin` run them).
dashboard_rules = _script("dashboard_rules", REPO / "ci" / "dashboard_rules.py")
mixin_render = _script("mixin_render", REPO / "mixin" / "render.py")


def dashboard_exprs() -> list[tuple[str, str]]:
    return dashboard_rules.exprs(dashboard())  # type: ignore[no-any-return]
