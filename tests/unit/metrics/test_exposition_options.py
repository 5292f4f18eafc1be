"""The `metrics` block in the exposition: histogram labels, disabled families, and the
config's lists of names held equal to the metric table."""

from __future__ import annotations

import functools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import config
from exporter.jobs.snapshot import Exemplar, HistogramSnapshot, newest
from exporter.jobs.store import JobStore
from exporter.jobs.target import TargetStatus
from exporter.metrics.samples import DURATION, ExpositionOptions, merged
from exporter.metrics.table import JOB_COLLECTOR_METRICS, spec
from exporter.wire import FAILED, PROCESSING, SUCCEEDED
from tests.unit.metrics.fakes import T0, FakeView, mkjob, published

LSN = ("listener", "CreateListener", "Create")
RULE = ("rule", "CreateRule", "Create")


def view() -> FakeView:
    """Four finished jobs counted: CreateListener 2 s and 30 s (Succeeded), 90 s (Failed);
    CreateRule 4 s (Succeeded)."""
    prod = FakeView("prod", "cn-hangzhou", JobStore(3600, 10, duration_buckets=(5.0, 60.0)))
    running = [
        mkjob("a", PROCESSING, *LSN, "lsn-1", T0 - 100, T0 - 100),
        mkjob("b", PROCESSING, *LSN, "lsn-2", T0 - 100, T0 - 100),
        mkjob("c", PROCESSING, *LSN, "lsn-3", T0 - 100, T0 - 100),
        mkjob("d", PROCESSING, *RULE, "rule-1", T0 - 100, T0 - 100),
    ]
    prod.store.update(running, (), T0)
    finished = [
        mkjob("a", SUCCEEDED, *LSN, "lsn-1", T0 - 100, T0 - 98),
        mkjob("b", SUCCEEDED, *LSN, "lsn-2", T0 - 100, T0 - 70),
        mkjob("c", FAILED, *LSN, "lsn-3", T0 - 100, T0 - 10, "Conflict.Lock"),
        mkjob("d", SUCCEEDED, *RULE, "rule-1", T0 - 100, T0 - 96),
    ]
    prod.store.update(finished, (), T0 + 30)
    prod.state = TargetStatus(tried=True, up=True, last_success=T0 + 30, refresh_duration=1)
    return prod


Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def exposition(options: ExpositionOptions | None, *views: FakeView) -> Samples:
    """Sample name -> {label items: value} of one scrape, as a scraper parses it."""
    registry = CollectorRegistry()
    registry.register(published(views, options))
    text = generate_latest(registry).decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return out


def labels(**items: str) -> frozenset[tuple[str, str]]:
    return frozenset({"account": "prod", "region": "cn-hangzhou", **items}.items())


def test_job_families_and_duration_labels_of_the_config_are_the_tables() -> None:
    job_families = tuple(n for n in JOB_COLLECTOR_METRICS if n.startswith("alb_async_"))
    assert job_families == config.JOB_FAMILIES
    assert spec(DURATION).labels == ("account", "region", *config.DURATION_LABELS)
    assert set(config.DEFAULT_DURATION_LABELS) <= set(config.DURATION_LABELS)


def test_the_full_label_set_is_what_the_store_keeps() -> None:
    samples = exposition(None, view())
    counts = samples["alb_async_job_duration_seconds_count"]
    # Both statuses of every (resource_type, api_name) seen: zero where nothing finished.
    assert counts == {
        labels(status=SUCCEEDED, resource_type="listener", api_name="CreateListener"): 2,
        labels(status=FAILED, resource_type="listener", api_name="CreateListener"): 1,
        labels(status=SUCCEEDED, resource_type="rule", api_name="CreateRule"): 1,
        labels(status=FAILED, resource_type="rule", api_name="CreateRule"): 0,
    }


