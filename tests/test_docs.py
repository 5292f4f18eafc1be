"""The documentation a user reads: every link resolves, nothing points at documents a user
cannot see, the README stays a user's page, and the quick start's pieces agree with the
chart they configure (its values file is the one CI lints; its trust policy names the
ServiceAccount that values file gives the pod).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DEPLOY = REPO / "docs" / "deploy.md"
QUICKSTART_VALUES = REPO / "helm" / "alb-jobs-exporter" / "ci" / "quickstart-values.yaml"
DOCS = sorted(
    [README, REPO / "CONTRIBUTING.md", REPO / "bench" / "RESULTS.md", *REPO.glob("docs/*.md")]
)
# What a user of the repository sees: no reference may lead outside it.
USER_FACING = [
    *DOCS,
    REPO / "config.example.yaml",
    REPO / "helm" / "alb-jobs-exporter" / "values.yaml",
    *sorted((REPO / "helm" / "alb-jobs-exporter" / "templates").iterdir()),
]
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~)")


def _outside_code(text: str) -> list[str]:
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return lines


def anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation but hyphens dropped, spaces to hyphens,
    repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"#{1,6} (.+)", line)
        if m is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path) -> list[str]:
    return [
        m for line in _outside_code(path.read_text(encoding="utf-8")) for m in _LINK.findall(line)
    ]


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_every_link_resolves(doc: Path) -> None:
    broken = []
    for target in links(doc):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not fetched (no network)
            continue
        file, _, anchor = target.partition("#")
        resolved = (doc.parent / file).resolve() if file else doc
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert broken == []


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    doc = tmp_path / "a.md"
    doc.write_text("# Title\n\n[x](b.md) [y](#title) [z](#nope)\n\n```\n[w](gone.md)\n```\n")
    assert links(doc) == ["b.md", "#title", "#nope"]
    assert anchors(doc) == {"title"}
    assert anchors(REPO / "docs" / "deploy.md") >= {"quick-start-on-ack", "tls-and-basic-auth"}


@pytest.mark.parametrize("doc", USER_FACING, ids=[str(d.relative_to(REPO)) for d in USER_FACING])
def test_no_reference_to_documents_a_user_cannot_see(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert not re.search(r"\bSPEC\b", text)
    assert not re.search(r"\b[Ii]ssue #?\d+", text)
    assert "/work/" not in text


def test_readme_is_a_users_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for section in ("## Try it", "## Configuration", "## Credentials", "## Metrics"):
        assert section in text
    assert "docs/deploy.md" in text


def _json_blocks(path: Path) -> list[dict[str, object]]:
    blocks = re.findall(r"```json\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    return [json.loads(b) for b in blocks]


def test_trust_policy_names_the_service_account_the_quick_start_gives_the_pod() -> None:
    values = yaml.safe_load(QUICKSTART_VALUES.read_text(encoding="utf-8"))
    assert values["rrsa"]["enabled"] is True
    sub = f"system:serviceaccount:monitoring:{values['serviceAccount']['name']}"
    for doc in (README, DEPLOY):
        policies = [b for b in _json_blocks(doc) if "sts:AssumeRole" in json.dumps(b)]
        assert policies, f"{doc.name}: no trust policy"
        for policy in policies:
            (statement,) = policy["Statement"]  # type: ignore[misc]
            condition = statement["Condition"]["StringEquals"]
            assert condition["oidc:sub"] == sub, doc.name
            assert condition["oidc:aud"] == "sts.aliyuncs.com"
            assert statement["Principal"]["Federated"][0].startswith("acs:ram::")


def test_quick_start_values_are_the_file_ci_lints() -> None:
    text = DEPLOY.read_text(encoding="utf-8")
    quick = text.split("## Quick start on ACK", 1)[1].split("\n---\n", 1)[0]
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", quick, re.S) if "image:" in b]
    assert yaml.safe_load(block) == yaml.safe_load(QUICKSTART_VALUES.read_text(encoding="utf-8"))
    assert "BASE_IMAGE" in quick and "helm install" in quick
