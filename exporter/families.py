"""The one table of every metric family the exporter exposes: name, type, help, labels and
where its values come from. Pure data, importing nothing, so every room may read it.

Read by: the exposition (`exporter.metrics`: which families a target writes, from what,
how coinciding label sets merge, and in which order), the self-metrics (`Instrument` rows),
the config's `metrics.disable` and `metrics.duration_labels` validation, the README's
metric table and docs/architecture.md (both checked by tests). A new self-metric is a
row here with source "instrument" and `SelfMetrics.instrument(name)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MetricType = Literal["gauge", "counter", "histogram"]
Combine = Literal["sum", "min", "max"]

TARGET = ("account", "region")


@dataclass(frozen=True)
class MetricSpec:
    """One row of the metric table.

    `source` says where the values come from: "snapshot.<field>" (the target's job store
    snapshot) or "status.<field>" (its last refresh), both written per target when the
    target is published; "requests" (the per-target request metrics, written as requests
    are observed); "instrument" (a self-metric changed through its `Instrument`).
    `combine` merges two targets' samples whose capped label sets coincide. `optional`:
    `metrics.disable` may turn the family off (job data; never the exporter's own health).
    """

    name: str  # the exposed name, counters with their `_total`
    type: MetricType
    help: str
    labels: tuple[str, ...]
    source: str
    combine: Combine = "sum"

    @property
    def per_target(self) -> bool:
        """Written from a target's snapshot and status when the target is published."""
        return self.source.startswith(("snapshot.", "status."))

    @property
    def optional(self) -> bool:
        return self.per_target and self.name.startswith("alb_async_")


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "alb_async_jobs",
        "gauge",
        "ALB async jobs created within the lookback window, by current status.",
        (*TARGET, "status", "resource_type", "api_name", "operate_type"),
        "snapshot.jobs_by_status",
    ),
    MetricSpec(
        "alb_async_jobs_failed",
        "gauge",
        "Failed ALB async jobs created within the lookback window.",
        (*TARGET, "resource_type", "api_name", "error_code"),
        "snapshot.failed",
    ),
    MetricSpec(
        "alb_async_jobs_finished_total",
        "counter",
        "ALB async jobs seen reaching Succeeded or Failed, each job counted once.",
        (*TARGET, "status", "resource_type", "api_name", "operate_type"),
        "snapshot.finished_total",
    ),
    MetricSpec(
        "alb_async_jobs_failures_total",
        "counter",
        "Failed ALB async jobs, each job counted once.",
        (*TARGET, "resource_type", "api_name", "error_code"),
        "snapshot.failures_total",
    ),
    MetricSpec(
        "alb_async_job_duration_seconds",
        "histogram",
        "ModifyTime minus CreateTime of finished ALB async jobs, observed once per job.",
        (*TARGET, "status", "resource_type", "api_name"),
        "snapshot.durations",
    ),
    MetricSpec(
        "alb_async_job_processing_oldest_created_timestamp_seconds",
        "gauge",
        "CreateTime of the oldest ALB async job still Processing; absent when none.",
        (*TARGET, "resource_type", "api_name"),
        "snapshot.oldest_processing",
        combine="min",
    ),
    MetricSpec(
        "alb_async_jobs_vanished_total",
        "counter",
        "ALB async jobs seen Processing that dropped out of the results unfinished.",
        (*TARGET, "resource_type", "api_name"),
        "snapshot.vanished_total",
    ),
    MetricSpec(
        "alb_async_job_recent_failure_timestamp_seconds",
        "gauge",
        "Failure time (ModifyTime) of the most recent failed ALB async jobs.",
        (*TARGET, "job_id", "resource_id", "resource_type", "api_name", "error_code"),
        "snapshot.recent_failures",
        combine="max",
    ),
    MetricSpec(
        "alb_exporter_up",
        "gauge",
        "1 if the last refresh of this account and region succeeded, else 0.",
        TARGET,
        "status.up",
        combine="min",
    ),
    MetricSpec(
        "alb_exporter_last_success_timestamp_seconds",
        "gauge",
        "Unix time the job data now served was fetched.",
        TARGET,
        "status.last_success",
        combine="min",
    ),
    MetricSpec(
        "alb_exporter_refresh_duration_seconds",
        "gauge",
        "Wall time of the last refresh of this account and region.",
        TARGET,
        "status.refresh_duration",
        combine="max",
    ),
    MetricSpec(
        "alb_exporter_api_requests_total",
        "counter",
        "ListAsynJobs HTTP requests, by result code (OK, API error code, Timeout, ...).",
        (*TARGET, "code"),
        "requests",
    ),
    MetricSpec(
        "alb_exporter_api_request_duration_seconds",
        "histogram",
        "Duration of ListAsynJobs HTTP requests.",
        TARGET,
        "requests",
    ),
    MetricSpec(
        "alb_exporter_jobs_tracked",
        "gauge",
        "ALB async jobs held in memory for this account and region.",
        TARGET,
        "snapshot.jobs_tracked",
    ),
    MetricSpec(
        "alb_exporter_resync_recovered_jobs_total",
        "counter",
        "Jobs a full resync found that the incremental listings had missed (the API listed "
        "them later than overlap); raise overlap when this moves.",
        TARGET,
        "snapshot.recovered_total",
    ),
    MetricSpec(
        "alb_exporter_config_last_reload_successful",
        "gauge",
        "1 if the last configuration reload succeeded, else 0.",
        (),
        "instrument",
    ),
    MetricSpec(
        "alb_exporter_credential_refreshes_total",
        "counter",
        "Fetches of temporary credentials (STS, metadata, ...), by result code.",
        ("account", "source", "code"),
        "instrument",
    ),
    MetricSpec(
        "alb_exporter_credentials_expiry_timestamp_seconds",
        "gauge",
        "Unix time the temporary credentials in use expire.",
        ("account", "source"),
        "instrument",
    ),
    MetricSpec(
        "alb_exporter_build_info",
        "gauge",
        "Always 1; labels carry the exporter and Python versions.",
        ("version", "python_version"),
        "instrument",
    ),
    MetricSpec(
        "alb_exporter_shard_ordinal",
        "gauge",
        "This replica's shard (--shard.index), 0..alb_exporter_shard_count-1.",
        (),
        "instrument",
    ),
    # SPEC's name. `promtool check metrics` lints it (a gauge should not end in `_count`, a
    # histogram's suffix; kube-state-metrics says `..._total_shards`), but dashboards, alerts
    # and users' queries follow SPEC; tests/support/promtool.py accepts exactly this lint.
    MetricSpec(
        "alb_exporter_shard_count",
        "gauge",
        "Number of shards the targets are split across (--shard.count).",
        (),
        "instrument",
    ),
)


_BY_NAME: Mapping[str, MetricSpec] = {row.name: row for row in METRICS}

# The families written per target, in exposition order (after the exporter's own).
TARGET_FAMILIES: tuple[str, ...] = tuple(row.name for row in METRICS if row.per_target)
# The job data families `metrics.disable` may name.
JOB_FAMILIES: tuple[str, ...] = tuple(row.name for row in METRICS if row.optional)

DURATION = "alb_async_job_duration_seconds"
# The labels of a duration histogram key in the store, in order: those
# `metrics.duration_labels` may keep.
DURATION_KEY_LABELS: tuple[str, ...] = tuple(
    label for label in _BY_NAME[DURATION].labels if label not in TARGET
)


def spec(name: str) -> MetricSpec:
    return _BY_NAME[name]


def family_name(metric: MetricSpec) -> str:
    """The name prometheus_client wants: it appends `_total` to counters itself."""
    if metric.type == "counter" and metric.name.endswith("_total"):
        return metric.name.removesuffix("_total")
    return metric.name
