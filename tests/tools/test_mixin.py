"""The monitoring mixin (mixin/) is the single source of the alert rules and the dashboard.

The committed helm/alb-jobs-exporter/files/alerts.yaml and dashboard.json must be exactly
what it renders (`make mixin`); every alert carries what notification templates and
runbooks need; a user's `_config` override gives rules promtool accepts and that behave
(mixin/tests/override_test.yaml); and Debian's jsonnetfmt keeps the source formatted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.artifacts import ALERTS, DASHBOARD, REPO, mixin_render

MIXIN = REPO / "mixin"
RUNBOOK = REPO / "docs" / "runbook.md"
OVERRIDE = "import 'tests/override.libsonnet'"


def rules(alerts: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in alerts["groups"] for rule in group["rules"]]


def test_committed_files_are_what_the_mixin_renders() -> None:
    assert mixin_render.drifted() == [], "run `make mixin` (and edit mixin/, not the output)"


def test_an_edit_to_a_rendered_file_only_is_drift(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    for path in (ALERTS, DASHBOARD):
        shutil.copy(path, files / path.name)
    shutil.copy(mixin_render.SCHEMA, tmp_path / mixin_render.SCHEMA.name)
    assert mixin_render.drifted(files) == []
    edited = (files / ALERTS.name).read_text().replace("for: 5m", "for: 50m", 1)
    (files / ALERTS.name).write_text(edited)
    assert mixin_render.drifted(files) == [files / ALERTS.name]
    # The schema's alert names are rendered too.
    schema = tmp_path / mixin_render.SCHEMA.name
    schema.write_text(schema.read_text().replace('"AlbAsyncJobStuck",', "", 1))
    assert mixin_render.drifted(files) == [files / ALERTS.name, schema]


@pytest.mark.e2e  # a process: `make mixin`'s script as CI runs it
def test_render_check_command_passes_on_the_committed_files() -> None:
    ok = subprocess.run(
        [sys.executable, str(MIXIN / "render.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr


def runbook_anchors() -> set[str]:
    """GitHub's anchors for the runbook's headings: lower case, spaces to dashes."""
    text = RUNBOOK.read_text(encoding="utf-8")
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, re.M)
    }


@pytest.mark.parametrize("overlay", ["{}", OVERRIDE], ids=["defaults", "override"])
def test_every_alert_has_severity_summary_description_and_a_runbook_section(
    overlay: str,
) -> None:
    anchors = runbook_anchors()
    for rule in rules(mixin_render.evaluate(overlay)["alerts"]):
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        for key in ("summary", "description"):
            assert rule["annotations"].get(key, "").strip(), f"{name}: no {key}"
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base.endswith("/docs/runbook.md"), url
        assert anchor == name.lower() and anchor in anchors, f"{name}: {url} has no section"
        # Prose runbooks belong in docs/runbook.md, not in the rule.
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name


def test_the_runbook_has_a_section_for_every_alert_and_no_other() -> None:
    names = {rule["alert"].lower() for rule in rules(mixin_render.evaluate()["alerts"])}
    text = RUNBOOK.read_text(encoding="utf-8")
    sections = {h.lower() for h in re.findall(r"^## (Alb\w+)$", text, re.M)}
    assert sections == names


def test_stuck_job_runbook_uses_only_parameters_list_asyn_jobs_has() -> None:
    # ListAsynJobs takes JobIds.N, ResourceType, ResourceIds.N, ApiName, BeginTime, EndTime,
    # MaxResults and NextToken (alibaba-api.md 5.1); no Status and no RegionId.
    known = {"JobIds", "ResourceType", "ResourceIds", "ApiName", "BeginTime", "EndTime"}
    known |= {"MaxResults", "NextToken"}
    commands = re.findall(r"aliyun alb ListAsynJobs[^\n`]*", RUNBOOK.read_text(encoding="utf-8"))
    assert commands
    for command in commands:
        params = set(re.findall(r"--([A-Z]\w+)", command))
        assert params <= known, command


def test_override_reaches_every_expression() -> None:
    out = mixin_render.evaluate(OVERRIDE)
    names = {rule["alert"] for rule in rules(out["alerts"])}
    assert "AlbJobsExporterDataStale" not in names
    assert names == {r["alert"] for r in rules(mixin_render.evaluate()["alerts"])} - {
        "AlbJobsExporterDataStale"
    }
    for rule in rules(out["alerts"]):
        # Every metric selector carries the user's matchers.
        for metric in re.findall(r"\b(alb_[a-z_]+)(\{[^}]*\})?", rule["expr"]):
            assert metric[1].startswith('{job="alb", namespace="ops"'), (rule["alert"], metric)
        for clause in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
            assert clause.startswith("k8s_cluster, "), (rule["alert"], clause)
    failed = next(r for r in rules(out["alerts"]) if r["alert"] == "AlbAsyncJobFailed")
    assert ">= 3" in failed["expr"] and "[30m]" in failed["expr"]
    (dashboard,) = out["dashboards"].values()
    for variable in dashboard["templating"]["list"]:
        if variable["name"] == "cluster":
            assert "k8s_cluster" in variable["query"]["query"]


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found on PATH: run ci/install-tools.sh")
    return found


@pytest.mark.tools
def test_overridden_rules_pass_promtool_check_and_their_unit_tests(tmp_path: Path) -> None:
    out = mixin_render.evaluate(OVERRIDE)
    (tmp_path / "alerts-override.yaml").write_text(
        mixin_render.alerts_yaml(out["alerts"], header=""), encoding="utf-8"
    )
    shutil.copy(MIXIN / "tests" / "override_test.yaml", tmp_path)

    def promtool(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool("promtool"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    check = promtool("check", "rules", "alerts-override.yaml")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules(out['alerts']))} rules found" in check.stdout
    test = promtool("test", "rules", "override_test.yaml")
    assert test.returncode == 0, test.stdout + test.stderr
    # ... and the same tests fail against the defaults: the override is what they test.
    (tmp_path / "alerts-override.yaml").write_text(ALERTS.read_text(), encoding="utf-8")
    default = promtool("test", "rules", "override_test.yaml")
    assert default.returncode != 0


@pytest.mark.tools
def test_jsonnetfmt_keeps_the_mixin_formatted() -> None:
    sources = sorted(MIXIN.rglob("*.libsonnet")) + sorted(MIXIN.rglob("*.jsonnet"))
    assert sources
    r = subprocess.run(
        [tool("jsonnetfmt"), "--test", *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, f"run jsonnetfmt -i on: {r.stdout}{r.stderr}"


def test_rendered_alerts_are_the_yaml_of_the_mixin() -> None:
    assert yaml.safe_load(ALERTS.read_text()) == mixin_render.evaluate()["alerts"]


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_runbook_links_resolve() -> None:
    # The runbook is where a page lands: each of its links to this repository's docs must
    # reach an existing file and heading.
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", RUNBOOK.read_text(encoding="utf-8")):
        if target.startswith("http"):
            continue
        file, _, anchor = target.partition("#")
        path = (RUNBOOK.parent / file) if file else RUNBOOK
        if not path.exists() or (anchor and anchor not in _anchors(path)):
            broken.append(target)
    assert broken == []
