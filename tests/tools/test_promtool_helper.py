"""tests/support/promtool.py lets nothing through: no lint exception is left."""

from __future__ import annotations

import pytest

from tests.support import promtool

pytestmark = pytest.mark.tools


def gauge(name: str) -> str:
    return f"# HELP {name} x\n# TYPE {name} gauge\n{name} 1\n"


def test_specs_total_shards_gauge_is_lint_clean() -> None:
    assert promtool.problems(gauge("alb_exporter_total_shards")) == ""


def test_the_count_suffix_lint_is_a_problem_on_any_name() -> None:
    # The old gauge's name draws it: the reason it was renamed.
    found = promtool.problems(gauge("alb_exporter_shard_count") + gauge("alb_other_count"))
    assert "alb_exporter_shard_count" in found and "alb_other_count" in found
    assert "exit 3" in found


def test_an_unparseable_exposition_is_a_problem() -> None:
    assert promtool.problems("alb_broken{ 1\n")
