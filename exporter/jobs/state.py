"""The state file: counters, the jobs held and each target's refresh position, kept across
restarts (config `state_file`).

One JSON document with a header naming the format and its version, written atomically
(a temporary file in the same directory, fsynced, then renamed over the old one). A
missing file is a fresh start. An unreadable, truncated, foreign or newer-version file
(or one with a malformed target entry) is kept aside, byte for byte, before anything is
written over it: renamed to `<path>.corrupt-<UTC time>` (a newer version's to
`<path>.v<N>-<UTC time>`, the counts a rollback should get back after the next upgrade),
logged at error with the reason and the new name, and counted (`errors()`, exposed as
`alb_exporter_state_errors_total{operation="restore"}`). A save that fails is counted
under "save". Neither ever stops the exporter. The size is bounded by what the stores hold:
the jobs of the lookback window plus the jobs tracked as Processing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar, cast

from exporter.errors import StateError, StateVersionError
from exporter.jobs.model import ApiKey, DurationKey, ErrorKey, Job, StatusKey
from exporter.jobs.snapshot import Exemplar, StoreState
from exporter.jobs.target import Target, TargetKey, TargetState

log = logging.getLogger(__name__)

FORMAT = "alb-jobs-exporter-state"
VERSION = 2
# Version 1 lacked the store's horizons and the listing position; it is still read (the
# saved refresh position stands in for them), so an upgrade keeps the counters.
# Exemplars did not need a new version: they ride at the end of the counter and histogram
# rows, which every reader reads by position and only as far as it knows (a file without
# them loads without them; an older exporter reads a newer file and leaves them).
READABLE_VERSIONS = (1, 2)
# Written after a successful refresh at most this often (and always on shutdown): with
# 100k jobs held the file is ~15 MB, so not on every 30 s refresh. A refresh that moved a
# counter is written at once, so that a crash (no shutdown flush) cannot lose a count:
# counters restored lower than exported before would look like a reset.
DEFAULT_MIN_INTERVAL = 60.0

Restored = dict[TargetKey, tuple[TargetState, StoreState]]
K = TypeVar("K", bound=tuple[str, ...])

# The `operation` label of alb_exporter_state_errors_total.
OPERATIONS = ("restore", "save")


class StateFile:
    """Loads and saves the state of all targets. Thread-safe."""

    def __init__(
        self,
        path: str,
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        timer: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[str], None] | None = None,
        write: Callable[[str, bytes], None] | None = None,
    ) -> None:
        """`on_error(operation)` is called after each counted error ("restore", "save");
        `write(path, data)` writes the file (default `write_atomically`)."""
        self.path = path
        self._write = write or write_atomically
        self._min_interval = min_interval
        self._timer = timer
        self._clock = clock
        self._on_error = on_error or (lambda _operation: None)
        self._lock = threading.Lock()
        self._last_save: float | None = None
        self._saved_counts: dict[TargetKey, int] = {}
        # Other owners' sections of the document (discovery's last successful listing),
        # written with every save; a change of them is saved like a counter that moved.
        self.sections: Callable[[], dict[str, Any]] = dict
        self._saved_sections: dict[str, Any] = {}
        self._errors = dict.fromkeys(OPERATIONS, 0)
        # Where an unusable file goes that could not be moved aside at start-up (a read-only
        # directory): every save moves it first, and fails while it cannot.
        self._aside: str | None = None
        # Saved targets not running yet (discovery finds them later, a shard gets them, a
        # migration to `regions: "*"`): restored when they come (`claim`), and written
        # back with every save until then, so that waiting for them loses nothing.
        self._unclaimed: Restored = {}

    def errors(self) -> dict[str, int]:
        """Problems so far by operation: "restore" (a file kept aside), "save" (a failed write)."""
        with self._lock:
            return dict(self._errors)

    def _count(self, operation: str) -> None:
        with self._lock:
            self._errors[operation] += 1
        self._on_error(operation)

    # --- loading -------------------------------------------------------------------------

    def load(self) -> Restored:
        """The saved state by target; {} when there is none to use. A file that cannot be
        used whole is kept aside first (module doc)."""
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            log.warning("state file %s does not exist yet; starting fresh", self.path)
            return {}
        except OSError as exc:
            if not os.path.lexists(self.path):  # a path through a file, say: nothing to keep
                log.warning("cannot read state file %s (%s); starting fresh", self.path, exc)
                return {}
            self._keep_aside(f"cannot be read ({exc})", "corrupt")
            return {}
        problems: list[str] = []
        try:
            restored = decode(raw, problems)
        except StateVersionError as exc:
            self._keep_aside(str(exc), f"v{exc.version}")
            return {}
        except StateError as exc:
            self._keep_aside(str(exc), "corrupt")
            return {}
        if problems:
            # The good targets are restored; the file, bad entries included, is kept.
            self._keep_aside(f"{len(problems)} malformed target entries", "corrupt")
        return restored

    def _keep_aside(self, reason: str, kind: str) -> None:
        self._count("restore")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        aside = f"{self.path}.{kind}-{stamp}"
        n = 1
        while os.path.lexists(aside):  # never over an earlier copy
            aside = f"{self.path}.{kind}-{stamp}.{n}"
            n += 1
        try:
            os.rename(self.path, aside)
        except OSError as exc:
            with self._lock:
                self._aside = aside
            log.error(
                "state file %s is unusable (%s) and cannot be moved aside to %s (%s); "
                "starting fresh, and it is not written over until it can be moved: "
                "make its directory writable",
                self.path,
                reason,
                aside,
                exc,
            )
            return
        log.error(
            "state file %s is unusable (%s); kept as %s, starting fresh", self.path, reason, aside
        )

    def section(self, name: str) -> Any:
        """Another owner's section of the saved document (None when there is none)."""
        try:
            with open(self.path, "rb") as fh:
                document = json.loads(fh.read())
        except (OSError, ValueError, RecursionError):
            return None
        return document.get(name) if isinstance(document, dict) else None

    def read(self) -> None:
        """Read the file (once, at start-up): its targets wait for `claim`."""
        restored = self.load()
        with self._lock:
            self._unclaimed = restored

    def restore(self, targets: Iterable[Target]) -> int:
        """`read`, then `claim` `targets`; returns how many were restored."""
        self.read()
        return self.claim(targets)

    def claim(self, targets: Iterable[Target]) -> int:
        """Restore those of `targets` (new, not refreshed yet) whose saved state is still
        waiting; returns how many were restored."""
        count = 0
        for target in targets:
            with self._lock:
                saved = self._unclaimed.pop(target.key, None)
            if saved is None:
                continue
            try:
                target.restore_state(*saved)
            except ValueError as exc:
                log.warning(
                    "state of account=%s region=%s not restored: %s",
                    target.account,
                    target.region,
                    exc,
                )
                continue
            count += 1
        if count:
            log.info("restored the saved state of %d targets from %s", count, self.path)
        return count

    # --- saving --------------------------------------------------------------------------

    def maybe_save(self, targets: Iterable[Target]) -> bool:
        """Save if a counter moved since the last save or the minimum interval passed."""
        now = self._timer()
        targets = list(targets)
        with self._lock:
            recent = self._last_save is not None and now - self._last_save < self._min_interval
            unchanged = self.sections() == self._saved_sections
            if recent and unchanged and _counts(targets) == self._saved_counts:
                return False
            self._save_locked(targets, now)
            return True

    def save(self, targets: Iterable[Target]) -> None:
        with self._lock:
            self._save_locked(targets, self._timer())

    def _save_locked(self, targets: Iterable[Target], now: float) -> None:
        targets = list(targets)
        counts = _counts(targets)
        sections = self.sections()
        states = {**self._unclaimed, **{t.key: t.export_state() for t in targets}}
        data = encode(states, self._clock(), sections)
        try:
            if self._aside is not None:
                _move_aside(self.path, self._aside)
                log.error("state file %s kept as %s", self.path, self._aside)
                self._aside = None
            self._write(self.path, data)
        except OSError:
            self._errors["save"] += 1  # under self._lock already
            self._on_error("save")
            raise
        self._last_save = now
        self._saved_counts = counts
        self._saved_sections = sections
        log.debug("state written to %s (%d bytes)", self.path, len(data))


