"""What a job store publishes (an immutable snapshot per update) and persists (its state),
and the histogram it keeps inside."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from exporter.jobs.model import ApiKey, DurationKey, ErrorKey, Job, StatusKey


@dataclass(frozen=True, slots=True)
class Exemplar:
    """The job behind a counter series or a histogram bucket (SPEC "Exemplars"): its id,
    the value it added (1 for a counter, its duration for a bucket) and when it finished
    (ModifyTime). Whether the exposition can carry the id (OpenMetrics' 128 characters) is
    the exposition's concern; the store keeps it whatever it is."""

    job_id: str
    value: float
    timestamp: float


def newest(held: Exemplar | None, candidate: Exemplar) -> Exemplar:
    """The newer of two exemplars: by ModifyTime, as Prometheus orders a series' exemplars
    (it drops one older than the last it stored); on a tie the greater id, so the choice
    never depends on the order a refresh returned the jobs in."""
    if held is None or (candidate.timestamp, candidate.job_id) > (held.timestamp, held.job_id):
        return candidate
    return held


@dataclass(frozen=True)
class HistogramSnapshot:
    """One histogram label set: cumulative counts per upper bound, the last bound +Inf.

    `exemplars`, when not empty, has one entry per bucket: the newest job observed into
    that bucket (not cumulatively: a job is the exemplar of the one bucket its value
    falls in), None for a bucket nothing was observed into.
    """

    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int
    exemplars: tuple[Exemplar | None, ...] = ()


K = TypeVar("K")


V = TypeVar("V")


def frozen(mapping: Mapping[K, V]) -> Mapping[K, V]:
    # A read-only view of a private copy: the snapshot cannot change under a scrape.
    return MappingProxyType(dict(mapping))


def empty() -> Mapping[K, V]:
    return MappingProxyType({})


@dataclass(frozen=True)
class StoreSnapshot:
    """Everything one target exposes, as of `updated_at`; never mutated after creation.

    Gauges (`jobs_by_status`, `failed`, `recent_failures`) describe the jobs of the last
    refresh created within the lookback window; counters and histograms accumulate over
    the store's lifetime and never lose a label set.
    """

    jobs_by_status: Mapping[StatusKey, int] = field(default_factory=empty)
    failed: Mapping[ErrorKey, int] = field(default_factory=empty)
    finished_total: Mapping[StatusKey, int] = field(default_factory=empty)
    failures_total: Mapping[ErrorKey, int] = field(default_factory=empty)
    # The newest job each counter series counted (a series that counted none has none).
    finished_exemplars: Mapping[StatusKey, Exemplar] = field(default_factory=empty)
    failures_exemplars: Mapping[ErrorKey, Exemplar] = field(default_factory=empty)
    vanished_total: Mapping[ApiKey, int] = field(default_factory=empty)
    durations: Mapping[DurationKey, HistogramSnapshot] = field(default_factory=empty)
    oldest_processing: Mapping[ApiKey, float] = field(default_factory=empty)
    recent_failures: tuple[Job, ...] = ()
    processing_ids: frozenset[str] = frozenset()
    jobs_tracked: int = 0
    recovered_total: int = 0  # jobs a complete resync found that incremental listings missed
    updated_at: float | None = None  # the `now` of the last update; None before the first
    primed: bool = False  # counting has started (a first update, or restored state)


class Histogram:
    """A mutable histogram kept inside the store; per-bucket (not cumulative) counts, and
    per bucket the exemplar of the newest job observed into it."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self._exemplars: list[Exemplar | None] = [None] * (len(bounds) + 1)
        self._sum = 0.0
        # Every publish of the store snapshots every histogram; few change in between.
        self._snapshot: HistogramSnapshot | None = None

    def _slot(self, value: float) -> int:
        # bisect_left: a value equal to a bound belongs to that bucket (le = "less or equal").
        return bisect.bisect_left(self._bounds, value)

    def observe(self, value: float, exemplar: Exemplar | None = None) -> None:
        slot = self._slot(value)
        self._counts[slot] += 1
        self._sum += value
        if exemplar is not None:
            self._exemplars[slot] = newest(self._exemplars[slot], exemplar)
        self._snapshot = None

    def raw(self) -> tuple[tuple[int, ...], float]:
        return tuple(self._counts), self._sum

    def exemplars(self) -> tuple[Exemplar, ...]:
        """The exemplars held, in bucket order (each one's value says its bucket)."""
        return tuple(e for e in self._exemplars if e is not None)

    @classmethod
    def from_raw(
        cls,
        bounds: tuple[float, ...],
        counts: Iterable[int],
        total: float,
        exemplars: Iterable[Exemplar] = (),
    ) -> Histogram:
        histogram = cls(bounds)
        values = [int(c) for c in counts]
        if len(values) != len(bounds) + 1 or min(values) < 0:
            raise ValueError("histogram counts do not match the buckets")
        histogram._counts = values
        histogram._sum = float(total)
        histogram._keep(exemplars)
        return histogram

    def _keep(self, exemplars: Iterable[Exemplar]) -> None:
        # Each exemplar goes to the bucket its value falls in, whatever bounds it was
        # held under: exact, unlike the counts of a re-bucketed histogram.
        for exemplar in exemplars:
            slot = self._slot(exemplar.value)
            self._exemplars[slot] = newest(self._exemplars[slot], exemplar)

    def rebucket(self, bounds: tuple[float, ...]) -> Histogram:
        """This histogram's observations under other bucket bounds; count and sum are kept.

        Exact where each new bound is an old one. A new bound that was not starts from the
        cumulative count of the nearest old bound below it (0 if none): the buckets stay
        cumulative and every later observation lands exactly, so rate() and quantiles over
        windows after the change are exact, and no series goes down (no false reset).
        Exemplars move to the bucket their value falls in (the newest one where two meet).
        """
        cumulative = list(itertools.accumulate(self._counts))
        at = [
            cumulative[i - 1] if (i := bisect.bisect_right(self._bounds, b)) else 0 for b in bounds
        ]
        at.append(cumulative[-1])  # +Inf: every observation
        histogram = Histogram(bounds)
        histogram._counts = [at[0], *(b - a for a, b in itertools.pairwise(at))]
        histogram._sum = self._sum
        histogram._keep(self.exemplars())
        return histogram

    def snapshot(self) -> HistogramSnapshot:
        if self._snapshot is None:
            self._snapshot = self._cumulative()
        return self._snapshot

    def _cumulative(self) -> HistogramSnapshot:
        cumulative: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self._bounds, float("inf")), self._counts, strict=True):
            running += count
            cumulative.append((bound, running))
        # () for a histogram without any: most label sets, and the zero series.
        exemplars = tuple(self._exemplars) if self.exemplars() else ()
        return HistogramSnapshot(tuple(cumulative), self._sum, running, exemplars)


@dataclass(frozen=True)
class StoreState:
    """Everything a store needs to continue after a restart (see `exporter.jobs.state`).

    `durations` holds per-bucket (not cumulative) counts for `bounds`, the last slot +Inf.
    `floor` and `counting_since` are the store's two horizons (see `JobStore`); None in a
    file written before they existed. The exemplars (empty in a file written before they
    were kept) are those of `StoreSnapshot`; a histogram's as a list, each exemplar's value
    saying its bucket under any bounds.
    """

    jobs: tuple[Job, ...]
    visible: frozenset[str]
    finished_total: Mapping[StatusKey, int]
    failures_total: Mapping[ErrorKey, int]
    vanished_total: Mapping[ApiKey, int]
    bounds: tuple[float, ...]
    durations: Mapping[DurationKey, tuple[tuple[int, ...], float]]
    floor: float | None = None
    counting_since: float | None = None
    recovered_total: int = 0
    finished_exemplars: Mapping[StatusKey, Exemplar] = field(default_factory=empty)
    failures_exemplars: Mapping[ErrorKey, Exemplar] = field(default_factory=empty)
    duration_exemplars: Mapping[DurationKey, tuple[Exemplar, ...]] = field(default_factory=empty)
