"""The README's metric table and its two commands must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.metrics.table import METRICS

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
