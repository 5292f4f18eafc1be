"""Collector: whole-exposition golden test, the metric table, hostile labels, self-metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families

from exporter.jobs.snapshot import StoreSnapshot
from exporter.jobs.target import TargetStatus
from exporter.metrics.collector import TargetView
from exporter.metrics.self_metrics import SelfMetrics
from exporter.metrics.table import (
    JOB_COLLECTOR_METRICS,
    MAX_LABEL_VALUE_LENGTH,
    METRICS,
    cap_label,
    family_name,
)
from exporter.wire import FAILED, PROCESSING, SUCCEEDED
from tests.unit.metrics.fakes import T0, FakeView, mkjob, published

# The OpenMetrics module is untyped upstream.
generate_openmetrics: Callable[[CollectorRegistry], bytes] = openmetrics_exposition.generate_latest
parse_openmetrics: Callable[[str], Iterable[Metric]] = (
    openmetrics_parser.text_string_to_metric_families
)


class BrokenView:
    account = "broken"
    region = "nowhere"

    def snapshot(self) -> StoreSnapshot:
        raise RuntimeError("store exploded")

    def status(self) -> TargetStatus:
        return TargetStatus()


class NamelessView(BrokenView):
    @property
    def account(self) -> str:  # type: ignore[override]
        raise RuntimeError("no account either")


def registry_of(*views: TargetView) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(published(views))
    return registry


def scenario() -> tuple[FakeView, FakeView]:
    """prod/cn-hangzhou: two refreshes; dev/cn-shanghai: never tried."""
    prod = FakeView("prod", "cn-hangzhou")
    lsn = ("listener", "CreateListener", "Create")
    lb = ("loadbalancer", "CreateLoadBalancer", "Create")
    sg = ("servergroup", "AddServersToServerGroup", "Update")
    j1 = mkjob("j1", SUCCEEDED, *lsn, "lsn-1", T0 - 100, T0 - 95)
    prod.store.update([j1, mkjob("j2", PROCESSING, *lb, "alb-1", T0 - 30, T0 - 30)], (), T0)
    prod.store.update(
        [
            j1,
            mkjob("j2", FAILED, *lb, "alb-1", T0 - 30, T0 + 40, "QuotaExceeded.LoadBalancer"),
            mkjob("j3", PROCESSING, *sg, "sgp-1", T0 + 50, T0 + 50),
            mkjob("j4", SUCCEEDED, *lsn, "lsn-2", T0 + 10, T0 + 12),
        ],
        (),
        T0 + 60,
    )
    prod.state = TargetStatus(tried=True, up=True, last_success=T0 + 60, refresh_duration=1.5)
    return FakeView("dev", "cn-shanghai"), prod


# Computed by hand from scenario(): j1 was terminal at priming (not counted), j2 went
# Processing -> Failed after 70 s, j4 is new and Succeeded after 2 s, j3 is Processing.
# Labels appear sorted by name, as prometheus_client writes them.
EXPECTED = """\
# HELP alb_async_jobs ALB async jobs created within the lookback window, by current status.
# TYPE alb_async_jobs gauge
alb_async_jobs{account="prod",api_name="CreateLoadBalancer",operate_type="Create",region="cn-hangzhou",resource_type="loadbalancer",status="Failed"} 1.0
alb_async_jobs{account="prod",api_name="AddServersToServerGroup",operate_type="Update",region="cn-hangzhou",resource_type="servergroup",status="Processing"} 1.0
alb_async_jobs{account="prod",api_name="CreateListener",operate_type="Create",region="cn-hangzhou",resource_type="listener",status="Succeeded"} 2.0
# HELP alb_async_jobs_failed Failed ALB async jobs created within the lookback window.
# TYPE alb_async_jobs_failed gauge
alb_async_jobs_failed{account="prod",api_name="CreateLoadBalancer",error_code="QuotaExceeded.LoadBalancer",region="cn-hangzhou",resource_type="loadbalancer"} 1.0
# HELP alb_async_jobs_finished_total ALB async jobs seen reaching Succeeded or Failed, each job counted once.
# TYPE alb_async_jobs_finished_total counter
alb_async_jobs_finished_total{account="prod",api_name="CreateListener",operate_type="Create",region="cn-hangzhou",resource_type="listener",status="Failed"} 0.0
alb_async_jobs_finished_total{account="prod",api_name="CreateLoadBalancer",operate_type="Create",region="cn-hangzhou",resource_type="loadbalancer",status="Failed"} 1.0
alb_async_jobs_finished_total{account="prod",api_name="AddServersToServerGroup",operate_type="Update",region="cn-hangzhou",resource_type="servergroup",status="Failed"} 0.0
alb_async_jobs_finished_total{account="prod",api_name="CreateListener",operate_type="Create",region="cn-hangzhou",resource_type="listener",status="Succeeded"} 1.0
alb_async_jobs_finished_total{account="prod",api_name="CreateLoadBalancer",operate_type="Create",region="cn-hangzhou",resource_type="loadbalancer",status="Succeeded"} 0.0
alb_async_jobs_finished_total{account="prod",api_name="AddServersToServerGroup",operate_type="Update",region="cn-hangzhou",resource_type="servergroup",status="Succeeded"} 0.0
# HELP alb_async_jobs_failures_total Failed ALB async jobs, each job counted once.
# TYPE alb_async_jobs_failures_total counter
alb_async_jobs_failures_total{account="prod",api_name="CreateLoadBalancer",error_code="QuotaExceeded.LoadBalancer",region="cn-hangzhou",resource_type="loadbalancer"} 1.0
# HELP alb_async_job_duration_seconds ModifyTime minus CreateTime of finished ALB async jobs, observed once per job.
# TYPE alb_async_job_duration_seconds histogram
alb_async_job_duration_seconds_bucket{account="prod",api_name="CreateListener",le="60.0",region="cn-hangzhou",resource_type="listener",status="Failed"} 0.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="CreateListener",le="+Inf",region="cn-hangzhou",resource_type="listener",status="Failed"} 0.0
alb_async_job_duration_seconds_count{account="prod",api_name="CreateListener",region="cn-hangzhou",resource_type="listener",status="Failed"} 0.0
alb_async_job_duration_seconds_sum{account="prod",api_name="CreateListener",region="cn-hangzhou",resource_type="listener",status="Failed"} 0.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="CreateLoadBalancer",le="60.0",region="cn-hangzhou",resource_type="loadbalancer",status="Failed"} 0.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="CreateLoadBalancer",le="+Inf",region="cn-hangzhou",resource_type="loadbalancer",status="Failed"} 1.0
alb_async_job_duration_seconds_count{account="prod",api_name="CreateLoadBalancer",region="cn-hangzhou",resource_type="loadbalancer",status="Failed"} 1.0
alb_async_job_duration_seconds_sum{account="prod",api_name="CreateLoadBalancer",region="cn-hangzhou",resource_type="loadbalancer",status="Failed"} 70.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="AddServersToServerGroup",le="60.0",region="cn-hangzhou",resource_type="servergroup",status="Failed"} 0.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="AddServersToServerGroup",le="+Inf",region="cn-hangzhou",resource_type="servergroup",status="Failed"} 0.0
alb_async_job_duration_seconds_count{account="prod",api_name="AddServersToServerGroup",region="cn-hangzhou",resource_type="servergroup",status="Failed"} 0.0
alb_async_job_duration_seconds_sum{account="prod",api_name="AddServersToServerGroup",region="cn-hangzhou",resource_type="servergroup",status="Failed"} 0.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="CreateListener",le="60.0",region="cn-hangzhou",resource_type="listener",status="Succeeded"} 1.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="CreateListener",le="+Inf",region="cn-hangzhou",resource_type="listener",status="Succeeded"} 1.0
alb_async_job_duration_seconds_count{account="prod",api_name="CreateListener",region="cn-hangzhou",resource_type="listener",status="Succeeded"} 1.0
alb_async_job_duration_seconds_sum{account="prod",api_name="CreateListener",region="cn-hangzhou",resource_type="listener",status="Succeeded"} 2.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="CreateLoadBalancer",le="60.0",region="cn-hangzhou",resource_type="loadbalancer",status="Succeeded"} 0.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="CreateLoadBalancer",le="+Inf",region="cn-hangzhou",resource_type="loadbalancer",status="Succeeded"} 0.0
alb_async_job_duration_seconds_count{account="prod",api_name="CreateLoadBalancer",region="cn-hangzhou",resource_type="loadbalancer",status="Succeeded"} 0.0
alb_async_job_duration_seconds_sum{account="prod",api_name="CreateLoadBalancer",region="cn-hangzhou",resource_type="loadbalancer",status="Succeeded"} 0.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="AddServersToServerGroup",le="60.0",region="cn-hangzhou",resource_type="servergroup",status="Succeeded"} 0.0
alb_async_job_duration_seconds_bucket{account="prod",api_name="AddServersToServerGroup",le="+Inf",region="cn-hangzhou",resource_type="servergroup",status="Succeeded"} 0.0
alb_async_job_duration_seconds_count{account="prod",api_name="AddServersToServerGroup",region="cn-hangzhou",resource_type="servergroup",status="Succeeded"} 0.0
alb_async_job_duration_seconds_sum{account="prod",api_name="AddServersToServerGroup",region="cn-hangzhou",resource_type="servergroup",status="Succeeded"} 0.0
# HELP alb_async_job_processing_oldest_created_timestamp_seconds CreateTime of the oldest ALB async job still Processing; absent when none.
# TYPE alb_async_job_processing_oldest_created_timestamp_seconds gauge
alb_async_job_processing_oldest_created_timestamp_seconds{account="prod",api_name="AddServersToServerGroup",region="cn-hangzhou",resource_type="servergroup"} 1.70000005e+09
# HELP alb_async_jobs_vanished_total ALB async jobs seen Processing that dropped out of the results unfinished.
# TYPE alb_async_jobs_vanished_total counter
alb_async_jobs_vanished_total{account="prod",api_name="CreateListener",region="cn-hangzhou",resource_type="listener"} 0.0
alb_async_jobs_vanished_total{account="prod",api_name="CreateLoadBalancer",region="cn-hangzhou",resource_type="loadbalancer"} 0.0
alb_async_jobs_vanished_total{account="prod",api_name="AddServersToServerGroup",region="cn-hangzhou",resource_type="servergroup"} 0.0
# HELP alb_async_job_recent_failure_timestamp_seconds Failure time (ModifyTime) of the most recent failed ALB async jobs.
# TYPE alb_async_job_recent_failure_timestamp_seconds gauge
alb_async_job_recent_failure_timestamp_seconds{account="prod",api_name="CreateLoadBalancer",error_code="QuotaExceeded.LoadBalancer",job_id="j2",region="cn-hangzhou",resource_id="alb-1",resource_type="loadbalancer"} 1.70000004e+09
# HELP alb_exporter_up 1 if the last refresh of this account and region succeeded, else 0.
# TYPE alb_exporter_up gauge
alb_exporter_up{account="dev",region="cn-shanghai"} 0.0
alb_exporter_up{account="prod",region="cn-hangzhou"} 1.0
# HELP alb_exporter_last_success_timestamp_seconds Unix time the job data now served was fetched.
# TYPE alb_exporter_last_success_timestamp_seconds gauge
alb_exporter_last_success_timestamp_seconds{account="prod",region="cn-hangzhou"} 1.70000006e+09
# HELP alb_exporter_refresh_duration_seconds Wall time of the last refresh of this account and region.
# TYPE alb_exporter_refresh_duration_seconds gauge
alb_exporter_refresh_duration_seconds{account="prod",region="cn-hangzhou"} 1.5
# HELP alb_exporter_jobs_tracked ALB async jobs held in memory for this account and region.
# TYPE alb_exporter_jobs_tracked gauge
alb_exporter_jobs_tracked{account="dev",region="cn-shanghai"} 0.0
alb_exporter_jobs_tracked{account="prod",region="cn-hangzhou"} 4.0
# HELP alb_exporter_resync_recovered_jobs_total Jobs a full resync found that the incremental listings had missed (the API listed them later than overlap); raise overlap when this moves.
# TYPE alb_exporter_resync_recovered_jobs_total counter
alb_exporter_resync_recovered_jobs_total{account="dev",region="cn-shanghai"} 0.0
alb_exporter_resync_recovered_jobs_total{account="prod",region="cn-hangzhou"} 0.0
"""  # noqa: E501


def test_whole_exposition_of_a_hand_computed_scenario() -> None:
    assert generate_latest(registry_of(*scenario())).decode() == EXPECTED


def test_every_family_is_present_before_any_data() -> None:
    text = generate_latest(registry_of()).decode()
    typed = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert typed == [spec.name for spec in METRICS if spec.name in JOB_COLLECTOR_METRICS]
    assert all(line.startswith("#") for line in text.splitlines())


def test_never_tried_target_is_down_without_timestamps() -> None:
    text = generate_latest(registry_of(FakeView("a", "r"))).decode()
    assert 'alb_exporter_up{account="a",region="r"} 0.0' in text
    assert "alb_exporter_last_success_timestamp_seconds{" not in text
    assert "alb_exporter_refresh_duration_seconds{" not in text


def test_failed_refresh_after_a_success_keeps_the_last_success_time() -> None:
    state = TargetStatus(tried=True, up=False, last_success=1000.0, refresh_duration=0.25)
    text = generate_latest(registry_of(FakeView("a", "r", state=state))).decode()
    assert 'alb_exporter_up{account="a",region="r"} 0.0' in text
    assert 'alb_exporter_last_success_timestamp_seconds{account="a",region="r"} 1000.0' in text
    assert 'alb_exporter_refresh_duration_seconds{account="a",region="r"} 0.25' in text


# --- the metric table -----------------------------------------------------------------

TARGET = ("account", "region")
# Typed in from SPEC.md's metrics table, independently of METRICS.
SPEC_TABLE = {
    "alb_async_jobs": ("gauge", (*TARGET, "status", "resource_type", "api_name", "operate_type")),
    "alb_async_jobs_failed": ("gauge", (*TARGET, "resource_type", "api_name", "error_code")),
    "alb_async_jobs_finished_total": (
        "counter",
        (*TARGET, "status", "resource_type", "api_name", "operate_type"),
    ),
    "alb_async_jobs_failures_total": (
        "counter",
        (*TARGET, "resource_type", "api_name", "error_code"),
    ),
    "alb_async_job_duration_seconds": (
        "histogram",
        (*TARGET, "status", "resource_type", "api_name"),
    ),
    "alb_async_job_processing_oldest_created_timestamp_seconds": (
        "gauge",
        (*TARGET, "resource_type", "api_name"),
    ),
    "alb_async_jobs_vanished_total": ("counter", (*TARGET, "resource_type", "api_name")),
    "alb_async_job_recent_failure_timestamp_seconds": (
        "gauge",
        (*TARGET, "job_id", "resource_id", "resource_type", "api_name", "error_code"),
    ),
    "alb_exporter_up": ("gauge", TARGET),
    "alb_exporter_last_success_timestamp_seconds": ("gauge", TARGET),
    "alb_exporter_refresh_duration_seconds": ("gauge", TARGET),
    "alb_exporter_api_requests_total": ("counter", (*TARGET, "code")),
    "alb_exporter_api_request_duration_seconds": ("histogram", TARGET),
    "alb_exporter_jobs_tracked": ("gauge", TARGET),
    "alb_exporter_resync_recovered_jobs_total": ("counter", TARGET),
    "alb_exporter_config_last_reload_successful": ("gauge", ()),
    "alb_exporter_credential_refreshes_total": ("counter", ("account", "source", "code")),
    "alb_exporter_credentials_expiry_timestamp_seconds": ("gauge", ("account", "source")),
    "alb_exporter_build_info": ("gauge", ("version", "python_version")),
    "alb_exporter_shard_ordinal": ("gauge", ()),
    "alb_exporter_shard_count": ("gauge", ()),
}


def test_metric_table_matches_the_spec() -> None:
    assert {m.name: (m.type, m.labels) for m in METRICS} == SPEC_TABLE
    assert len({m.name for m in METRICS}) == len(METRICS)
    assert all(m.help.strip() and "\n" not in m.help for m in METRICS)


def test_family_names_leave_total_to_prometheus_client() -> None:
    names = {m.name: family_name(m) for m in METRICS}
    assert names["alb_async_jobs_finished_total"] == "alb_async_jobs_finished"
    assert names["alb_async_jobs"] == "alb_async_jobs"


def full_registry() -> CollectorRegistry:
    """Every metric of METRICS with at least one sample."""
    dev, prod = scenario()
    prod.store.update([], ["j3"], T0 + 120)  # j3 vanishes; nothing left Processing
    j2 = mkjob("j2", FAILED, "loadbalancer", "CreateLoadBalancer", "Create", "alb-1", T0, T0 + 9)
    j5 = mkjob("j5", PROCESSING, "acl", "CreateAcl", "Create", "acl-1", T0, T0)
    prod.store.update([j2, j5], (), T0 + 130)
    registry = registry_of(dev, prod)
    metrics = SelfMetrics(registry, version="1.2.3", python_version="3.11.7")
    metrics.request_observer("prod", "cn-hangzhou")("Throttling.User", 0.2)
    metrics.credential_refresh("prod", "sts", "OK")
    metrics.set_credentials_expiry("prod", "sts", T0 + 3600)
    return registry


def test_every_metric_is_exposed_with_exactly_its_labels() -> None:
    text = generate_latest(full_registry()).decode()
    families = {
        f.name: f
        for f in text_string_to_metric_families(text)
        if not f.name.endswith("_created")  # prometheus_client's own series
    }
    assert set(families) == {family_name(m) for m in METRICS}
    for metric in METRICS:
        family = families[family_name(metric)]
        assert family.type == metric.type, metric.name
        assert family.samples, f"{metric.name} has no sample in this scenario"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(metric.labels), sample
    for metric in METRICS:
        assert f"# TYPE {metric.name} {metric.type}\n" in text


def test_collector_and_self_metrics_split_the_table() -> None:
    registry = CollectorRegistry()
    collector = published(())
    registry.register(collector)  # describe() lets the registry check for clashes
    SelfMetrics(registry)
    described = [f.name for f in collector.describe()]
    assert described == [family_name(m) for m in METRICS if m.name in JOB_COLLECTOR_METRICS]
    assert all(not f.samples for f in collector.describe())
    with pytest.raises(ValueError):
        SelfMetrics(registry)  # the same names twice must be refused


@pytest.mark.parametrize(("shard", "want"), [(None, (0.0, 1.0)), ((2, 3), (2.0, 3.0))])
def test_shard_gauges_say_which_shard_of_how_many(
    shard: tuple[int, int] | None, want: tuple[float, float]
) -> None:
    registry = CollectorRegistry()
    if shard is None:
        SelfMetrics(registry)  # unsharded: still exposed, as shard 0 of 1
    else:
        SelfMetrics(registry, shard=shard)
    text = generate_latest(registry).decode()
    assert f"\nalb_exporter_shard_ordinal {want[0]}\n" in text
    assert f"\nalb_exporter_shard_count {want[1]}\n" in text


def test_openmetrics_rendering() -> None:
    text = generate_openmetrics(full_registry()).decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE alb_async_jobs_finished counter\n" in text
    assert "alb_async_jobs_finished_total{" in text
    names = {f.name for f in parse_openmetrics(text)}
    assert "alb_async_job_duration_seconds" in names
    assert "alb_async_jobs_vanished" in names


# --- robustness -----------------------------------------------------------------------

HOSTILE = [
    'say "hi"',
    "back\\slash\\",
    "new\nline\r\n",
    "ünïcødé ☃ 𝄞 中文",
    "",
    "\\n not a newline",
    "}{,=\t#",
    "lone \ud800 surrogate",
    "x" * 10_000,
    "é" * 300,
]


def test_cap_label() -> None:
    assert cap_label("short") == "short"
    exact = "a" * MAX_LABEL_VALUE_LENGTH
    assert cap_label(exact) == exact
    capped = cap_label(exact + "b")
    assert len(capped) == MAX_LABEL_VALUE_LENGTH
    assert capped == "a" * (MAX_LABEL_VALUE_LENGTH - 1) + "…"
    assert cap_label(capped) == capped
    assert cap_label("a\ud800b") == "a\ufffdb"
    assert cap_label("\U0001d11e") == "\U0001d11e"


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_label_values_round_trip(value: str) -> None:
    view = FakeView("acct", "region")
    hostile = mkjob(value, FAILED, value, value, value, value, T0, T0 + 1, code=value)
    view.store.update([hostile], (), T0 + 10)
    text = generate_latest(registry_of(view)).decode()
    assert len(text) < 20_000  # 9 series with the value capped, not 10 kB each
    expected = cap_label(value)
    assert len(expected) <= MAX_LABEL_VALUE_LENGTH
    seen = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for name, got in sample.labels.items():
                if name not in ("account", "region", "le", "status"):
                    assert got == expected, (family.name, name)
                    seen += 1
    assert seen > 10


def test_label_sets_equal_after_capping_are_merged_not_duplicated() -> None:
    view = FakeView("acct", "region")
    long_a, long_b = "a" * 300 + "1", "a" * 300 + "2"
    view.store.update(
        [
            mkjob("j1", FAILED, "listener", long_a, "Create", "r", T0, T0 + 1, "E"),
            mkjob("j2", FAILED, "listener", long_b, "Create", "r", T0, T0 + 1, "E"),
        ],
        (),
        T0 + 10,
    )
    text = generate_latest(registry_of(view)).decode()
    jobs_lines = [line for line in text.splitlines() if line.startswith("alb_async_jobs{")]
    assert len(jobs_lines) == 1
    assert jobs_lines[0].endswith(" 2.0")
    sample_keys = [
        (s.name, tuple(sorted(s.labels.items())))
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]
    assert len(sample_keys) == len(set(sample_keys))


def test_views_of_the_same_target_are_merged_into_one_series() -> None:
    # Config validation forbids this; should it slip through, the exposition stays valid.
    up = FakeView("a", "r", state=TargetStatus(tried=True, up=True, last_success=5.0))
    down = FakeView("a", "r", state=TargetStatus(tried=True, up=False, last_success=3.0))
    text = generate_latest(registry_of(up, down)).decode()
    assert 'alb_exporter_up{account="a",region="r"} 0.0' in text
    assert 'alb_exporter_last_success_timestamp_seconds{account="a",region="r"} 3.0' in text
    assert text.count("alb_exporter_up{") == 1


def test_a_broken_view_does_not_break_the_others(caplog: pytest.LogCaptureFixture) -> None:
    dev, prod = scenario()
    with caplog.at_level(logging.ERROR, logger="exporter.metrics.collector"):
        text = generate_latest(registry_of(dev, BrokenView(), NamelessView(), prod)).decode()
    assert text == EXPECTED
    assert "store exploded" in caplog.text


# --- self-metrics ---------------------------------------------------------------------


def test_self_metrics() -> None:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry, version="1.2.3", python_version="3.11.7")
    value = registry.get_sample_value
    assert value("alb_exporter_build_info", {"version": "1.2.3", "python_version": "3.11.7"}) == 1
    assert value("alb_exporter_config_last_reload_successful") == 1

    metrics.register_target("prod", "cn-hangzhou")
    target = {"account": "prod", "region": "cn-hangzhou"}
    assert value("alb_exporter_api_requests_total", {**target, "code": "OK"}) == 0
    assert value("alb_exporter_api_request_duration_seconds_count", target) == 0

    observe = metrics.request_observer("prod", "cn-hangzhou")
    observe("OK", 0.03)
    observe("OK", 0.2)
    observe("Throttling.User", 40.0)
    assert value("alb_exporter_api_requests_total", {**target, "code": "OK"}) == 2
    assert value("alb_exporter_api_requests_total", {**target, "code": "Throttling.User"}) == 1
    assert value("alb_exporter_api_request_duration_seconds_count", target) == 3
    assert value("alb_exporter_api_request_duration_seconds_bucket", {**target, "le": "0.05"}) == 1
    assert value("alb_exporter_api_request_duration_seconds_bucket", {**target, "le": "30.0"}) == 2

    metrics.credential_refresh("prod", "sts", "OK")
    metrics.credential_refresh("prod", "sts", "InvalidAccessKeyId.NotFound")
    cred = {"account": "prod", "source": "sts"}
    assert value("alb_exporter_credential_refreshes_total", {**cred, "code": "OK"}) == 1
    metrics.set_credentials_expiry("prod", "sts", 1234.0)
    assert value("alb_exporter_credentials_expiry_timestamp_seconds", cred) == 1234.0
    metrics.set_credentials_expiry("prod", "sts", None)
    assert value("alb_exporter_credentials_expiry_timestamp_seconds", cred) is None
    metrics.set_credentials_expiry("prod", "static", None)  # never set: nothing to remove

    metrics.set_reload_ok(False)
    assert value("alb_exporter_config_last_reload_successful") == 0
    metrics.set_reload_ok(True)
    assert value("alb_exporter_config_last_reload_successful") == 1


def test_forget_target_and_account_remove_only_their_series() -> None:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    metrics.request_observer("prod", "a")("Timeout", 10.0)
    metrics.register_target("prod", "b")
    metrics.credential_refresh("prod", "sts", "OK")
    metrics.set_credentials_expiry("prod", "sts", 99.0)
    metrics.credential_refresh("other", "sts", "OK")

    metrics.forget_target("prod", "a")
    value = registry.get_sample_value
    assert (
        value("alb_exporter_api_requests_total", {"account": "prod", "region": "a", "code": "OK"})
        is None
    )
    assert (
        value(
            "alb_exporter_api_requests_total", {"account": "prod", "region": "a", "code": "Timeout"}
        )
        is None
    )
    assert (
        value("alb_exporter_api_request_duration_seconds_count", {"account": "prod", "region": "a"})
        is None
    )
    assert (
        value("alb_exporter_api_requests_total", {"account": "prod", "region": "b", "code": "OK"})
        == 0
    )
    metrics.forget_target("never", "seen")

    metrics.forget_account("prod")
    assert (
        value(
            "alb_exporter_credential_refreshes_total",
            {"account": "prod", "source": "sts", "code": "OK"},
        )
        is None
    )
    assert (
        value(
            "alb_exporter_credentials_expiry_timestamp_seconds",
            {"account": "prod", "source": "sts"},
        )
        is None
    )
    assert (
        value(
            "alb_exporter_credential_refreshes_total",
            {"account": "other", "source": "sts", "code": "OK"},
        )
        == 1
    )


def test_hostile_api_error_codes_are_capped() -> None:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    metrics.request_observer("prod", "a")("E" * 5000, 0.1)
    code = cap_label("E" * 5000)
    assert (
        registry.get_sample_value(
            "alb_exporter_api_requests_total", {"account": "prod", "region": "a", "code": code}
        )
        == 1
    )