def _counts(targets: Iterable[Target]) -> dict[TargetKey, int]:
    counts = {}
    for target in targets:
        snap = target.snapshot()
        counts[target.key] = sum(snap.finished_total.values()) + sum(snap.vanished_total.values())
    return counts


def _move_aside(path: str, aside: str) -> None:
    with contextlib.suppress(FileNotFoundError):  # removed by hand: nothing left to keep
        os.rename(path, aside)


def write_atomically(path: str, data: bytes) -> None:
    """Readers see the old file or the new one, never a mix (POSIX rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the directory is synced (not on every OS).
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- the document --------------------------------------------------------------------------


def encode(
    states: Mapping[TargetKey, tuple[TargetState, StoreState]],
    written_at: float,
    sections: Mapping[str, Any] | None = None,
) -> bytes:
    # One JSON document (the jobs last in each target), encoded in pieces: the C encoder
    # holds the GIL for a whole call, and one call over 1M jobs would stall the scrapes for
    # a second; between pieces (a target's fields, `_JOB_CHUNK` jobs) other threads run.
    targets = []
    for (account, region), (position, store) in states.items():
        targets.append(
            _dumps(
                {
                    "account": account,
                    "region": region,
                    "position": position.position,
                    "last_full": position.last_full,
                    "listed_to": position.listed_to,
                    "floor": store.floor,
                    "counting_since": store.counting_since,
                    "recovered_total": store.recovered_total,
                    "finished_total": _counter_rows(store.finished_total, store.finished_exemplars),
                    "failures_total": _counter_rows(store.failures_total, store.failures_exemplars),
                    "vanished_total": [[*k, v] for k, v in store.vanished_total.items()],
                    "bounds": list(store.bounds),
                    "durations": [
                        [*k, list(counts), total, *_histogram_exemplars(store, k)]
                        for k, (counts, total) in store.durations.items()
                    ],
                }
            )[:-1]
            # Compact rows: one list per job, `visible` as 0/1 at the end; last, in chunks.
            + ',"jobs":['
            + ",".join(_job_chunks(store))
            + "]}"
        )
    head = _dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "written_at": written_at,
            **(sections or {}),
            "targets": [],
        }
    )
    assert head.endswith("[]}")
    return f"{head[:-2]}{','.join(targets)}]}}".encode()


def _counter_rows(counts: Mapping[K, int], exemplars: Mapping[K, Exemplar]) -> list[list[Any]]:
    # [*labels, count] or [*labels, count, job id, ModifyTime]: a counter's exemplar
    # value is always 1.
    rows: list[list[Any]] = []
    for key, count in counts.items():
        exemplar = exemplars.get(key)
        tail: tuple[Any, ...] = () if exemplar is None else (exemplar.job_id, exemplar.timestamp)
        rows.append([*key, count, *tail])
    return rows


def _histogram_exemplars(store: StoreState, key: DurationKey) -> list[list[list[Any]]]:
    # Nothing, or one more column: [[job id, duration, ModifyTime], ...].
    exemplars = store.duration_exemplars.get(key, ())
    return [[[e.job_id, e.value, e.timestamp] for e in exemplars]] if exemplars else []


_JOB_CHUNK = 500


def _job_chunks(store: StoreState) -> Iterator[str]:
    jobs = store.jobs
    for start in range(0, len(jobs), _JOB_CHUNK):
        rows = [_job_row(job, job.id in store.visible) for job in jobs[start : start + _JOB_CHUNK]]
        yield _dumps(rows)[1:-1]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def decode(raw: bytes, problems: list[str] | None = None) -> Restored:
    """Parse a state document; StateError for anything that is not one. A malformed target
    entry is left out (logged, and described in `problems`)."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise StateError(f"not JSON (truncated?): {str(exc)[:120]}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateError(f"not an {FORMAT} file")
    version = document.get("version")
    if version not in READABLE_VERSIONS:
        message = f"version {version!r} is not one of {READABLE_VERSIONS}"
        if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
            raise StateVersionError(f"{message} (written by a newer exporter)", version)
        raise StateError(message)
    items = document.get("targets")
    if not isinstance(items, list):
        raise StateError("malformed content (no list of targets)")
    restored: Restored = {}
    for index, item in enumerate(items):
        # One bad entry costs that target its history, not every target's.
        try:
            key, saved = _target(item, version)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            log.warning(
                "state of %s is malformed (%s: %s); that target starts fresh",
                _describe(item, index),
                type(exc).__name__,
                str(exc)[:120],
            )
            if problems is not None:
                problems.append(_describe(item, index))
            continue
        restored[key] = saved
    return restored