def test_label_sets_that_differ_only_in_dropped_labels_are_summed() -> None:
    samples = exposition(ExpositionOptions(("status",)), view())
    assert samples["alb_async_job_duration_seconds_count"] == {
        labels(status=SUCCEEDED): 3,
        labels(status=FAILED): 1,
    }
    assert samples["alb_async_job_duration_seconds_sum"] == {
        labels(status=SUCCEEDED): 2 + 30 + 4,
        labels(status=FAILED): 90,
    }
    assert samples["alb_async_job_duration_seconds_bucket"] == {
        labels(status=SUCCEEDED, le="5.0"): 2,
        labels(status=SUCCEEDED, le="60.0"): 3,
        labels(status=SUCCEEDED, le="+Inf"): 3,
        labels(status=FAILED, le="5.0"): 0,
        labels(status=FAILED, le="60.0"): 0,
        labels(status=FAILED, le="+Inf"): 1,
    }
    # Only the histogram is projected.
    assert len(samples["alb_async_jobs_finished_total"]) == 4


def test_no_duration_labels_leave_one_histogram_per_target() -> None:
    samples = exposition(ExpositionOptions(()), view(), FakeView("dev", "cn-shanghai"))
    assert samples["alb_async_job_duration_seconds_count"] == {labels(): 4}


def test_the_given_label_order_does_not_matter() -> None:
    a = exposition(ExpositionOptions(("api_name", "status")), view())
    b = exposition(ExpositionOptions(("status", "api_name")), view())
    assert a == b
    assert labels(status=FAILED, api_name="CreateRule") in a[DURATION + "_count"]


def test_disabled_families_are_left_out_and_the_rest_stay() -> None:
    disabled = frozenset({"alb_async_jobs_failed", DURATION})
    samples = exposition(ExpositionOptions(disabled=disabled), view())
    names = {name.removesuffix("_total") for name in samples}
    assert not any(name.startswith(DURATION) for name in samples)
    assert "alb_async_jobs_failed" not in names
    assert {"alb_async_jobs", "alb_async_jobs_finished", "alb_exporter_up"} <= names


def test_configure_applies_from_the_next_scrape() -> None:
    prod = view()
    collector = published([prod])
    registry = CollectorRegistry()
    registry.register(collector)
    count = DURATION + "_count"
    full = {"account": "prod", "region": "cn-hangzhou", "status": SUCCEEDED}
    assert registry.get_sample_value(count, full) is None  # needs api_name, resource_type
    collector.configure(ExpositionOptions(("status",)))
    assert registry.get_sample_value(count, full) == 3
    collector.configure(ExpositionOptions(("status",), frozenset({DURATION})))
    assert registry.get_sample_value(count, full) is None


def test_unknown_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="operate_type"):
        ExpositionOptions(("status", "operate_type"))


def _pairwise(a: HistogramSnapshot, b: HistogramSnapshot) -> HistogramSnapshot:
    """What summing two label sets means (the merge before it was done in one pass):
    bucket counts, sums and counts added, the newer exemplar per bucket; a histogram
    with other bounds left out."""
    if [bound for bound, _ in a.buckets] != [bound for bound, _ in b.buckets]:
        return a
    buckets = tuple((bound, x + y) for (bound, x), (_, y) in zip(a.buckets, b.buckets, strict=True))
    exemplars = a.exemplars or b.exemplars
    if a.exemplars and b.exemplars:
        exemplars = tuple(
            y if x is None else x if y is None else newest(x, y)
            for x, y in zip(a.exemplars, b.exemplars, strict=True)
        )
    return HistogramSnapshot(buckets, a.sum + b.sum, a.count + b.count, exemplars)


exemplars = st.builds(
    Exemplar,
    job_id=st.sampled_from(["j1", "j2", "j3"]),
    value=st.floats(0, 100),
    timestamp=st.sampled_from([T0, T0 + 1.5]),  # ties, broken by the id
)


@st.composite
def histograms(draw: st.DrawFn) -> HistogramSnapshot:
    bounds = draw(st.sampled_from([(5.0, 60.0, math.inf), (1.0, math.inf)]))
    counts = sorted(draw(st.lists(st.integers(0, 50), min_size=len(bounds), max_size=len(bounds))))
    held = draw(st.booleans())
    return HistogramSnapshot(
        tuple(zip(bounds, counts, strict=True)),
        draw(st.floats(0, 1e6)),
        counts[-1],
        tuple(draw(st.one_of(st.none(), exemplars)) for _ in bounds) if held else (),
    )


@given(st.lists(histograms(), min_size=1, max_size=6))
def test_summed_label_sets_are_the_pairwise_sum_of_their_histograms(
    hists: list[HistogramSnapshot],
) -> None:
    assert merged(hists) == functools.reduce(_pairwise, hists)
