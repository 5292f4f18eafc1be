"""The deployment artifacts against the exporter and the real tools.

Alert rules (helm/alb-jobs-exporter/files/alerts.yaml) and the Grafana dashboard
(files/dashboard.json) may only use metric and label names the exporter exposes
(exporter.families.METRICS); promtool checks and unit-tests the rules and parses
every dashboard expression; helm renders the chart and the prometheus-operator
objects (which kubernetes-validate has no schemas for) are checked here.

The tools come from ci/install-tools.sh; a missing tool is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import config as exporter_config
from exporter.metrics.samples import ExpositionOptions
from exporter.metrics.table import METRICS
from tests.support.artifacts import (
    ALERTS,
    ALERTS_TEST,
    CHART,
    DASHBOARD,
    REPO,
    alerts,
    dashboard,
    dashboard_exprs,
    dashboard_rules,
)

TOOLS_BIN = Path(os.environ.get("CI_TOOLS", "/opt/alb-ci-tools")) / "bin"
PORT = 9868

EXPECTED_ALERTS = {
    "AlbAsyncJobFailed",
    "AlbAsyncJobStuck",
    "AlbJobsExporterTargetDown",
    "AlbJobsExporterDataStale",
    "AlbJobsExporterThrottling",
    "AlbJobsExporterConfigReloadFailed",
    "AlbJobsExporterShardMissing",
    "AlbJobsExporterShardCountMismatch",
    "AlbJobsExporterDiscoveryFailing",
    "AlbJobsExporterCredentialsExpiring",
}

# --- the exporter's metric names -----------------------------------------------------------------

SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
}


def _exposed() -> dict[str, frozenset[str]]:
    """Sample name -> label names, from the exporter's declarative metric table as the
    default `metrics` block exposes it (the histogram by DEFAULT_DURATION_LABELS only)."""
    names: dict[str, frozenset[str]] = {}
    defaults = ExpositionOptions(exporter_config.DEFAULT_DURATION_LABELS)
    for spec in (defaults.spec(metric.name) for metric in METRICS):
        base = spec.name.removesuffix("_total") if spec.type == "counter" else spec.name
        for suffix in SUFFIXES[spec.type]:
            labels = set(spec.labels)
            if suffix == "_bucket":
                labels.add("le")
            names[base + suffix] = frozenset(labels)
    return names


# SPEC names that other work in progress adds to the exporter (the shard gauge's rename from
# alb_exporter_shard_count, the discovery self-metrics); the alerts are written against
# SPEC. Each entry counts only while exporter.metrics.table lacks the name, so this is inert
# once they land and may then be deleted.
SPEC_PENDING = {
    "alb_exporter_total_shards": frozenset(),
    "alb_exporter_discovery_last_success_timestamp_seconds": frozenset({"source", "account"}),
    "alb_exporter_discovery_errors_total": frozenset({"source", "account", "code"}),
}
EXPOSED = SPEC_PENDING | _exposed()
# Labels Prometheus itself attaches to every scraped series (and kube-prometheus-stack's
# ServiceMonitor discovery), usable in selectors and by-clauses of any expression.
# The mixin's cluster label (mixin/config.libsonnet `clusterLabel`) is an external label.
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "service", "container", "endpoint", "cluster"}
)

# --- a small PromQL lexer ------------------------------------------------------------------------

FUNCTIONS = frozenset(
    {
        "abs",
        "absent",
        "absent_over_time",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_quantile",
        "histogram_count",
        "histogram_sum",
        "histogram_fraction",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sort",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "time",
        "timestamp",
        "vector",
        "year",
    }
)
AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    }
)
KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"")
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)")
_DURATION = re.compile(r"\[[^\]]*\]")
_COUNT_VALUES = re.compile(r'count_values\b[^"]*"(\w+)"')


def metric_references(expr: str) -> tuple[set[str], set[str], set[str]]:
    """(metric names, matcher label names, by/on/... label names) used by one expression."""
    metrics: set[str] = set()
    matcher_labels: set[str] = set()
    for name, body in _SELECTOR.findall(expr):
        if name:
            metrics.add(name)
        matcher_labels.update(label for label, _ in _MATCHER.findall(body))
    clause_labels = {
        label.strip()
        for _, body in _CLAUSE.findall(expr)
        for label in body.split(",")
        if label.strip()
    }
    rest = _CLAUSE.sub(
        " ", _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", _STRING.sub('""', expr))
    )
    rest = _DURATION.sub(" ", rest)
    for ident in _IDENT.findall(rest):
        if ident in FUNCTIONS or ident in AGGREGATIONS or ident in KEYWORDS:
            continue
        if re.fullmatch(r"(inf|nan|Inf|NaN)", ident):
            continue
        metrics.add(ident)
    return metrics, matcher_labels, clause_labels


def check_expr(expr: str) -> list[str]:
    """Problems with one PromQL expression: unknown metrics or labels the metrics lack."""
    problems = []
    metrics, matcher_labels, clause_labels = metric_references(expr)
    if not metrics:
        problems.append("references no metric")
    # count_values("label", ...) makes its own label.
    known_labels: set[str] = set(TARGET_LABELS) | set(_COUNT_VALUES.findall(expr))
    for metric in sorted(metrics):
        if metric not in EXPOSED:
            problems.append(f"unknown metric {metric!r}")
        else:
            known_labels |= EXPOSED[metric]
    # A selector's labels must exist on that selector's metric.
    for name, body in _SELECTOR.findall(expr):
        if name in EXPOSED:
            for label, _ in _MATCHER.findall(body):
                if label not in EXPOSED[name] | TARGET_LABELS:
                    problems.append(f"{name} has no label {label!r}")
    for label in sorted((matcher_labels | clause_labels) - known_labels):
        problems.append(f"label {label!r} is on none of {sorted(metrics)}")
    return problems


def test_lexer_catches_unknown_names() -> None:
    # The checks below are only worth something if these fail.
    assert check_expr("rate(alb_async_jobs_finished_total[5m])") == []
    assert check_expr("alb_async_jobs_finished") == ["unknown metric 'alb_async_jobs_finished'"]
    assert check_expr('alb_exporter_up{status="x"}') == [
        "alb_exporter_up has no label 'status'",
        "label 'status' is on none of ['alb_exporter_up']",
    ]
    assert check_expr("sum by (error_code) (alb_async_jobs)") == [
        "label 'error_code' is on none of ['alb_async_jobs']"
    ]
    assert (
        check_expr(
            "histogram_quantile(0.9, sum by (le) (rate(alb_async_job_duration_seconds_bucket[5m])))"
        )
        == []
    )
    assert "unknown metric 'alb_async_job_duration_seconds'" in check_expr(
        "rate(alb_async_job_duration_seconds[5m])"
    )


# --- the artifacts -------------------------------------------------------------------------------


def alert_rules() -> Iterator[dict[str, Any]]:
    for group in alerts()["groups"]:
        yield from group["rules"]


def all_exprs() -> list[tuple[str, str]]:
    out = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    out += dashboard_exprs()
    # The queries inside alert annotation templates (`printf "..." | query`).
    for rule in alert_rules():
        for key, text in rule.get("annotations", {}).items():
            for fmt in re.findall(r'printf\s+"((?:[^"\\]|\\.)*)"', text):
                if "(" in fmt or "{" in fmt:
                    query = fmt.replace('\\"', '"').replace("%q", '"x"')
                    out.append((f"alert {rule['alert']} annotation {key}", query))
    return out


@pytest.mark.parametrize("where,expr", all_exprs(), ids=[w for w, _ in all_exprs()])
def test_expressions_use_only_exposed_metrics_and_labels(where: str, expr: str) -> None:
    assert check_expr(dashboard_rules.substitute(expr)) == [], f"{where}: {expr}"


def test_dashboard_legends_and_variables_use_real_labels() -> None:
    problems = []
    for title, target in dashboard_rules.panel_targets(dashboard()):
        metrics, _, _ = metric_references(dashboard_rules.substitute(target["expr"]))
        labels = set().union(*(EXPOSED.get(m, frozenset()) for m in metrics))
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
            if label not in labels:
                problems.append(f"{title}: legend label {label!r} not on {sorted(metrics)}")
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert m, f"variable {variable['name']}: {query}"
        problems += [
            f"variable {variable['name']}: {p}"
            for p in check_expr(dashboard_rules.substitute(m.group(1)))
        ]
        metric = metric_references(dashboard_rules.substitute(m.group(1)))[0].pop()
        if m.group(2) not in EXPOSED[metric] | TARGET_LABELS:
            problems.append(f"variable {variable['name']}: {metric} has no label {m.group(2)}")
    assert problems == []


# --- alert rules ---------------------------------------------------------------------------------


def test_rules_define_the_expected_alerts_with_severity_and_text() -> None:
    rules = list(alert_rules())
    assert {r["alert"] for r in rules} == EXPECTED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key, "").strip(), f"{rule['alert']}: no {key}"


def test_failure_alert_keeps_error_code_for_routing_and_silencing() -> None:
    # One alert per error code: Alertmanager routes and silences on the label. The
    # failures counter's series are born at their first failure, which increase() cannot
    # see: the rule also counts series born within the window, gated on the failed-jobs
    # counter (whose series exist at 0 beforehand) having moved.
    rule = next(r for r in alert_rules() if r["alert"] == "AlbAsyncJobFailed")
    for clause in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
        if "error_code" not in clause:
            assert "alb_async_jobs_finished_total" in rule["expr"]
    assert "increase(alb_async_jobs_failures_total[" in rule["expr"]
    assert "unless on (" in rule["expr"] and "offset" in rule["expr"]
    assert 'increase(alb_async_jobs_finished_total{status="Failed"}[' in rule["expr"]
    assert rule["for"]


def test_every_alert_has_unit_tests_that_fire_and_that_stay_silent() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    assert tests["rule_files"] == ["alerts.yaml"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fired == EXPECTED_ALERTS
    assert silent == EXPECTED_ALERTS


def tool(name: str) -> str:
    found = shutil.which(name) or (str(TOOLS_BIN / name) if (TOOLS_BIN / name).exists() else None)
    if found is None:
        hint = {
            "promtool": "apt-get install prometheus (Debian package) or run ci/install-tools.sh",
            "helm": "run ci/install-tools.sh (helm comes from an aws-cdk kubectl-layer wheel)",
        }.get(name, "run ci/install-tools.sh")
        pytest.fail(f"{name} not found on PATH or in {TOOLS_BIN}: {hint}")
    return found


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.tools
def test_promtool_check_rules() -> None:
    r = run(tool("promtool"), "check", "rules", ALERTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in r.stdout


@pytest.mark.tools
def test_promtool_test_rules() -> None:
    r = run(tool("promtool"), "test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.tools
def test_promtool_test_rules_can_fail(tmp_path: Path) -> None:
    # A rule that never fires must fail the unit tests: the tests really assert firing.
    broken = alerts()
    for group in broken["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "AlbAsyncJobFailed":
                rule["expr"] = rule["expr"].replace("> 0", "> 1000")
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yaml")
    r = run(tool("promtool"), "test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert r.returncode != 0
    assert "AlbAsyncJobFailed" in r.stdout + r.stderr
    alerts.cache_clear()


@pytest.mark.tools
def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    rules = tmp_path / "dashboard-rules.yaml"
    rules.write_text(json.dumps(dashboard_rules.to_rules(dashboard())), encoding="utf-8")
    r = run(tool("promtool"), "check", "rules", rules)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(dashboard_exprs())} rules found" in r.stdout
    # and the same pipeline rejects a broken expression
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        json.dumps(
            {
                "groups": [
                    {
                        "name": "x",
                        "rules": [
                            {
                                "record": "x",
                                "expr": dashboard_rules.substitute(
                                    "sum(rate(alb_exporter_up[$__rate_interval])"
                                ),
                            }
                        ],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    assert run(tool("promtool"), "check", "rules", broken).returncode != 0


# --- dashboard -----------------------------------------------------------------------------------


def _panels() -> list[dict[str, Any]]:
    return list(dashboard()["panels"])


def test_dashboard_model() -> None:
    d = dashboard()
    assert d["schemaVersion"] == 39
    assert d["uid"] and d["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    # Several installs in one Prometheus: cluster, then job, narrow the accounts and regions.
    assert list(variables) == ["datasource", "cluster", "job", "account", "region"]
    assert variables["cluster"]["query"]["query"] == "label_values(alb_exporter_up, cluster)"
    assert variables["account"]["query"]["query"] == (
        'label_values(alb_exporter_up{cluster=~"$cluster", job=~"$job"}, account)'
    )
    assert variables["region"]["query"]["query"].startswith("label_values(alb_exporter_up{")
    for name in ("cluster", "job", "account", "region"):
        # "All" matches series without the label (one Prometheus per cluster has none).
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    ids = [p["id"] for p in _panels()]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in _panels():
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel[
                "title"
            ]
            for target in panel["targets"]:
                metrics = metric_references(dashboard_rules.substitute(target["expr"]))[0]
                labels = set().union(*(EXPOSED[m] for m in metrics))
                for var in ("cluster", "job", "account", "region"):
                    if var in labels | {"cluster", "job"}:
                        assert f'{var}=~"${var}"' in target["expr"], (panel["title"], var)


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _panels():
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_dashboard_puts_failures_first() -> None:
    rows = [p["title"] for p in _panels() if p["type"] == "row"]
    assert rows == ["Failures", "Stuck jobs", "Jobs", "Exporter health"]
    # The stat row on top: failures in the range, stuck jobs, targets down, credentials.
    top = [p["title"] for p in _panels() if p["gridPos"]["y"] == 1]
    assert top[:4] == ["Failures in range", "Stuck jobs", "Targets down", "Credentials expire in"]
    exprs = " ".join(e for _, e in dashboard_exprs())
    for needle in (
        "time() - alb_exporter_last_success_timestamp_seconds",
        'code=~"Throttling.*"',
        "sum by (code) (rate(alb_exporter_api_requests_total",
        "histogram_quantile(0.99, sum by (le) (rate(alb_async_job_duration_seconds_bucket",
        "time() - alb_async_job_processing_oldest_created_timestamp_seconds",
        "alb_async_job_recent_failure_timestamp_seconds",
        "sum by (error_code) (alb_async_jobs_failed",
        "alb_exporter_credentials_expiry_timestamp_seconds",
    ):
        assert needle in exprs, needle


def _panel(title: str) -> dict[str, Any]:
    (panel,) = [p for p in _panels() if p["title"] == title]
    return panel


def test_failure_bars_count_each_failure_in_one_bar_and_carry_exemplars() -> None:
    bars = _panel("Failures by API and error code")
    assert bars["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
    (target,) = bars["targets"]
    assert target["exemplar"] is True
    # Step-to-step differences: windows of exactly one step, no extrapolation, no overlap.
    assert "$__rate_interval" not in target["expr"] and "increase(" not in target["expr"]
    assert "offset $__interval" in target["expr"]
    assert bars["interval"] and bars["maxDataPoints"]


def test_tables_show_only_meaningful_columns() -> None:
    # Each table's query aggregates to the labels it shows: no job, instance, pod columns.
    for panel in _panels():
        if panel["type"] != "table":
            continue
        (target,) = panel["targets"]
        outer = re.match(r"(?:sort_desc\()?(?:max|sum) by \(([^)]*)\)", target["expr"])
        assert outer, panel["title"]
        kept = {label.strip() for label in outer.group(1).split(",")}
        organize = panel["transformations"][-1]["options"]
        assert kept | {"Value"} == set(organize["indexByName"]), panel["title"]
        assert kept <= set(organize["renameByName"]), panel["title"]


@pytest.mark.tools
def test_dashboard_type_checks_against_grafana_schema() -> None:
    tool("tsc")
    r = run(REPO / "ci" / "check-dashboard-types.sh", DASHBOARD)
    assert r.returncode == 0, r.stdout + r.stderr


# --- helm chart ----------------------------------------------------------------------------------


# The one value the chart requires (no public registry hosts the image); a values file
# given after it may set it again.
REGISTRY = ("--set", "image.registry=registry.example.com")


def helm_template(*args: str) -> list[dict[str, Any]]:
    r = run(tool("helm"), "template", "rel", CHART, "--namespace", "monitoring", *REGISTRY, *args)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


def test_ci_values_cover_the_combinations() -> None:
    names = {p.name for p in CI_VALUES}
    assert {
        "default-values.yaml",
        "existing-secret-values.yaml",
        "rrsa-values.yaml",
        "monitoring-values.yaml",
        "persistence-values.yaml",
        "sharding-values.yaml",
        "rules-values.yaml",
    } <= names


@pytest.mark.tools
@pytest.mark.parametrize("values", CI_VALUES, ids=[p.name for p in CI_VALUES])
def test_chart_renders_a_hardened_deployment(values: Path) -> None:
    docs = helm_template("-f", str(values))
    # A StatefulSet instead with sharding (tests/tools/test_chart_sharding.py).
    (deploy,) = by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # With basic auth, exec probes that send it (tests/tools/test_chart_web.py).
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        action = container[probe].get("httpGet") or {"path": container[probe]["exec"]["command"][3]}
        assert action["path"].endswith(path), probe
    assert container["ports"] == [
        {"name": "http-metrics", "containerPort": PORT, "protocol": "TCP"}
    ]
    assert f"--web.listen-address=:{PORT}" in container["args"]
    assert "checksum/config" in deploy["spec"]["template"]["metadata"]["annotations"]
    (service,) = by_kind(docs, "Service")
    assert service["spec"]["ports"][0]["name"] == "http-metrics"
    assert service["spec"]["ports"][0]["port"] == PORT
    assert (
        service["spec"]["selector"].items()
        <= deploy["spec"]["template"]["metadata"]["labels"].items()
    )
    (configmap,) = [c for c in by_kind(docs, "ConfigMap") if "config.yaml" in c["data"]]
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    assert config["accounts"], "config without accounts"
    # The rendered config must pass the exporter's own strict loader, not only YAML:
    # a values typo would otherwise surface as a crash-looping pod.
    loaded = exporter_config.parse(configmap["data"]["config.yaml"], {}, values.name)
    assert [a.name for a in loaded.accounts] == [a["name"] for a in config["accounts"]]
    for doc in docs:
        assert "/metrics" not in json.dumps(
            doc.get("spec", {})
            .get("template", {})
            .get("spec", {})
            .get("containers", [{}])[0]
            .get("livenessProbe", {})
        )


@pytest.mark.tools
def test_default_config_is_one_env_credentials_account() -> None:
    docs = helm_template()
    (configmap,) = by_kind(docs, "ConfigMap")
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    assert config["accounts"] == [{"name": "default", "regions": ["cn-hangzhou"]}]
    assert not by_kind(docs, "Secret")
    assert not by_kind(docs, "ServiceMonitor") and not by_kind(docs, "PrometheusRule")


@pytest.mark.tools
def test_config_change_rolls_the_pods() -> None:
    def checksum(*args: str) -> str:
        (deploy,) = by_kind(helm_template(*args), "Deployment")
        return deploy["spec"]["template"]["metadata"]["annotations"]["checksum/config"]  # type: ignore[no-any-return]

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "config.cache_ttl=45s")


def _env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deploy,) = by_kind(docs, "Deployment")
    return {
        e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0].get("env", [])
    }


@pytest.mark.tools
def test_existing_secret_feeds_the_env_credentials() -> None:
    docs = helm_template("-f", str(CHART / "ci" / "existing-secret-values.yaml"))
    env = _env(docs)
    assert env["ALIBABA_CLOUD_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "alb-exporter-ak",
        "key": "id",
    }
    assert env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "alb-exporter-ak",
        "key": "secret",
    }
    assert not by_kind(docs, "Secret")


@pytest.mark.tools
def test_inline_credentials_create_a_secret_and_roll_on_change() -> None:
    docs = helm_template("-f", str(CHART / "ci" / "inline-secret-values.yaml"))
    (secret,) = by_kind(docs, "Secret")
    env = _env(docs)
    assert (
        env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]["valueFrom"]["secretKeyRef"]["name"]
        == secret["metadata"]["name"]
    )
    (deploy,) = by_kind(docs, "Deployment")
    assert "checksum/secret" in deploy["spec"]["template"]["metadata"]["annotations"]
    # the secret never lands in the ConfigMap or the pod spec
    assert "ExampleSecretExampleSecretExampl" not in json.dumps(
        [d for d in docs if d["kind"] != "Secret"]
    )


@pytest.mark.tools
def test_rrsa_labels_the_pod_and_annotates_the_service_account() -> None:
    docs = helm_template("-f", str(CHART / "ci" / "rrsa-values.yaml"))
    (deploy,) = by_kind(docs, "Deployment")
    (sa,) = by_kind(docs, "ServiceAccount")
    assert (
        deploy["spec"]["template"]["metadata"]["labels"]["pod-identity.alibabacloud.com/injection"]
        == "on"
    )
    assert (
        sa["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"]
        == "alb-jobs-exporter-reader"
    )
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" not in _env(docs)


@pytest.mark.tools
@pytest.mark.parametrize(
    "values,volume_key",
    [("persistence-values.yaml", "persistentVolumeClaim"), ("emptydir-values.yaml", "emptyDir")],
)
def test_persistence_mounts_the_state_file(values: str, volume_key: str) -> None:
    docs = helm_template("-f", str(CHART / "ci" / values))
    (deploy,) = by_kind(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (state,) = [v for v in pod["volumes"] if v["name"] == "state"]
    assert volume_key in state
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "state"]
    (configmap,) = by_kind(docs, "ConfigMap")
    state_file = yaml.safe_load(configmap["data"]["config.yaml"])["state_file"]
    assert state_file.startswith(mount["mountPath"] + "/")
    if volume_key == "persistentVolumeClaim":
        (pvc,) = by_kind(docs, "PersistentVolumeClaim")
        assert state[volume_key]["claimName"] == pvc["metadata"]["name"]
        assert deploy["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.tools
def test_monitoring_objects() -> None:
    docs = helm_template("-f", str(CHART / "ci" / "monitoring-values.yaml"))
    (service,) = by_kind(docs, "Service")
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["monitoring"]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http"
    assert set(endpoint) <= {
        "port",
        "path",
        "scheme",
        "interval",
        "scrapeTimeout",
        "honorLabels",
        "relabelings",
        "metricRelabelings",
    }

    def seconds(d: str) -> float:
        return float(d[:-1]) * {"s": 1, "m": 60, "h": 3600}[d[-1]]

    (configmap,) = [c for c in by_kind(docs, "ConfigMap") if "config.yaml" in c["data"]]
    cache_ttl = yaml.safe_load(configmap["data"]["config.yaml"])["cache_ttl"]
    assert seconds(endpoint["interval"]) >= seconds(cache_ttl)
    assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])

    (rule,) = by_kind(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    source = alerts()["groups"]
    assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in source]
    for rendered, original in zip(rule["spec"]["groups"], source, strict=True):
        for r, o in zip(rendered["rules"], original["rules"], strict=True):
            assert r["expr"] == o["expr"]
            assert r["annotations"] == o["annotations"]  # templates pass through unrendered
            assert r["labels"] == {**o["labels"], "team": "sre"}
            assert r.get("for") == o.get("for")

    (dash,) = [
        c for c in by_kind(docs, "ConfigMap") if "alb-jobs-exporter.json" in c.get("data", {})
    ]
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dash["data"]["alb-jobs-exporter.json"]) == dashboard()


@pytest.mark.tools
def test_rendered_prometheusrule_passes_promtool(tmp_path: Path) -> None:
    docs = helm_template("-f", str(CHART / "ci" / "monitoring-values.yaml"))
    (rule,) = by_kind(docs, "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    r = run(tool("promtool"), "check", "rules", path)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.tools
def test_rules_can_be_disabled_and_overridden_per_alert(tmp_path: Path) -> None:
    docs = helm_template("-f", str(CHART / "ci" / "rules-values.yaml"))
    (rule,) = by_kind(docs, "PrometheusRule")
    rendered = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    source = {r["alert"]: r for r in alert_rules()}
    assert set(rendered) == set(source) - {"AlbJobsExporterThrottling"}
    failed = rendered["AlbAsyncJobFailed"]
    assert failed["for"] == "10m"
    # Override labels win over the alert's own and over additionalRuleLabels.
    assert failed["labels"] == {"severity": "critical", "team": "alb-owners"}
    assert failed["expr"] == source["AlbAsyncJobFailed"]["expr"]
    stuck = rendered["AlbAsyncJobStuck"]
    assert stuck["expr"].endswith("> 3600")
    assert stuck["annotations"]["summary"] == (
        "ALB {{ $labels.api_name }} job processing for over an hour"
    )
    assert (
        stuck["annotations"]["description"]
        == source["AlbAsyncJobStuck"]["annotations"]["description"]
    )
    for name, r in rendered.items():
        assert r["annotations"]["runbook_url"] == (
            f"https://wiki.example.com/alb-jobs-exporter/runbook#{name.lower()}"
        )
        if name not in ("AlbAsyncJobFailed",):
            assert r["labels"] == {**source[name]["labels"], "team": "sre"}, name
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    r = run(tool("promtool"), "check", "rules", path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_chart_schema_names_exactly_the_shipped_alerts() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    rules = schema["properties"]["prometheusRule"]["properties"]
    names = [r["alert"] for r in alert_rules()]
    assert rules["disabled"]["items"]["enum"] == names
    assert rules["overrides"]["propertyNames"]["enum"] == names


@pytest.mark.tools
@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "config.cache_tll=30s"], "cache_tll"),
        (["--set", "serviceMonitor.enabeld=true"], "enabeld"),
        (["--set", "replicaCount=two"], "replicaCount"),
        (
            ["--set", "credentials.existingSecret=x", "--set", "credentials.accessKeyId=y"],
            "not both",
        ),
        (["--set", "rrsa.enabled=true"], "rrsa.roleName"),
        (["--set-json", 'config.metrics.disable=["alb_exporter_up"]'], "disable"),
        (["--set-json", 'config.metrics.duration_labels=["operate_type"]'], "duration_labels"),
        (["--set-json", 'prometheusRule.disabled=["AlbAsyncJobFail"]'], "prometheusRule.disabled"),
        (
            ["--set-json", 'prometheusRule.overrides={"AlbAsyncJobStuk": {"for": "1m"}}'],
            "AlbAsyncJobStuk",
        ),
        (
            ["--set-json", 'prometheusRule.overrides={"AlbAsyncJobFailed": {"for": "10 min"}}'],
            "prometheusRule.overrides.AlbAsyncJobFailed.for",
        ),
        (
            ["--set-json", 'prometheusRule.overrides={"AlbAsyncJobFailed": {"severity": "x"}}'],
            "severity",
        ),
    ],
)
def test_chart_rejects_bad_values(args: list[str], message: str) -> None:
    r = run(tool("helm"), "template", "rel", CHART, *REGISTRY, *args)
    assert r.returncode != 0
    assert message in r.stderr


@pytest.mark.tools
def test_chart_without_a_registry_says_where_the_image_comes_from() -> None:
    r = run(tool("helm"), "template", "rel", CHART)
    assert r.returncode != 0
    assert "image.registry is empty" in r.stderr and "Quick start" in r.stderr
    (deploy,) = by_kind(helm_template(), "Deployment")
    image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/alb-jobs-exporter:0.1.0"


def test_chart_schema_offers_the_exporters_metrics_names() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    metrics = schema["properties"]["config"]["properties"]["metrics"]["properties"]
    assert tuple(metrics) == tuple(f.name for f in fields(exporter_config.MetricsConfig))
    assert tuple(metrics["disable"]["items"]["enum"]) == exporter_config.JOB_FAMILIES
    assert tuple(metrics["duration_labels"]["items"]["enum"]) == exporter_config.DURATION_LABELS


@pytest.mark.tools
def test_cardinality_values_reach_the_exporters_config() -> None:
    docs = helm_template("-f", str(CHART / "ci" / "cardinality-values.yaml"))
    (configmap,) = [c for c in by_kind(docs, "ConfigMap") if "config.yaml" in c["data"]]
    loaded = exporter_config.parse(configmap["data"]["config.yaml"], {}, "config.yaml")
    assert loaded.metrics == exporter_config.MetricsConfig(
        duration_buckets=(), disable=("alb_async_jobs_failed", "alb_async_jobs_vanished_total")
    )


@pytest.mark.tools
def test_helm_lint_strict_passes_for_every_ci_values_file() -> None:
    for values in CI_VALUES:
        r = run(tool("helm"), "lint", "--strict", CHART, "-f", values)
        assert r.returncode == 0, f"{values.name}: {r.stdout}{r.stderr}"


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_contract() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    instructions = [
        line.split(None, 1)
        for line in text.splitlines()
        if line and not line[0].isspace() and not line.startswith("#")
    ]
    final = instructions[max(i for i, (op, *_) in enumerate(instructions) if op == "FROM") :]
    ops = {op: (rest[0] if rest else "") for op, *rest in final}
    assert ops["USER"] == "65534:65534"
    assert ops["EXPOSE"] == str(PORT)
    assert json.loads(ops["ENTRYPOINT"]) == ["/opt/venv/bin/alb-jobs-exporter"]
    assert json.loads(ops["CMD"]) == ["--config.file=/etc/alb-jobs-exporter/config.yaml"]
    assert f"http://127.0.0.1:{PORT}/-/healthy" in text
    assert "curl" not in text.split("HEALTHCHECK", 1)[1]
    assert sum(1 for op, *_ in instructions if op == "FROM") == 2
    # Both stages on one base image a mirror can replace (hosts without Docker Hub).
    assert instructions[0] == ["ARG", "BASE_IMAGE=python:3.11-slim"]
    assert [rest[0].split()[0] for op, *rest in instructions if op == "FROM"] == [
        "${BASE_IMAGE}"
    ] * 2


@pytest.mark.tools
def test_hadolint_passes() -> None:
    r = run(tool("hadolint"), REPO / "Dockerfile")
    assert r.returncode == 0, r.stdout + r.stderr