def _describe(item: Any, index: int) -> str:
    if isinstance(item, dict):
        account, region = item.get("account"), item.get("region")
        if isinstance(account, str) and isinstance(region, str):
            return f"account={account} region={region}"
    return f"targets[{index}]"


def _job_row(job: Job, visible: bool) -> list[Any]:
    return [
        job.id,
        job.api_name,
        job.operate_type,
        job.resource_type,
        job.resource_id,
        job.status,
        job.error_code,
        job.error_message,
        job.create_time,
        job.modify_time,
        1 if visible else 0,
    ]


def _target(item: Any, version: int) -> tuple[TargetKey, tuple[TargetState, StoreState]]:
    key = (_str(item["account"]), _str(item["region"]))
    jobs = []
    visible = set()
    for row in item["jobs"]:
        if not isinstance(row, list) or len(row) != 11:
            raise ValueError("a job row is not a list of 11 values")
        text = [_str(v) for v in row[:8]]
        job = Job(
            id=text[0],
            api_name=text[1],
            operate_type=text[2],
            resource_type=text[3],
            resource_id=text[4],
            status=text[5],
            error_code=text[6],
            error_message=text[7],
            create_time=_time(row[8]),
            modify_time=_time(row[9]),
        )
        jobs.append(job)
        if row[10]:
            visible.add(job.id)
    store = StoreState(
        jobs=tuple(jobs),
        visible=frozenset(visible),
        finished_total={
            cast(StatusKey, _labels(r, 4)): _count(r[4]) for r in item["finished_total"]
        },
        failures_total={
            cast(ErrorKey, _labels(r, 3)): _count(r[3]) for r in item["failures_total"]
        },
        finished_exemplars={
            cast(StatusKey, _labels(r, 4)): _counter_exemplar(r[5:])
            for r in item["finished_total"]
            if len(r) > 5
        },
        failures_exemplars={
            cast(ErrorKey, _labels(r, 3)): _counter_exemplar(r[4:])
            for r in item["failures_total"]
            if len(r) > 4
        },
        duration_exemplars={
            cast(DurationKey, _labels(r, 3)): tuple(_exemplar(e) for e in r[5])
            for r in item["durations"]
            if len(r) > 5
        },
        vanished_total={cast(ApiKey, _labels(r, 2)): _count(r[2]) for r in item["vanished_total"]},
        bounds=tuple(_time(b) for b in item["bounds"]),
        durations={
            cast(DurationKey, _labels(r, 3)): (tuple(_count(c) for c in r[3]), _time(r[4]))
            for r in item["durations"]
        },
        floor=_optional_time(item["floor"]) if version >= 2 else None,
        counting_since=_optional_time(item["counting_since"]) if version >= 2 else None,
        recovered_total=_count(item["recovered_total"]) if version >= 2 else 0,
    )
    position = TargetState(
        _optional_time(item["position"]),
        _optional_time(item["last_full"]),
        _optional_time(item["listed_to"]) if version >= 2 else None,
    )
    return key, (position, store)


def _counter_exemplar(tail: list[Any]) -> Exemplar:
    job_id, timestamp = tail
    return Exemplar(_str(job_id), 1.0, _time(timestamp))


def _exemplar(row: Any) -> Exemplar:
    if not isinstance(row, list) or len(row) != 3:
        raise ValueError("an exemplar is not a list of 3 values")
    duration = _time(row[1])
    if duration < 0:
        raise ValueError("an exemplar's duration is negative")
    return Exemplar(_str(row[0]), duration, _time(row[2]))


def _labels(row: Any, n: int) -> tuple[str, ...]:
    if not isinstance(row, list) or len(row) < n + 1:
        raise ValueError("a counter row is too short")
    return tuple(_str(v) for v in row[:n])


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("a count is not a non-negative integer")
    return value


def _time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("a number is not finite")
    return float(value)


def _optional_time(value: Any) -> float | None:
    return None if value is None else _time(value)
