"""The one table of every metric (name, type, help, labels) and the label-value rules.

The collector, the self-metrics and the README's metric table are all checked against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from exporter.jobs.model import MAX_TEXT_LENGTH, cap_text

# Label values are API strings; a hostile or buggy API must not bloat the exposition.
MAX_LABEL_VALUE_LENGTH = MAX_TEXT_LENGTH
cap_label = cap_text

MetricType = Literal["gauge", "counter", "histogram"]

# API strings become label values; a hostile or buggy API must not bloat the exposition.

TARGET = ("account", "region")


@dataclass(frozen=True)
class MetricSpec:
    """One row of the metric table; README and code are both checked against it."""

    name: str  # the exposed name, counters with their `_total`
    type: MetricType
    help: str
    labels: tuple[str, ...]


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "alb_async_jobs",
        "gauge",
        "ALB async jobs created within the lookback window, by current status.",
        (*TARGET, "status", "resource_type", "api_name", "operate_type"),
    ),
    MetricSpec(
        "alb_async_jobs_failed",
        "gauge",
        "Failed ALB async jobs created within the lookback window.",
        (*TARGET, "resource_type", "api_name", "error_code"),
    ),
    MetricSpec(
        "alb_async_jobs_finished_total",
        "counter",
        "ALB async jobs seen reaching Succeeded or Failed, each job counted once.",
        (*TARGET, "status", "resource_type", "api_name", "operate_type"),
    ),
    MetricSpec(
        "alb_async_jobs_failures_total",
        "counter",
        "Failed ALB async jobs, each job counted once.",
        (*TARGET, "resource_type", "api_name", "error_code"),
    ),
    MetricSpec(
        "alb_async_job_duration_seconds",
        "histogram",
        "ModifyTime minus CreateTime of finished ALB async jobs, observed once per job.",
        (*TARGET, "status", "resource_type", "api_name"),
    ),
    MetricSpec(
        "alb_async_job_processing_oldest_created_timestamp_seconds",
        "gauge",
        "CreateTime of the oldest ALB async job still Processing; absent when none.",
        (*TARGET, "resource_type", "api_name"),
    ),
    MetricSpec(
        "alb_async_jobs_vanished_total",
        "counter",
        "ALB async jobs seen Processing that dropped out of the results unfinished.",
        (*TARGET, "resource_type", "api_name"),
    ),
    MetricSpec(
        "alb_async_job_recent_failure_timestamp_seconds",
        "gauge",
        "Failure time (ModifyTime) of the most recent failed ALB async jobs.",
        (*TARGET, "job_id", "resource_id", "resource_type", "api_name", "error_code"),
    ),
    MetricSpec(
        "alb_exporter_up",
        "gauge",
        "1 if the last refresh of this account and region succeeded, else 0.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_last_success_timestamp_seconds",
        "gauge",
        "Unix time the job data now served was fetched.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_refresh_duration_seconds",
        "gauge",
        "Wall time of the last refresh of this account and region.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_api_requests_total",
        "counter",
        "ListAsynJobs HTTP requests, by result code (OK, API error code, Timeout, ...).",
        (*TARGET, "code"),
    ),
    MetricSpec(
        "alb_exporter_api_request_duration_seconds",
        "histogram",
        "Duration of ListAsynJobs HTTP requests.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_jobs_tracked",
        "gauge",
        "ALB async jobs held in memory for this account and region.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_resync_recovered_jobs_total",
        "counter",
        "Jobs a full resync found that the incremental listings had missed (the API listed "
        "them later than overlap); raise overlap when this moves.",
        TARGET,
    ),
    MetricSpec(
        "alb_exporter_config_last_reload_successful",
        "gauge",
        "1 if the last configuration reload succeeded, else 0.",
        (),
    ),
    MetricSpec(
        "alb_exporter_credential_refreshes_total",
        "counter",
        "Fetches of temporary credentials (STS, metadata, ...), by result code.",
        ("account", "source", "code"),
    ),
    MetricSpec(
        "alb_exporter_credentials_expiry_timestamp_seconds",
        "gauge",
        "Unix time the temporary credentials in use expire.",
        ("account", "source"),
    ),
    MetricSpec(
        "alb_exporter_build_info",
        "gauge",
        "Always 1; labels carry the exporter and Python versions.",
        ("version", "python_version"),
    ),
    MetricSpec(
        "alb_exporter_shard_ordinal",
        "gauge",
        "This replica's shard (--shard.index), 0..alb_exporter_shard_count-1.",
        (),
    ),
    MetricSpec(
        "alb_exporter_state_errors_total",
        "counter",
        "State file problems: restore (unusable file, kept aside) or save (cannot write).",
        ("operation",),
    ),
    MetricSpec(
        "alb_exporter_job_events_queued",
        "gauge",
        "Job event lines waiting for the job_events output.",
        (),
    ),
    MetricSpec(
        "alb_exporter_job_events_dropped_total",
        "counter",
        "Job event lines dropped because the output stayed stalled past the queue's bound.",
        (),
    ),
    # SPEC's name. `promtool check metrics` lints it (a gauge should not end in `_count`, a
    # histogram's suffix; kube-state-metrics says `..._total_shards`), but dashboards, alerts
    # and users' queries follow SPEC; tests/support/promtool.py accepts exactly this lint.
    MetricSpec(
        "alb_exporter_shard_count",
        "gauge",
        "Number of shards the targets are split across (--shard.count).",
        (),
    ),
)

_BY_NAME: Mapping[str, MetricSpec] = {spec.name: spec for spec in METRICS}

# Families JobsCollector builds on every scrape, in exposition order; the rest of
# METRICS belongs to SelfMetrics.
JOB_COLLECTOR_METRICS: tuple[str, ...] = (
    "alb_async_jobs",
    "alb_async_jobs_failed",
    "alb_async_jobs_finished_total",
    "alb_async_jobs_failures_total",
    "alb_async_job_duration_seconds",
    "alb_async_job_processing_oldest_created_timestamp_seconds",
    "alb_async_jobs_vanished_total",
    "alb_async_job_recent_failure_timestamp_seconds",
    "alb_exporter_up",
    "alb_exporter_last_success_timestamp_seconds",
    "alb_exporter_refresh_duration_seconds",
    "alb_exporter_jobs_tracked",
    "alb_exporter_resync_recovered_jobs_total",
)

# ListAsynJobs calls usually take tens of milliseconds; the request timeout caps them.
API_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def spec(name: str) -> MetricSpec:
    return _BY_NAME[name]


def family_name(metric: MetricSpec) -> str:
    """The name prometheus_client wants: it appends `_total` to counters itself."""
    if metric.type == "counter" and metric.name.endswith("_total"):
        return metric.name.removesuffix("_total")
    return metric.name
