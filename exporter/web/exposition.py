"""The exposition encoder: families that write their own text (`PreRendered`) are copied
as they are, every other family goes through prometheus_client's encoder.

prometheus_client's encoders format every sample of a registry on each call (see
`exporter.metrics.text` for what that costs at scale). A family may instead offer its
text; it must be exactly what prometheus_client would write, which its producer tests.
Formats that would write our names otherwise than as they are (the `dots` escaping, and
OpenMetrics' `values`) are left wholly to prometheus_client, which then reads the
families' samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

Encoder = Callable[[Collector], bytes]

_EOF = b"# EOF\n"


class PreRendered(Protocol):
    def exposition_parts(self, openmetrics: bool) -> list[bytes]:
        """HELP, TYPE and sample lines, UTF-8, byte for byte what prometheus_client
        writes once joined."""
        ...


def _format(content_type: str) -> bool | None:
    """True for OpenMetrics, False for the text format, None when prometheus_client would
    write our (legacy) names otherwise than as they are: the text format escapes them
    only with `dots`; OpenMetrics with anything but `underscores` and `allow-utf-8` (its
    `values` prefixes every sample name with `U__`)."""
    params = {
        name.strip(): value.strip()
        for name, _, value in (part.partition("=") for part in content_type.split(";")[1:])
    }
    escaping = params.get("escaping", "underscores")
    if content_type.startswith("application/openmetrics-text"):
        return True if escaping in ("underscores", "allow-utf-8") else None
    return False if escaping in ("underscores", "allow-utf-8", "values") else None


class _Some(Collector):
    """A registry of a run of families, for prometheus_client's encoder."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def fast_encoder(content_type: str, fallback: Encoder) -> Encoder:
    """The encoder for `content_type` (as prometheus_client's `choose_encoder` chose it,
    with `fallback` its encoder): the same bytes, pre-rendered families copied."""
    openmetrics = _format(content_type)
    if openmetrics is None:
        return fallback

    def encode(registry: Collector) -> bytes:
        # Pieces joined once at the end: at 1,000 targets the exposition is ~36 MB, and
        # every whole copy of it on the way would add that to the peak memory.
        out: list[bytes] = []
        run: list[Metric] = []  # families for prometheus_client, encoded in one call

        def encode_run() -> None:
            if run:
                body = fallback(_Some(run))
                out.append(body.removesuffix(_EOF) if openmetrics else body)
                run.clear()

        for metric in registry.collect():
            # Not isinstance() of a runtime-checkable Protocol: that inspects the class on
            # every call, a third of an uncached scrape's encoding at 1 target.
            parts = getattr(metric, "exposition_parts", None)
            if parts is None:
                run.append(metric)
                continue
            encode_run()
            out.extend(parts(openmetrics))
        encode_run()
        if openmetrics:
            out.append(_EOF)
        return b"".join(out)

    return encode
