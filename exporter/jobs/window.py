"""The jobs the window gauges count, kept up to date job by job.

`JobStore` used to recount every job it held on every update (the window's status and
error counts, its newest failures): at 1,000 targets x 1,000 jobs that was a third of a
steady refresh's CPU, most of it memory reads of jobs that had not changed. The window
here changes only by the jobs an update touched and by its start moving forward.
"""

from __future__ import annotations

import array
import bisect
import operator
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TypeVar

from exporter.jobs.model import ErrorKey, Job, StatusKey
from exporter.wire import FAILED

# attrgetter builds the key tuples in C.
status_key: Callable[[Job], StatusKey] = operator.attrgetter(
    "status", "resource_type", "api_name", "operate_type"
)
error_key: Callable[[Job], ErrorKey] = operator.attrgetter(
    "resource_type", "api_name", "error_code"
)

K = TypeVar("K")


def _created(job: Job) -> float:
    return job.create_time


class Window:
    """Jobs shown in the gauges (the store's visible jobs created at or after the window
    start) with their counts by status key and, for Failed ones, by error key.

    The owner calls `put` or `drop` for every job whose version or visibility changed,
    and `advance` when the window start moves forward; when it moves back (a clock step)
    `advance` says so and the owner `rebuild`s.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._failed: dict[str, Job] = {}
        self.by_status: Counter[StatusKey] = Counter()
        self.by_error: Counter[ErrorKey] = Counter()
        # CreateTime and id of the jobs held, sorted by CreateTime: two flat arrays, not a
        # heap of tuples (64 bytes an entry: 64 MiB at 1,000 targets x 1,000 jobs). An
        # entry whose job was dropped since, or is held now with another CreateTime, is
        # skipped when the start passes it.
        self._times = array.array("d")
        self._ids: list[str] = []
        self.start: float | None = None

    def rebuild(self, jobs: Iterable[Job], start: float) -> None:
        """Hold exactly `jobs` (the visible jobs created at or after `start`)."""
        self._jobs = {job.id: job for job in jobs}
        self._failed = {i: job for i, job in self._jobs.items() if job.status == FAILED}
        self.by_status = Counter(map(status_key, self._jobs.values()))
        self.by_error = Counter(map(error_key, self._failed.values()))
        ordered = sorted(self._jobs.values(), key=_created)
        self._times = array.array("d", map(_created, ordered))
        self._ids = [job.id for job in ordered]
        self.start = start

    def advance(self, start: float) -> bool:
        """Drop the jobs created before `start`; False (nothing done) if `start` is
        before the last one, which jobs already dropped could be inside."""
        if self.start is None or start < self.start:
            return False
        self.start = start
        passed = bisect.bisect_left(self._times, start)
        for job_id in self._ids[:passed]:
            held = self._jobs.get(job_id)
            if held is not None and held.create_time < start:
                self.drop(job_id)
        del self._times[:passed]
        del self._ids[:passed]
        return True

    def put(self, job: Job) -> None:
        """Hold `job` (a new job, or a new version of one held)."""
        held = self._jobs.get(job.id)
        if held is not None:
            self._uncount(held)
        self._jobs[job.id] = job
        self.by_status[status_key(job)] += 1
        if job.status == FAILED:
            self._failed[job.id] = job
            self.by_error[error_key(job)] += 1
        if held is None or held.create_time != job.create_time:
            # New jobs are the newest, so this is an append but for late-listed ones.
            at = bisect.bisect_right(self._times, job.create_time)
            self._times.insert(at, job.create_time)
            self._ids.insert(at, job.id)

    def drop(self, job_id: str) -> None:
        held = self._jobs.pop(job_id, None)
        if held is not None:
            self._uncount(held)

    def _uncount(self, job: Job) -> None:
        _decrement(self.by_status, status_key(job))
        if job.status == FAILED:
            del self._failed[job.id]
            _decrement(self.by_error, error_key(job))

    def newest_failures(self, limit: int) -> tuple[Job, ...]:
        """The `limit` Failed jobs with the newest ModifyTime (then the greater id)."""
        if limit == 0:
            return ()
        return tuple(
            sorted(self._failed.values(), key=lambda job: (job.modify_time, job.id), reverse=True)[
                :limit
            ]
        )


def _decrement(counts: Counter[K], key: K) -> None:
    # No zero entries: the counts compare equal to a recount, which has none.
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]
