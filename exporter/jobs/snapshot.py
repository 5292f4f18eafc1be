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


@dataclass(frozen=True)
class HistogramSnapshot:
    """One histogram label set: cumulative counts per upper bound, the last bound +Inf."""

    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int


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
    """A mutable histogram kept inside the store; per-bucket (not cumulative) counts."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self._sum = 0.0
        # Every publish of the store snapshots every histogram; few change in between.
        self._snapshot: HistogramSnapshot | None = None

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le = "less or equal").
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value
        self._snapshot = None

    def raw(self) -> tuple[tuple[int, ...], float]:
        return tuple(self._counts), self._sum

    @classmethod
    def from_raw(cls, bounds: tuple[float, ...], counts: Iterable[int], total: float) -> Histogram:
        histogram = cls(bounds)
        values = [int(c) for c in counts]
        if len(values) != len(bounds) + 1 or min(values) < 0:
            raise ValueError("histogram counts do not match the buckets")
        histogram._counts = values
        histogram._sum = float(total)
        return histogram

    def rebucket(self, bounds: tuple[float, ...]) -> Histogram:
        """This histogram's observations under other bucket bounds; count and sum are kept.

        Exact where each new bound is an old one. A new bound that was not starts from the
        cumulative count of the nearest old bound below it (0 if none): the buckets stay
        cumulative and every later observation lands exactly, so rate() and quantiles over
        windows after the change are exact, and no series goes down (no false reset).
        """
        cumulative = list(itertools.accumulate(self._counts))
        at = [
            cumulative[i - 1] if (i := bisect.bisect_right(self._bounds, b)) else 0 for b in bounds
        ]
        at.append(cumulative[-1])  # +Inf: every observation
        histogram = Histogram(bounds)
        histogram._counts = [at[0], *(b - a for a, b in itertools.pairwise(at))]
        histogram._sum = self._sum
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
        return HistogramSnapshot(tuple(cumulative), self._sum, running)


@dataclass(frozen=True)
class StoreState:
    """Everything a store needs to continue after a restart (see `exporter.jobs.state`).

    `durations` holds per-bucket (not cumulative) counts for `bounds`, the last slot +Inf.
    `floor` and `counting_since` are the store's two horizons (see `JobStore`); None in a
    file written before they existed.
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
