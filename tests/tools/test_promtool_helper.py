"""tests/support/promtool.py lets through SPEC's shard gauge lint and nothing else."""

from __future__ import annotations

import pytest

from tests.support import promtool

pytestmark = pytest.mark.tools


def gauge(name: str) -> str:
    return f"# HELP {name} x\n# TYPE {name} gauge\n{name} 1\n"


def test_specs_shard_count_gauge_is_accepted() -> None:
    assert promtool.problems(gauge("alb_exporter_shard_count")) == ""


def test_the_same_lint_on_any_other_name_is_a_problem() -> None:
    found = promtool.problems(gauge("alb_exporter_shard_count") + gauge("alb_other_count"))
    assert "alb_other_count" in found and "exit 3" in found


def test_an_unparseable_exposition_is_a_problem() -> None:
    assert promtool.problems("alb_broken{ 1\n")
