"""The chart with `sharding.enabled` (helm/alb-jobs-exporter/ci/sharding-values.yaml): a
StatefulSet of `sharding.shards` pods with `--shard.index=hostname`, a claim per pod for
the state file, one headless Service that the ServiceMonitor scrapes pod by pod; and every
rendered config passes the exporter's own `--check-config` with the flags it is given
(ci/check_rendered_config.py, the step ci/check-artifacts.sh runs).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load, shard_of
from tests.support.artifacts import CHART, REPO
from tests.tools.test_artifacts import CI_VALUES, REGISTRY, by_kind, helm_template, run, tool

pytestmark = pytest.mark.tools

SHARDING = CHART / "ci" / "sharding-values.yaml"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return helm_template("-f", str(SHARDING))


def test_sharding_renders_a_statefulset_with_a_claim_and_a_shard_per_pod(
    docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    shards = yaml.safe_load(SHARDING.read_text())["sharding"]["shards"]
    assert not by_kind(docs, "Deployment") and not by_kind(docs, "PersistentVolumeClaim")
    (sts,) = by_kind(docs, "StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == shards
    assert spec["podManagementPolicy"] == "Parallel"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert f"--shard.count={shards}" in container["args"]
    assert "--shard.index=hostname" in container["args"]
    # The state file: on the claim each pod gets from the template, not a shared volume.
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "state" not in {v["name"] for v in pod["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "state"]
    (configmap,) = by_kind(docs, "ConfigMap")
    config_text = configmap["data"]["config.yaml"]
    assert yaml.safe_load(config_text)["state_file"].startswith(mount["mountPath"] + "/")
    # The documented hash gives every shard (pod <name>-0 .. <name>-N-1) some targets.
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    targets = [(a.name, r) for a in load(str(path), {}).accounts for r in a.regions]
    assert {shard_of(a, r, shards) for a, r in targets} == set(range(shards))


def test_sharding_serves_every_pod_through_one_headless_service(
    docs: list[dict[str, Any]],
) -> None:
    (sts,) = by_kind(docs, "StatefulSet")
    (service,) = by_kind(docs, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # The ServiceMonitor scrapes each endpoint of that Service, i.e. every shard's pod.
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    (rule,) = by_kind(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "AlbJobsExporterShardMissing" in alerts


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.name for p in CI_VALUES])
def test_rendered_config_passes_the_exporters_check_config(values: Path, tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    r = run(tool("helm"), "template", "rel", CHART, "--namespace", "monitoring", "-f", values)
    assert r.returncode == 0, r.stderr
    rendered.write_text(r.stdout)
    result = run(sys.executable, REPO / "ci" / "check_rendered_config.py", rendered, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    if "sharding" not in values.name:
        assert result.stdout.count("== --check-config") == 1 and "shard:" not in result.stdout
        return
    # every shard's config is checked, and the shards own every target once between them
    count = int(re.findall(r"--shard.count=(\d+)", result.stdout)[0])
    found = re.findall(r"^shard: \d+ of (\d+), owns (\d+) of (\d+)", result.stdout, re.M)
    assert len(found) == count
    assert sum(int(owned) for _, owned, _ in found) == int(found[0][2])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "sharding.shards=0"], "shards"),
        (["--set", "sharding.enabled=true", "--set", "replicaCount=3"], "sharding.shards"),
        (
            ["--set", "sharding.enabled=true", "--set", "persistence.existingClaim=x"],
            "existingClaim",
        ),
        (["--set", "sharding.enabled=true", "--set", "service.type=NodePort"], "headless"),
        (["--set", "sharding.enalbed=true"], "enalbed"),
    ],
)
def test_chart_rejects_bad_sharding_values(args: list[str], message: str) -> None:
    r = run(tool("helm"), "template", "rel", CHART, *REGISTRY, *args)
    assert r.returncode != 0
    assert message in r.stderr
