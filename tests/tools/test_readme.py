"""The README's metric table, its two commands and its shard one-liner must match the code."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from exporter.config import JOB_FAMILIES, shard_of
from exporter.families import METRICS
from tests.support.artifacts import alerts, dashboard, dashboard_rules

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_metric_rows() -> dict[str, tuple[str, frozenset[str]]]:
    text = README.read_text()
    table = text.split("<!-- metric table", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        m = re.match(r"\| `(alb_[a-z_]+)` \| (\w+) \|([^|]*)\|", line)
        if m:
            labels = frozenset(s.strip() for s in m.group(3).split(",") if s.strip())
            rows[m.group(1)] = (m.group(2), labels)
    return rows


def test_readme_metric_table_matches_the_metric_definitions() -> None:
    want = {m.name: (m.type, frozenset(m.labels)) for m in METRICS}
    assert readme_metric_rows() == want


def test_readme_names_the_two_commands_at_the_top() -> None:
    head = README.read_text().split("## Running it", 1)[0]
    assert "make demo" in head and "make test" in head
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def readme_disabled_family_rows() -> dict[str, tuple[set[str], set[str]]]:
    """Family -> (dashboard panels, alerts) of the README's "what each disabled family
    takes away" table."""
    text = README.read_text()
    table = text.split("<!-- disabled families", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        m = re.fullmatch(r"`(alb_[a-z_]+)`", cells[0])
        if m:
            rows[m.group(1)] = (
                set(re.findall(r"\*([^*]+)\*", cells[1])),
                set(re.findall(r"`(Alb\w+)`", cells[2])),
            )
    return rows


def users(family: str) -> tuple[set[str], set[str]]:
    """(dashboard panels, alerts, annotation queries included) that read `family`."""
    name = family.removesuffix("_total")
    reads = re.compile(rf"\b{re.escape(name)}(?:_total|_bucket|_sum|_count)?\b")
    panels = {
        title
        for title, target in dashboard_rules.panel_targets(dashboard())
        if reads.search(target.get("expr", ""))
    }
    fired = {
        rule["alert"]
        for group in alerts()["groups"]
        for rule in group["rules"]
        if reads.search(rule["expr"]) or any(map(reads.search, rule["annotations"].values()))
    }
    return panels, fired


def test_readme_says_what_each_disabled_family_takes_away() -> None:
    rows = readme_disabled_family_rows()
    assert tuple(rows) == JOB_FAMILIES
    assert rows == {family: users(family) for family in JOB_FAMILIES}


def readme_shard_one_liner() -> str:
    section = README.read_text().split("## Sharding", 1)[1].split("\n## ", 1)[0]
    (line,) = [ln for ln in section.splitlines() if "sha256sum" in ln]
    return line.split("#", 1)[0].strip()


@pytest.mark.tools
def test_readme_shard_one_liner_agrees_with_the_code() -> None:
    # The README's shell command, run by bash with coreutils' sha256sum, must name the same
    # owner as exporter/config/shard.py for any target and count, not only its example.
    command = readme_shard_one_liner()
    assert "prod cn-hangzhou" in command and "% 3" in command
    targets = [("prod", "cn-hangzhou", 3), ("staging", "eu-central-1", 3)]
    targets += [(f"acct-{i}", f"region-{i % 5}", n) for i, n in enumerate([2, 4, 5, 7, 11, 13])]
    for account, region, count in targets:
        shell = command.replace("prod cn-hangzhou", f"{account} {region}").replace(
            "% 3", f"% {count}"
        )
        out = subprocess.run(
            ["bash", "-c", shell], capture_output=True, text=True, timeout=10, check=True
        )
        assert int(out.stdout) == shard_of(account, region, count), (account, region, count)
