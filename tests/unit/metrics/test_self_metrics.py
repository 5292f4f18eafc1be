"""The self-metrics' kept text (exporter.metrics.self_metrics.Instrument): after every
change, what the exposition serves is what prometheus_client renders for a fresh set of
the same metrics with the same changes, in every format a scraper asks for.

A kept text that a change did not replace would be served stale and fail here.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.metrics.outputs import OutputMetrics
from exporter.metrics.self_metrics import SelfMetrics
from exporter.web.exposition import fast_encoder
from tests.unit.metrics.test_text import ACCEPTS

T0 = 1_700_000_000.0

Change = Callable[[SelfMetrics, OutputMetrics], None]

# Every mutator of the self-metrics, with label values that need escaping.
CHANGES: list[tuple[str, Change]] = [
    ("credential refresh", lambda m, _: m.credential_refresh("prod", "sts", "OK")),
    ("hostile code", lambda m, _: m.credential_refresh("prod", "sts", 'Bad"Code\\\n')),
    ("expiry set", lambda m, _: m.set_credentials_expiry("prod", "sts", T0 + 3600)),
    ("expiry moved", lambda m, _: m.set_credentials_expiry("prod", "sts", T0 + 7200)),
    ("expiry removed", lambda m, _: m.set_credentials_expiry("prod", "sts", None)),
    ("reload failed", lambda m, _: m.set_reload_ok(False)),
    ("reload succeeded", lambda m, _: m.set_reload_ok(True)),
    ("discovery targets", lambda m, _: m.set_discovery_targets(2, 5)),
    ("discovery succeeded", lambda m, _: m.succeeded("resource_directory", "", T0)),
    ("discovery failed", lambda m, _: m.failed("regions", "shop", "AssumeRoleFailed")),
    ("discovery failed again", lambda m, _: m.failed("regions", "shop", "AssumeRoleFailed")),
    ("state error", lambda _, o: o.state_error("save")),
    ("events queued", lambda _, o: o.events(7, 0)),
    ("events dropped", lambda _, o: o.events(0, 3)),
    ("account forgotten", lambda m, _: m.forget_account("prod")),
]


def _without_created(text: bytes) -> list[bytes]:
    # prometheus_client's `_created` series hold each instance's creation time.
    return [line for line in text.splitlines() if b"_created" not in line]


def _made(changes: list[tuple[str, Change]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    metrics = SelfMetrics(registry, version="1.2.3", python_version="3.11.7")
    outputs = OutputMetrics(metrics)
    for _, change in changes:
        change(metrics, outputs)
    return registry


def test_kept_text_is_a_fresh_render_after_every_change() -> None:
    kept = CollectorRegistry(auto_describe=True)
    metrics = SelfMetrics(kept, version="1.2.3", python_version="3.11.7")
    outputs = OutputMetrics(metrics)
    before: dict[str, bytes] = {}
    for done, (name, change) in enumerate(CHANGES, start=1):
        change(metrics, outputs)
        fresh = _made(CHANGES[:done])
        for accept in ACCEPTS:
            encoder, content_type = choose_encoder(accept)
            served = fast_encoder(content_type, encoder)(kept)
            assert _without_created(served) == _without_created(encoder(fresh)), (name, accept)
            assert served != before.get(accept), (name, accept)
            before[accept] = served
