"""The dependency rules of the package, checked on every import statement.

`RULES` is the "may import" table of docs/architecture.md, kept as data: for each room
(a module or subpackage of `exporter`), the rooms of ours it may import and the
third-party packages it may use. Anything else, at module level or inside a function,
is a failure naming the file, the line and the rule.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "exporter"
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


@dataclass(frozen=True)
class Rule:
    ours: frozenset[str]  # rooms it may import (besides itself)
    third_party: frozenset[str]


def _rule(ours: str = "", third_party: str = "") -> Rule:
    return Rule(frozenset(ours.split()), frozenset(third_party.split()))


# The table of docs/architecture.md. A room is matched by the longest prefix.
RULES: dict[str, Rule] = {
    "exporter": _rule(),  # __init__: the version only
    "exporter.errors": _rule(),
    "exporter.logfmt": _rule(),
    "exporter.yamlstrict": _rule("exporter.errors", "yaml"),
    "exporter.wire": _rule(),
    "exporter.families": _rule(),
    "exporter.config": _rule("exporter.errors exporter.yamlstrict exporter.wire exporter.families"),
    "exporter.alibaba": _rule(
        "exporter exporter.errors exporter.wire exporter.config exporter.jobs.model",
        "httpx certifi",
    ),
    "exporter.jobs": _rule("exporter.errors exporter.config exporter.wire"),
    "exporter.metrics": _rule(
        "exporter exporter.errors exporter.families exporter.jobs", "prometheus_client"
    ),
    "exporter.web": _rule(
        "exporter exporter.errors exporter.yamlstrict",
        "prometheus_client bcrypt uvicorn h11",
    ),
    "exporter.simulator": _rule("exporter.wire exporter.alibaba.signing"),
    "exporter.app": _rule(
        "exporter exporter.errors exporter.logfmt exporter.config exporter.alibaba "
        "exporter.jobs exporter.metrics exporter.web exporter.wiring exporter.reconcile",
        "prometheus_client",
    ),
    "exporter.reconcile": _rule("exporter.config exporter.jobs"),
    "exporter.wiring": _rule(
        "exporter exporter.errors exporter.wire exporter.config exporter.alibaba exporter.jobs "
        "exporter.metrics exporter.web exporter.reconcile",
    ),
    "exporter.cli": _rule(
        "exporter exporter.errors exporter.logfmt exporter.wire exporter.config "
        "exporter.alibaba exporter.jobs exporter.metrics exporter.web exporter.simulator "
        "exporter.app",
        "prometheus_client",
    ),
    "exporter.__main__": _rule("exporter.cli"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    matches = [r for r in RULES if module == r or module.startswith(r + ".")]
    if not matches:
        raise AssertionError(f"{module} is in no room of RULES: add it to the table")
    return max(matches, key=len)


def imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) for every import in `source`, relative ones resolved."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from exporter import config` imports the room exporter.config, not `exporter`.
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                submodule = PACKAGE.parent.joinpath(*candidate.split("."))
                is_module = submodule.is_dir() or submodule.with_suffix(".py").exists()
                found.append((node.lineno, candidate if is_module else base))
    return found


def _covers(allowed: str, imported: str) -> bool:
    # "exporter" stands for the package's own __init__ (the version), not for all of it.
    return imported == allowed or (allowed != "exporter" and imported.startswith(allowed + "."))


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    own = room(module)
    rule = RULES[own]
    problems = []
    for line, imported in imports(source, module, is_package):
        top = imported.split(".")[0]
        if top == "exporter":
            target = room(imported)
            # A room uses its own modules and its sub-rooms (alibaba reads alibaba.credentials).
            if target == own or target.startswith(own + "."):
                continue
            if any(_covers(allowed, imported) for allowed in rule.ours):
                continue
            problems.append(f"{module}:{line}: imports {imported} ({own} may not use {target})")
        elif top not in STDLIB and top not in rule.third_party:
            problems.append(f"{module}:{line}: imports {top} ({own} may not use it)")
    return problems


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_import_follows_the_may_import_table() -> None:
    problems = []
    for path in package_files():
        problems += violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert problems == []


def test_every_module_is_in_a_room() -> None:
    for path in package_files():
        room(module_name(path))  # raises for a module the table does not cover


def test_nothing_imports_the_composition_root() -> None:
    for path in package_files():
        module = module_name(path)
        for line, imported in imports(path.read_text(), module, path.name == "__init__.py"):
            if imported.startswith(("exporter.cli", "exporter.app")):
                assert module in ("exporter.cli", "exporter.__main__"), f"{module}:{line}"


def test_the_table_matches_docs_architecture() -> None:
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    table = doc.split("<!-- may-import table", 1)[1].split("-->", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("exporter"):
            ours = frozenset(c.strip("` ") for c in cells[1].split(",") if c.strip("` -"))
            third = frozenset(c.strip("` ") for c in cells[2].split(",") if c.strip("` -"))
            rows[cells[0]] = Rule(ours, third)
    assert rows == RULES


def test_the_family_table_matches_docs_architecture() -> None:
    from exporter.families import METRICS

    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    table = doc.split("<!-- families table", 1)[1].split("-->", 1)[1].split("\n\n", 1)[0]
    rows = [
        tuple(c.strip().strip("`") for c in line.strip().strip("|").split("|"))
        for line in table.strip().splitlines()[2:]
    ]
    assert rows == [(m.name, m.source) for m in METRICS]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("exporter.alibaba.client", "import prometheus_client\n"),
        ("exporter.jobs.store", "from httpx import Client\n"),
        ("exporter.metrics.collector", "def f():\n    import httpx\n"),
        ("exporter.web.routes", "from exporter.jobs.store import JobStore\n"),
        ("exporter.simulator.core", "from exporter.alibaba import client\n"),
        ("exporter.errors", "from exporter import config\n"),
        ("exporter.jobs.store", "from ..metrics import table\n"),
    ],
)
def test_the_checker_catches_a_forbidden_import(module: str, source: str) -> None:
    assert violations(source, module) != []
