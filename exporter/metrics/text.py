"""The job families' exposition text, written directly instead of through prometheus_client.

prometheus_client turns every sample into a `Sample` with a label dict, then formats it:
26 us per series or more, seconds per render at 1,000 targets. Here a target's sample
lines are written straight from its snapshot (about 7 us per series) when the target is
published and kept until it is published again (`exporter.metrics.exposition`), so a
scrape only joins lines already written.

The text is byte for byte what prometheus_client writes for the same families, in its
Prometheus text format and in OpenMetrics (the sample lines are the same in both but for
the exemplars, which only OpenMetrics carries: `SampleLines`; the HELP and TYPE lines
differ). `tests/unit/metrics/test_text.py` holds the two equal
on generated snapshots, hostile label values included. A format that would write the
names otherwise (see `exporter.web.exposition`) is rendered by prometheus_client from the
families' samples, which `RenderedFamily` builds on demand.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString as _untyped_float_to_go_string

from exporter.jobs.snapshot import Exemplar, HistogramSnapshot
from exporter.metrics.table import MetricSpec, family_name

_float_to_go_string: Callable[[float], str] = _untyped_float_to_go_string
# The OpenMetrics module is untyped upstream.
_generate_openmetrics: Callable[[Metric], bytes] = openmetrics_exposition.generate_latest

K = TypeVar("K")
V = TypeVar("V")


def go_float(value: float) -> str:
    """A sample value as prometheus_client writes it (Go's formatting of a float64).

    Counts are ints, most of the values: written as `n.0`, which is `repr(float(n))`
    below 1e16, while prometheus_client switches to Go's exponent form (`1e+06`) for
    positive values of seven digits or more before the point."""
    if type(value) is int and -(10**15) < value < 10**6:
        return f"{value}.0"
    return _float_to_go_string(value)


class RenderMemo(Generic[K, V]):
    """What one render computed per key, kept for the next render only.

    `start()` begins a render; what the render before did not ask for again is dropped
    then, so the memo never outgrows the keys of the last two renders (label sets come
    and go: recent failures bring new job ids all the time). One render at a time.
    """

    def __init__(self, make: Callable[[K], V]) -> None:
        self._make = make
        self._now: dict[K, V] = {}
        self._before: dict[K, V] = {}

    def start(self) -> None:
        self._before, self._now = self._now, {}

    def __call__(self, key: K) -> V:
        held = self._now.get(key)
        if held is None:
            held = self._before.get(key)
            if held is None:
                held = self._make(key)
            self._now[key] = held
        return held

    def __len__(self) -> int:
        return len(self._now.keys() | self._before.keys())


def escape_value(value: str) -> str:
    """A label value as both formats quote it (prometheus_client's ALLOWUTF8 escaping)."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def header(metric: MetricSpec, openmetrics: bool) -> str:
    """The HELP and TYPE lines of a family. The text format names a counter with its
    `_total` and escapes backslash and newline in HELP; OpenMetrics names the family
    without it and escapes the double quote too."""
    if openmetrics:
        name = family_name(metric)
        help_text = escape_value(metric.help)
    else:
        name = metric.name
        help_text = metric.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {help_text}\n# TYPE {name} {metric.type}\n"


class LabelWriter:
    """The `{...}` of one family's samples: label names sorted, as prometheus_client does.

    Label strings are kept from one render to the next (`RenderMemo`): label sets recur,
    and their escaping is most of a sample's cost. `start()` begins a render.
    """

    def __init__(self, labels: Sequence[str]) -> None:
        # Positions of the label values in sorted label-name order.
        self._order = sorted(range(len(labels)), key=lambda i: labels[i])
        self._names = [labels[i] for i in self._order]
        # Histogram buckets add `le`: where it goes among the sorted names.
        self._le_at = sum(1 for name in self._names if name < "le")
        self._parts = RenderMemo(self._split)
        # A label set's bucket label strings, for the bounds they were written for.
        self._buckets: RenderMemo[tuple[tuple[str, ...], tuple[float, ...]], list[str]] = (
            RenderMemo(self._bucket_list)
        )

    def start(self) -> None:
        self._parts.start()
        self._buckets.start()

    def __len__(self) -> int:
        """Label sets whose strings are held."""
        return len(self._parts)

    def _split(self, values: tuple[str, ...]) -> tuple[str, str]:
        # The label string split where `le` goes, so a bucket line joins three pieces.
        pairs = [
            f'{name}="{escape_value(values[i])}"'
            for name, i in zip(self._names, self._order, strict=True)
        ]
        return ",".join(pairs[: self._le_at]), ",".join(pairs[self._le_at :])

    def labels(self, values: tuple[str, ...]) -> str:
        before, after = self._parts(values)
        if before and after:
            return f"{{{before},{after}}}"
        return f"{{{before or after}}}" if before or after else ""

    def bucket_labels(self, values: tuple[str, ...], bounds: tuple[float, ...]) -> list[str]:
        """The label strings of a histogram's `_bucket` lines, one per bound."""
        return self._buckets((values, bounds))

    def _bucket_list(self, key: tuple[tuple[str, ...], tuple[float, ...]]) -> list[str]:
        values, bounds = key
        before, after = self._parts(values)
        out = []
        for bound in bounds:
            inner = ",".join(part for part in (before, f'le="{go_float(bound)}"', after) if part)
            out.append(f"{{{inner}}}")
        return out


# SPEC "Exemplars": the one label of an exemplar, and OpenMetrics' limit on the length of
# an exemplar's label names and values together, in code points.
EXEMPLAR_LABEL = "job_id"
MAX_EXEMPLAR_LABELS_LENGTH = 128


def carried(exemplar: Exemplar) -> bool:
    """Whether the exposition carries `exemplar`: only an id Prometheus stores as it is,
    else none (an id cut or altered would name another job).

    Over the limit Prometheus refuses it; an id UTF-8 cannot encode (a lone surrogate from
    a hostile API) would fail the whole answer; and Prometheus (2.42, the e2e test's)
    keeps an exemplar's label value as written, escapes and all, so an id with a
    backslash, double quote or newline would be stored altered. ALB's ids are UUIDs."""
    job_id = exemplar.job_id
    if len(EXEMPLAR_LABEL) + len(job_id) > MAX_EXEMPLAR_LABELS_LENGTH:
        return False
    if "\\" in job_id or '"' in job_id or "\n" in job_id:
        return False
    if not job_id.isascii():
        try:
            job_id.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def exemplar_text(exemplar: Exemplar | None) -> str:
    """What OpenMetrics appends to a sample line for `exemplar`, as prometheus_client
    writes it (its value Go-formatted, its timestamp as Python prints a float); "" for
    none or one not `carried`."""
    if exemplar is None or not carried(exemplar):
        return ""
    labels = f'{EXEMPLAR_LABEL}="{escape_value(exemplar.job_id)}"'
    return f" # {{{labels}}} {go_float(exemplar.value)} {float(exemplar.timestamp)}"


@dataclass(frozen=True)
class SampleLines:
    """Sample lines, UTF-8: `text` as the text format has them, and where OpenMetrics
    inserts each exemplar into it (the byte offset of a line's end, the exemplar text).

    The OpenMetrics lines are joined on first use and kept with these lines (which are
    kept until their data changes): splicing ~30k exemplars into every render cost 30 ms
    a render at 200 targets, and the text format's lines are not copied unless asked."""

    text: bytes
    exemplars: tuple[tuple[int, bytes], ...] = ()

    def parts(self, openmetrics: bool) -> list[bytes]:
        if not openmetrics or not self.exemplars:
            return [self.text]
        return [self.openmetrics]

    @functools.cached_property
    def openmetrics(self) -> bytes:
        text = memoryview(self.text)
        out: list[bytes | memoryview] = []
        start = 0
        for at, exemplar in self.exemplars:
            out += (text[start:at], exemplar)
            start = at
        out.append(text[start:])
        return b"".join(out)


class _Lines:
    """Builds `SampleLines` line by line: the text joined and encoded once at the end,
    where each exemplar goes kept as a character offset (a byte offset in ASCII text,
    which ALB's names and ids are; counted again in bytes otherwise)."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0  # characters so far
        self._exemplars: list[tuple[int, str]] = []

    def add(self, line: str, exemplar: str = "") -> None:
        """`line` without its newline, and what OpenMetrics appends to it."""
        self._parts += (line, "\n")
        self._size += len(line)
        if exemplar:
            self._exemplars.append((self._size, exemplar))
        self._size += 1

    def finish(self) -> SampleLines:
        text = "".join(self._parts)
        data = text.encode("utf-8")
        if not self._exemplars:
            return SampleLines(data)
        if len(data) == len(text):  # ASCII: a character offset is a byte offset
            return SampleLines(data, tuple((at, e.encode("utf-8")) for at, e in self._exemplars))
        marks = []
        done, size = 0, 0  # characters and bytes up to the last mark
        for at, exemplar in self._exemplars:
            size += len(text[done:at].encode("utf-8"))
            done = at
            marks.append((size, exemplar.encode("utf-8")))
        return SampleLines(data, tuple(marks))


def value_lines(
    metric: MetricSpec,
    writer: LabelWriter,
    values: Mapping[tuple[str, ...], float],
    exemplars: Mapping[tuple[str, ...], Exemplar] | None = None,
) -> SampleLines:
    """The sample lines of a gauge or counter, sorted by label values; a counter's with
    the exemplars given for its label sets."""
    name = metric.name
    labels = writer.labels
    if not exemplars:
        # Most families (every gauge) carry none: the lines joined in one go.
        text = "".join([f"{name}{labels(key)} {go_float(values[key])}\n" for key in sorted(values)])
        return SampleLines(text.encode("utf-8"))
    lines = _Lines()
    for key in sorted(values):
        lines.add(f"{name}{labels(key)} {go_float(values[key])}", exemplar_text(exemplars.get(key)))
    return lines.finish()


def histogram_lines(
    metric: MetricSpec,
    writer: LabelWriter,
    histograms: Mapping[tuple[str, ...], HistogramSnapshot],
) -> SampleLines:
    """The `_bucket` (with their exemplars), `_count` and `_sum` lines of each label set,
    sorted by label values."""
    name = metric.name
    lines = _Lines()
    for key in sorted(histograms):
        hist = histograms[key]
        exemplars = hist.exemplars or (None,) * len(hist.buckets)
        bounds = tuple(bound for bound, _ in hist.buckets)
        bucket_labels = writer.bucket_labels(key, bounds)
        for (_, n), labels, exemplar in zip(hist.buckets, bucket_labels, exemplars, strict=True):
            lines.add(f"{name}_bucket{labels} {go_float(n)}", exemplar_text(exemplar))
        labels = writer.labels(key)
        # prometheus_client's _count is the +Inf bucket (the store's buckets end with it).
        lines.add(f"{name}_count{labels} {go_float(hist.buckets[-1][1])}")
        lines.add(f"{name}_sum{labels} {go_float(hist.sum)}")
    return lines.finish()


class RenderedFamily(Metric):
    """A family whose exposition text is written by this module (`exposition_parts`).

    `parts` are its sample lines, UTF-8 encoded once when written: the exposition is then
    joined from them as they are, with no text copy of the whole of it on the way (but
    for OpenMetrics' exemplars, inserted between slices of the lines).
    Its `samples`, which prometheus_client's own encoders and `get_sample_value` read,
    are built on first use by `build()`, the family as prometheus_client would have it.
    """

    def __init__(
        self, metric: MetricSpec, parts: Iterable[SampleLines], build: Callable[[], Metric]
    ) -> None:
        # Metric.__init__ is not called: it would set `samples`, built lazily here.
        self.name = family_name(metric)
        self.documentation = metric.help
        self.unit = ""
        self.type = metric.type
        self._spec = metric
        self._parts = tuple(parts)
        self._build = build
        self._samples: list[Sample] | None = None

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = list(self._build().samples)
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        self._samples = value

    def exposition_parts(self, openmetrics: bool) -> list[bytes]:
        """HELP, TYPE and every sample line, as prometheus_client would write them."""
        out = [header(self._spec, openmetrics).encode("utf-8")]
        for lines in self._parts:
            out += lines.parts(openmetrics)
        return out


class EncodedFamily(Metric):
    """A family of prometheus_client's own making (a Counter's or a Gauge's collect())
    whose text its encoders write once per format and this keeps: for a family that
    changes rarely, kept as long as its values do (see `SelfMetrics`' instruments)."""

    def __init__(self, metric: Metric) -> None:
        # Metric.__init__ would check the name and type again; they are prometheus_client's.
        self.name = metric.name
        self.documentation = metric.documentation
        self.unit = metric.unit
        self.type = metric.type
        self.samples = metric.samples
        self._parts: dict[bool, list[bytes]] = {}

    def collect(self) -> list[Metric]:
        """Itself, as the one family of a registry (for the encoders)."""
        return [self]

    def exposition_parts(self, openmetrics: bool) -> list[bytes]:
        held = self._parts.get(openmetrics)
        if held is None:
            # Our names are legacy ones, written the same under every escaping we
            # pre-render (see `exporter.web.exposition`).
            if openmetrics:
                held = [_generate_openmetrics(self).removesuffix(b"# EOF\n")]
            else:
                held = [generate_latest(self)]
            self._parts[openmetrics] = held
        return held
