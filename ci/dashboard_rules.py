"""Turn every PromQL expression of a Grafana dashboard into a Prometheus rule file.

usage: python3 dashboard_rules.py DASHBOARD_JSON > rules.yml ; promtool check rules rules.yml

promtool has no "parse this expression" command, but `check rules` parses each rule's
expr, so every panel target becomes a recording rule. Grafana's interval macros become
a fixed range and template variables a placeholder literal, the substitutions the
e2e test also makes before it sends the expressions to a real Prometheus.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

# Grafana's built-in range macros; the value is what tests substitute.
RANGE_MACROS = ("$__rate_interval", "$__interval", "$__range")
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(
    expr: str, range_value: str = "5m", var_value: str = ".*", span_value: str | None = None
) -> str:
    """Make a dashboard expression plain PromQL: macros -> range_value ($__range, the
    dashboard's whole time range, -> span_value if given), $var -> var_value."""
    for macro in RANGE_MACROS:
        value = span_value if macro == "$__range" and span_value else range_value
        expr = expr.replace("${" + macro[1:] + "}", value).replace(macro, value)
    return _VAR.sub(var_value, expr)


def panel_targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query target, rows' nested panels included."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for panel in panels:
            for target in panel.get("targets", []):
                yield panel.get("title", "?"), target
            yield from walk(panel.get("panels", []))

    yield from walk(dashboard.get("panels", []))


def exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, raw expr) of every PromQL expression in the panels."""
    out = []
    for title, target in panel_targets(dashboard):
        if target.get("expr"):
            out.append((f"panel {title!r} target {target.get('refId', '?')}", target["expr"]))
    return out


def to_rules(dashboard: dict[str, Any]) -> dict[str, Any]:
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(exprs(dashboard))
    ]
    return {"groups": [{"name": "dashboard-exprs", "rules": rules}]}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: dashboard_rules.py DASHBOARD_JSON", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        dashboard = json.load(f)
    # JSON is valid YAML: no YAML library needed to write the rule file.
    json.dump(to_rules(dashboard), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
