"""Reading the exemplars of an OpenMetrics exposition, independently of the writer.

prometheus_client's OpenMetrics parser (0.26) takes every `"` after a sample's value for
a quote, escaped or not, and so refuses an exemplar whose id has one: the exemplars are
read here, and the parser can read the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An exemplar at the end of a sample line: the one label, its value escaped as OpenMetrics
# escapes (backslash, newline, double quote), a value and a timestamp. A match cannot
# start inside the sample's labels: it would have to span their closing (unescaped) quote.
EXEMPLAR = re.compile(r' # \{job_id="((?:[^"\\\n]|\\[\\n"])*)"\} (\S+) (\S+)$')


@dataclass(frozen=True)
class Found:
    sample: str  # the sample line without the exemplar
    job_id: str
    value: float
    timestamp: float


def exemplars(exposition: str) -> tuple[list[Found], str]:
    """The exemplars of `exposition`, and its text without them."""
    found: list[Found] = []
    lines = []
    for line in exposition.split("\n"):
        match = EXEMPLAR.search(line)
        if match is not None:
            escaped, value, timestamp = match.groups()
            job_id = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], escaped)
            line = line[: match.start()]
            found.append(Found(line, job_id, float(value), float(timestamp)))
        lines.append(line)
    return found, "\n".join(lines)


def carried(job_id: str) -> bool:
    """SPEC "Exemplars": an id is carried whole, within OpenMetrics' 128 characters of
    exemplar labels (with `job_id`), if UTF-8 can carry it at all, and only if it needs
    no escaping (Prometheus 2.42 would store the escapes: exporter.metrics.text.carried)."""
    try:
        job_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return len("job_id") + len(job_id) <= 128 and not any(c in job_id for c in '\\"\n')
