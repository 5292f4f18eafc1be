"""The label-value rules of the exposition, and the metric table (`exporter.families`)
as the metrics room reads it."""

from __future__ import annotations

from exporter.families import (
    METRICS,
    TARGET,
    TARGET_FAMILIES,
    MetricSpec,
    MetricType,
    family_name,
    spec,
)
from exporter.jobs.model import MAX_TEXT_LENGTH, cap_text

__all__ = [
    "API_DURATION_BUCKETS",
    "JOB_COLLECTOR_METRICS",
    "MAX_LABEL_VALUE_LENGTH",
    "METRICS",
    "TARGET",
    "MetricSpec",
    "MetricType",
    "cap_label",
    "family_name",
    "spec",
]

# Label values are API strings; a hostile or buggy API must not bloat the exposition.
MAX_LABEL_VALUE_LENGTH = MAX_TEXT_LENGTH
cap_label = cap_text

# The metric table itself is `exporter.families`; re-exported for the metrics room.
JOB_COLLECTOR_METRICS = TARGET_FAMILIES

# ListAsynJobs calls usually take tens of milliseconds; the request timeout caps them.
API_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
