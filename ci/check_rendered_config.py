"""Run the exporter's own `--check-config` on the config a `helm template` output renders,
with the shard flags its Deployment or StatefulSet passes.

usage: PYTHON check_rendered_config.py RENDERED.yaml

PYTHON must be able to import the exporter (the project's .venv). A StatefulSet's pods
take `--shard.index=hostname` from their names, `<name>-<ordinal>`; here each ordinal is
checked as the number its pod would get, so every shard's view of the config is loaded.
Prints each summary; exits non-zero as soon as one check fails.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

WORKLOADS = ("Deployment", "StatefulSet")
CONFIG_FLAG = "--config.file="


def checks(rendered: str) -> tuple[str, list[list[str]]]:
    """The config text and one list of extra flags per process to check."""
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    (config,) = [
        d["data"]["config.yaml"]
        for d in docs
        if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})
    ]
    (workload,) = [d for d in docs if d["kind"] in WORKLOADS]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    args = [a for a in container["args"] if not a.startswith(CONFIG_FLAG)]
    shard = [a for a in args if a.startswith("--shard.")]
    if not shard:
        return config, [[]]
    count = int(next(a for a in shard if a.startswith("--shard.count=")).split("=", 1)[1])
    assert "--shard.index=hostname" in shard, shard
    assert workload["kind"] == "StatefulSet" and workload["spec"]["replicas"] == count
    return config, [[f"--shard.count={count}", f"--shard.index={i}"] for i in range(count)]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    config, runs = checks(Path(argv[1]).read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(config, encoding="utf-8")
        for flags in runs:
            cmd = [sys.executable, "-m", "exporter", "--check-config", f"{CONFIG_FLAG}{path}"]
            # No credentials in the environment: only their presence in the config counts.
            result = subprocess.run(
                [*cmd, *flags], capture_output=True, text=True, env={}, check=False
            )
            print(f"== --check-config {' '.join(flags)}".rstrip())
            print(result.stdout + result.stderr, end="")
            if result.returncode != 0:
                return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
