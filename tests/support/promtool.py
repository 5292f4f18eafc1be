"""`promtool check metrics`, as every test that lints an exposition runs it.

promtool reports lint problems with exit code 3, one line each. SPEC names one gauge
`alb_exporter_shard_count`, and promtool's lint says a non-histogram metric should not end
in `_count`. That one line, for that one name, is SPEC's choice and not a defect; every
other problem, and every other exit code, is.
"""

from __future__ import annotations

import subprocess

#: The lint promtool prints for SPEC's shard gauge (promtool 2.42's wording).
SPEC_LINT = (
    'alb_exporter_shard_count non-histogram and non-summary metrics should not have "_count" suffix'
)


def problems(text: str) -> str:
    """promtool's complaints about `text`, or "" when it has none but SPEC_LINT."""
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    if result.returncode == 0:
        return ""
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode == 3 and lines and all(line == SPEC_LINT for line in lines):
        return ""
    return f"promtool exit {result.returncode}: " + "\n".join(lines)
