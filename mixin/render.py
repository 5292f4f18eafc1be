"""Render the monitoring mixin into the files the chart and standalone users take.

    python3 mixin/render.py           # (re)write the rendered files (`make mixin`)
    python3 mixin/render.py --check   # exit 1 naming each rendered file that drifted

The mixin (mixin/mixin.libsonnet) is the single source of the alert rules and the Grafana
dashboard; helm/alb-jobs-exporter/files/alerts.yaml and dashboard.json are it rendered with
its default `_config`. Rendering runs in-process with PyPI's `jsonnet` (a test dependency),
so `make test` checks the committed files against the source without any other tool.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import _jsonnet  # PyPI `jsonnet`
import yaml

MIXIN = Path(__file__).resolve().parent
REPO = MIXIN.parent
FILES = REPO / "helm" / "alb-jobs-exporter" / "files"
ALERTS = FILES / "alerts.yaml"
DASHBOARD = FILES / "dashboard.json"
# The chart's schema names the alerts prometheusRule.disabled / overrides accept.
SCHEMA = FILES.parent / "values.schema.json"

ALERTS_HEADER = """\
# GENERATED from mixin/ (mixin.libsonnet, default _config) by `make mixin`: do not edit.
# Change mixin/alerts.libsonnet and run `make mixin`; tests fail when this file drifts.
#
# Standalone: list this file under `rule_files:` in prometheus.yml. Helm:
# templates/prometheusrule.yaml embeds these groups (prometheusRule.enabled=true, with
# prometheusRule.disabled / overrides). Runbooks: docs/runbook.md. Unit tests:
# alerts_test.yaml beside this file (`promtool test rules alerts_test.yaml`).
"""

# The order a reader expects, instead of jsonnet's sorted keys.
RULE_KEYS = ("alert", "record", "expr", "for", "labels", "annotations")
ANNOTATION_KEYS = ("summary", "description", "runbook_url")


def evaluate(overlay: str = "{}") -> dict[str, Any]:
    """The mixin's `prometheusAlerts` and `grafanaDashboards`, with `overlay` (a jsonnet
    object such as `{ _config+:: { selector: 'job="x"' } }`) added as a user would."""
    return json.loads(_evaluated(overlay))  # type: ignore[no-any-return]


@functools.cache
def _evaluated(overlay: str) -> str:
    # A fresh copy per caller from one evaluation (about a second of CPU): the sources do
    # not change while a process runs.
    snippet = f"""
        local mixin = (import 'mixin.libsonnet') + ({overlay});
        {{ alerts: mixin.prometheusAlerts, dashboards: mixin.grafanaDashboards }}
    """
    return _jsonnet.evaluate_snippet("render", snippet, jpathdir=[str(MIXIN)])  # type: ignore[no-any-return]


def _ordered(mapping: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: mapping[k] for k in keys if k in mapping} | {
        k: v for k, v in mapping.items() if k not in keys
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, templates) as `|` blocks, lists indented under their key
    (yamllint's default). Long lines stay whole: folding would cut Go template actions."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def alerts_yaml(alerts: dict[str, Any], header: str = ALERTS_HEADER) -> str:
    groups = [
        _ordered(group, ("name", "interval", "rules"))
        | {
            "rules": [
                _ordered(rule, RULE_KEYS)
                | (
                    {"annotations": _ordered(rule["annotations"], ANNOTATION_KEYS)}
                    if "annotations" in rule
                    else {}
                )
                for rule in group["rules"]
            ]
        }
        for group in alerts["groups"]
    ]
    body = yaml.dump(
        {"groups": groups}, Dumper=_Dumper, sort_keys=False, width=1_000_000, allow_unicode=True
    )
    # A faithful rendering: what Prometheus loads is exactly the mixin's output.
    assert yaml.safe_load(body) == alerts, "YAML rendering changed the rules"
    return header + body


def dashboard_json(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def schema_json(schema_text: str, alerts: dict[str, Any]) -> str:
    """The chart's values.schema.json with the alert names it validates set from the rules
    (the rest of the schema is written by hand)."""
    schema = json.loads(schema_text)
    names = [rule["alert"] for group in alerts["groups"] for rule in group["rules"]]
    rules = schema["properties"]["prometheusRule"]["properties"]
    rules["disabled"]["items"]["enum"] = names
    rules["overrides"]["propertyNames"]["enum"] = names
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def rendered(files: Path = FILES) -> dict[Path, str]:
    """Every rendered file and its exact text."""
    out = evaluate()
    (dashboard,) = out["dashboards"].values()
    schema = (files.parent / SCHEMA.name).read_text(encoding="utf-8")
    return {
        ALERTS: alerts_yaml(out["alerts"]),
        DASHBOARD: dashboard_json(dashboard),
        SCHEMA: schema_json(schema, out["alerts"]),
    }


def drifted(files: Path = FILES) -> list[Path]:
    """The rendered files (in `files`, the chart's files/ by default) whose text differs
    from what the mixin renders."""
    out = []
    for path, text in rendered(files).items():
        committed = (files.parent if path == SCHEMA else files) / path.name
        if not committed.exists() or committed.read_text(encoding="utf-8") != text:
            out.append(committed)
    return out


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        stale = drifted()
        for path in stale:
            print(
                f"{path.relative_to(REPO)} differs from the mixin: edit mixin/ and run "
                "`make mixin` (never the rendered file)",
                file=sys.stderr,
            )
        return 1 if stale else 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    for path, text in rendered().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
