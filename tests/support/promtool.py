"""`promtool check metrics`, as every test that lints an exposition runs it.

promtool reports lint problems with exit code 3, one line each. Every problem, and every
exit code but 0, is a defect: SPEC's shard gauge is `alb_exporter_total_shards` (once
`alb_exporter_shard_count`, which promtool's `_count` suffix lint flagged and this helper
had to let through).
"""

from __future__ import annotations

import subprocess


def problems(text: str) -> str:
    """promtool's complaints about `text`, or "" when it has none."""
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    if result.returncode == 0:
        return ""
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return f"promtool exit {result.returncode}: " + "\n".join(lines)
