"""The README's metric table, its two commands and its shard command must match the code."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from exporter import cli
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


def readme_shard_command() -> tuple[list[str], int]:
    section = README.read_text().split("## Sharding", 1)[1].split("\n## ", 1)[0]
    (line,) = [ln for ln in section.splitlines() if "--shard.owner-of" in ln]
    command, answer = line.split("#", 1)
    return shlex.split(command), int(answer)


def test_readme_shard_command_agrees_with_the_code(capsys: pytest.CaptureFixture[str]) -> None:
    # The README's command, run through the real CLI, answers what it says, and the same
    # command answers exporter/config/shard.py's owner for any target and count.
    argv, answer = readme_shard_command()
    assert argv[0] == "alb-jobs-exporter" and argv[1:3] == ["--shard.count", "3"]
    assert argv[3:] == ["--shard.owner-of", "prod", "cn-hangzhou"]
    targets = [("prod", "cn-hangzhou", 3, answer), ("staging", "eu-central-1", 3, None)]
    targets += [(f"acct-{i}", f"region-{i % 5}", n, None) for i, n in enumerate([2, 4, 5, 11])]
    for account, region, count, want in targets:
        flags = ["--shard.count", str(count), "--shard.owner-of", account, region]
        assert cli.main(flags, {}) == 0
        out = int(capsys.readouterr().out)
        assert out == (shard_of(account, region, count) if want is None else want)
