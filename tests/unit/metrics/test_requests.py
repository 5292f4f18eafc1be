"""The per-target request metrics (exporter.metrics.requests) expose what prometheus_client's
own Counter and Histogram exposed before, byte for byte, in both formats, but for the
order of the series (sorted now, see `reference`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from exporter.metrics.requests import RequestMetrics
from exporter.metrics.table import API_DURATION_BUCKETS, spec
from exporter.web.exposition import fast_encoder

TARGETS = [("prod", "cn-hangzhou"), ("prod", "cn-shanghai"), ('o"dd\\', "eu\ncentral")]
CODES = ["OK", "Throttling.User", "Timeout", "MalformedResponse"]


@pytest.fixture(autouse=True)
def no_created_series() -> Iterator[None]:
    # As the exporter runs (cli.main); prometheus_client's default adds `_created` series.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    yield
    enable_created_metrics()  # type: ignore[no-untyped-call]


def reference(observed: list[tuple[int, int, float]], registered: list[int]) -> CollectorRegistry:
    """The same observations through prometheus_client's own metrics, as before."""
    registry = CollectorRegistry()
    requests = spec("alb_exporter_api_requests_total")
    duration = spec("alb_exporter_api_request_duration_seconds")
    counter = Counter(
        "alb_exporter_api_requests", requests.help, requests.labels, registry=registry
    )
    histogram = Histogram(
        duration.name,
        duration.help,
        duration.labels,
        registry=registry,
        buckets=API_DURATION_BUCKETS,
    )
    by_target: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for target, code_index, seconds in observed:
        by_target[target].append((code_index, seconds))
    # Series created in the order ours come out: targets sorted, their codes sorted. This
    # is the one difference on purpose: prometheus_client wrote them in the order they
    # were first created, which depended on which request came first (Prometheus reads
    # the series, not their order).
    for target in sorted(set(registered) | set(by_target), key=lambda i: TARGETS[i]):
        account, region = TARGETS[target]
        codes = {"OK"} | {CODES[code] for code, _ in by_target[target]}
        for name in sorted(codes):
            counter.labels(account, region, name).inc(
                sum(1 for c, _ in by_target[target] if CODES[c] == name)
            )
        for _, seconds in by_target[target]:
            histogram.labels(account, region).observe(seconds)
        histogram.labels(account, region)
    return registry


@settings(max_examples=60, deadline=None)
@given(
    registered=st.lists(st.integers(0, len(TARGETS) - 1), max_size=3),
    observed=st.lists(
        st.tuples(
            st.integers(0, len(TARGETS) - 1),
            st.integers(0, len(CODES) - 1),
            st.sampled_from([0.0, 0.01, 0.0123, 1.0, 29.9, 30.0, 31.0, 1e-9]),
        ),
        max_size=12,
    ),
    split=st.integers(0, 12),
)
def test_request_metrics_are_what_prometheus_client_wrote(
    registered: list[int], observed: list[tuple[int, int, float]], split: int
) -> None:
    ours = RequestMetrics()
    registry = CollectorRegistry()
    registry.register(ours)
    for target in registered:
        ours.register(*TARGETS[target])
    text, content_type = choose_encoder("")
    for n, (target, code, seconds) in enumerate(observed):
        if n == split:  # a render in between: kept lines must be replaced on change
            fast_encoder(content_type, text)(registry)
        ours.observe(*TARGETS[target], CODES[code], seconds)
    expected = reference(observed, registered)
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        encoder, content_type = choose_encoder(accept)
        assert fast_encoder(content_type, encoder)(registry) == encoder(expected)
        assert encoder(registry) == encoder(expected)  # the samples, for other encoders


def test_a_forgotten_target_leaves_the_exposition() -> None:
    ours = RequestMetrics()
    registry = CollectorRegistry()
    registry.register(ours)
    ours.observe("prod", "cn-hangzhou", "OK", 0.02)
    ours.register("prod", "cn-shanghai")
    ours.forget("prod", "cn-hangzhou")
    encoder, content_type = choose_encoder("")
    body = fast_encoder(content_type, encoder)(registry)
    assert b"cn-hangzhou" not in body
    assert (
        b'alb_exporter_api_requests_total{account="prod",code="OK",region="cn-shanghai"} 0.0'
        in body
    )
