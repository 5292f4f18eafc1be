"""Validate the ServiceMonitor and PodMonitor objects of a `helm template` output against
prometheus-operator's own CRD schemas (ci/schemas/prometheus-operator-monitors.json,
v0.93.0), strictly: kubernetes-validate knows only built-in kinds, and the API server
would prune an unknown key silently, so here an unknown key anywhere is an error.

usage: PYTHON validate_monitors.py RENDERED.yaml     (PYTHON with jsonschema and PyYAML:
       the kubernetes-validate venv of ci/install-tools.sh)

Prints one line per monitor checked; exits 1 on the first invalid one, 0 otherwise
(also when there is none).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS = Path(__file__).parent / "schemas" / "prometheus-operator-monitors.json"
KINDS = ("ServiceMonitor", "PodMonitor")


def strict(schema: Any) -> Any:
    """The schema with additionalProperties: false wherever it lists properties and says
    nothing of other keys (a CRD's structural schema would prune them instead)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validators() -> dict[str, jsonschema.protocols.Validator]:
    schemas = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    out = {}
    for kind in KINDS:
        schema = strict(schemas[kind])
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        out[kind] = cls(schema)
    return out


def main(path: str) -> int:
    checkers = validators()
    docs = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d]
    for doc in docs:
        kind = doc.get("kind")
        if kind not in checkers:
            continue
        name = f"{kind}/{doc['metadata']['name']}"
        if doc.get("apiVersion") != "monitoring.coreos.com/v1":
            print(f"{name}: apiVersion {doc.get('apiVersion')!r}, not monitoring.coreos.com/v1")
            return 1
        errors = sorted(checkers[kind].iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            for error in errors:
                where = ".".join(str(p) for p in error.absolute_path)
                print(f"{name}: {where}: {error.message}")
            return 1
        print(f"{name}: valid against prometheus-operator v0.93.0 (strict)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
