"""Chart values the exporter or the cluster has the last word on: the chart must accept
what the exporter accepts (config keys, durations by the same grammar), the monitor
settings ARMS and stricter Prometheus set-ups use, and the storage ACK can provision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter import config as exporter_config
from exporter.config import loader
from exporter.errors import ConfigError
from tests.support.artifacts import CHART
from tests.tools.test_artifacts import REGISTRY, by_kind, helm_template, run, tool

SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))

# Fed to both the exporter's config loader and the chart's schema (helm itself).
DURATIONS_OK = [
    "30s",
    "15m",
    "1h",
    "1d",
    "1w",
    "500ms",
    "1h30m",
    "1w2d3h4m5s6ms",
    "1.5h",
    "2.5",
    "10",
    " 1h ",
    "${ALB_LOOKBACK:-1h}",  # expanded by the exporter first
]
DURATIONS_BAD = [
    "",
    "   ",
    "1y",
    "30m1h",  # largest unit first
    "1h1h",
    "1 h",
    "h",
    "-1h",
    "1H",
    "1hour",
    "ms",
    ".5s",
    "1e3",
]


def test_chart_config_keys_are_the_exporters() -> None:
    config = SCHEMA["properties"]["config"]["properties"]
    assert set(config) == set(loader.TOP_LEVEL_KEYS)
    account = config["accounts"]["items"]["properties"]
    assert set(account) == set(loader.ACCOUNT_KEYS)
    assert set(account["filters"]["properties"]) == set(loader.FILTERS_KEYS)
    assert set(config["job_events"]["properties"]) == {k.name for k in loader.JOB_EVENTS}


def test_every_duration_key_uses_the_shared_grammar() -> None:
    config = SCHEMA["properties"]["config"]["properties"]
    durations = [
        k.name for k in loader.TOP_LEVEL if getattr(k.parse, "func", None) is loader.duration
    ]
    assert durations, "no duration keys found in the loader"
    for key in durations:
        assert config[key] == {"$ref": "#/definitions/duration"}, key


def exporter_accepts(text: str) -> bool:
    try:
        exporter_config.parse(
            f'cache_ttl: "{text}"\naccounts: [{{name: a, regions: [cn-hangzhou]}}]\n', {}, "c.yaml"
        )
    except ConfigError as e:
        assert "cache_ttl" in str(e), str(e)
        return False
    return True


def chart_accepts(text: str) -> bool:
    r = run(
        tool("helm"),
        "template",
        "rel",
        CHART,
        *REGISTRY,
        "--set-string",
        f"config.cache_ttl={text}",
    )
    assert r.returncode == 0 or "cache_ttl" in r.stderr, r.stderr
    return r.returncode == 0


@pytest.mark.tools
@pytest.mark.parametrize(
    "text,valid",
    [(t, True) for t in DURATIONS_OK] + [(t, False) for t in DURATIONS_BAD],
)
def test_chart_and_exporter_read_durations_alike(text: str, valid: bool) -> None:
    assert exporter_accepts(text) is valid
    assert chart_accepts(text) is valid


@pytest.mark.tools
def test_chart_accepts_numeric_durations_as_the_exporter_does() -> None:
    for value in ("90", "1.5"):
        r = run(
            tool("helm"), "template", "rel", CHART, *REGISTRY, "--set", f"config.lookback={value}"
        )
        assert r.returncode == 0, r.stderr


def monitor_values(name: str) -> list[dict[str, Any]]:
    return helm_template("-f", str(CHART / "ci" / name))


@pytest.mark.tools
def test_service_monitor_settings_for_arms() -> None:
    docs = monitor_values("monitors-values.yaml")
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["metadata"]["annotations"] == {"arms.prometheus.io/discovery": "true"}
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["sampleLimit"] == 5000
    (endpoint,) = sm["spec"]["endpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("1m30s", "45s")


@pytest.mark.tools
def test_pod_monitor_instead_of_the_service_monitor() -> None:
    docs = monitor_values("podmonitor-values.yaml")
    assert not by_kind(docs, "ServiceMonitor")
    (pm,) = by_kind(docs, "PodMonitor")
    (deploy,) = by_kind(docs, "Deployment")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["monitoring"]}
    assert pm["metadata"]["annotations"] == {"arms.prometheus.io/discovery": "true"}
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    container_ports = deploy["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert endpoint["port"] in {p["name"] for p in container_ports}
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}  # the explicit override
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("2m", "1m")
    assert pm["spec"]["sampleLimit"] == 5000


@pytest.mark.tools
def test_one_monitor_kind_at_a_time() -> None:
    r = run(
        tool("helm"), "template", "rel", CHART, *REGISTRY,
        "--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true",
    )  # fmt: skip
    assert r.returncode != 0 and "choose one" in r.stderr


@pytest.mark.tools
def test_default_claim_size_is_one_ack_can_provision() -> None:
    values = (CHART / "values.yaml").read_text(encoding="utf-8")
    assert "\n  size: 20Gi\n" in values
    docs = helm_template("--set", "sharding.enabled=true")
    (sts,) = by_kind(docs, "StatefulSet")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"


@pytest.mark.tools
def test_shards_on_empty_dirs_need_no_claim(tmp_path: Path) -> None:
    docs = monitor_values("sharding-emptydir-values.yaml")
    (sts,) = by_kind(docs, "StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    pod = sts["spec"]["template"]["spec"]
    (state,) = [v for v in pod["volumes"] if v["name"] == "state"]
    assert state == {"name": "state", "emptyDir": {"sizeLimit": "64Mi"}}
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "state"]
    assert mount["mountPath"] == "/var/lib/alb-jobs-exporter"
