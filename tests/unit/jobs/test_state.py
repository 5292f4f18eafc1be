"""State file: round trip, atomic writes, bounded size, and a fresh start (with a warning,
never a crash) for missing, truncated or foreign files."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from exporter.jobs.model import Job, JobQuery
from exporter.jobs.snapshot import Exemplar
from exporter.jobs.state import FORMAT, StateFile, decode, encode, write_atomically
from exporter.jobs.store import JobStore
from exporter.jobs.target import RefreshPolicy, Target
from exporter.wire import FAILED, PROCESSING, SUCCEEDED
from tests.support.jobs import job as make_job

T0 = 1_700_000_000.0
LOOKBACK = 3600.0


def job(job_id: str, status: str, create: float, modify: float | None = None) -> Job:
    return make_job(job_id, status, create, modify, error_code="E1", message="boom")


class Source:
    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = {j.id: j for j in jobs}

    def list_jobs(self, query: JobQuery) -> list[Job]:
        if query.job_ids:
            return [self.jobs[i] for i in query.job_ids if i in self.jobs]
        begin = (query.begin_time_ms or 0) / 1000
        return [j for j in self.jobs.values() if j.create_time >= begin]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_target(source: Source, clock: Clock) -> Target:
    return Target(
        "acct",
        "cn-hangzhou",
        source,
        JobStore(LOOKBACK, 5),
        lookback=LOOKBACK,
        policy=RefreshPolicy(overlap=60, full_resync_interval=1e9, recheck_age_fraction=0),
        clock=clock,
    )


def counted(t: Target) -> int:
    return sum(t.snapshot().finished_total.values())


def test_restart_counts_jobs_finished_while_down_once_and_nothing_twice(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    clock = Clock(T0)
    source = Source(
        [
            job("history", SUCCEEDED, T0 - 500, T0 - 400),  # terminal at the first refresh
            job("runs", PROCESSING, T0 - 300),
            job("stuck", PROCESSING, T0 - 600),
        ]
    )
    first = make_target(source, clock)
    first.refresh()
    source.jobs["quick"] = job("quick", FAILED, T0 + 10, T0 + 20)
    clock.now = T0 + 30
    first.refresh()
    assert counted(first) == 1  # "quick": new after priming
    StateFile(path).save([first])
    before = first.snapshot()

    # Down for ten minutes: "runs" finishes, a job is created and finishes unseen.
    source.jobs["runs"] = job("runs", SUCCEEDED, T0 - 300, T0 + 200)
    source.jobs["unseen"] = job("unseen", FAILED, T0 + 100, T0 + 150)
    clock.now = T0 + 630
    second = make_target(source, clock)
    assert StateFile(path).restore([second]) == 1
    # Counters are back before the first refresh: nothing decreases. Their exemplars too.
    assert dict(second.snapshot().finished_total) == dict(before.finished_total)
    assert second.snapshot().failures_exemplars == before.failures_exemplars
    assert second.snapshot().finished_exemplars == before.finished_exemplars
    assert second.snapshot().durations == before.durations
    second.refresh()
    snap = second.snapshot()
    # "runs" was seen Processing: counted once. "unseen" was born and finished while down:
    # a restart is a long gap between two refreshes, so it is counted once too (SPEC).
    # "quick" is not recounted, "history" (terminal before the first ever start) never.
    assert counted(second) == 3
    assert snap.finished_total[(SUCCEEDED, "listener", "CreateListener", "Create")] == 1
    assert snap.failures_total[("listener", "CreateListener", "E1")] == 2
    assert snap.processing_ids == frozenset({"stuck"})
    # The newest failure counted, across the restart: "unseen" (ModifyTime T0 + 150).
    unseen = Exemplar("unseen", 1.0, T0 + 150)
    assert dict(snap.failures_exemplars) == {("listener", "CreateListener", "E1"): unseen}
    for name in ("finished_total", "failures_total", "vanished_total"):
        for key, value in getattr(before, name).items():
            assert getattr(snap, name)[key] >= value
    # Restarting again from the same file is just as safe.
    StateFile(path).save([second])
    clock.now += 30
    third = make_target(source, clock)
    StateFile(path).restore([third])
    third.refresh()
    assert counted(third) == 3
    assert third.snapshot().durations == snap.durations


def test_a_file_saved_under_other_buckets_keeps_its_counters(tmp_path: Path) -> None:
    # An upgrade from a version whose default buckets were 1 s .. 1 h: the counters must
    # not reset for it (they did: the whole target's state was refused).
    path = str(tmp_path / "state.json")
    clock = Clock(T0)
    source = Source([job("runs", PROCESSING, T0 - 30)])
    old = Target(
        "acct",
        "cn-hangzhou",
        source,
        JobStore(LOOKBACK, 5, duration_buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)),
        lookback=LOOKBACK,
        clock=clock,
    )
    old.refresh()
    source.jobs["runs"] = job("runs", SUCCEEDED, T0 - 30, T0 - 3)  # 27 s
    clock.now = T0 + 30
    old.refresh()
    StateFile(path).save([old])

    new = make_target(source, clock)  # today's default buckets
    assert StateFile(path).restore([new]) == 1
    snap = new.snapshot()
    assert counted(new) == 1
    hist = snap.durations[(SUCCEEDED, "listener", "CreateListener")]
    assert (hist.count, hist.sum) == (1, 27.0)
    assert dict(hist.buckets)[30.0] == 1 and dict(hist.buckets)[10.0] == 0


def _counted_twice() -> Target:
    """A target that counted a failure (20 s) and a success (3 s) after its first refresh."""
    clock = Clock(T0)
    source = Source([job("a", FAILED, T0 - 5, T0 - 1), job("p", PROCESSING, T0 - 9)])
    t = make_target(source, clock)
    t.refresh()
    source.jobs["b"] = job("b", FAILED, T0 + 10, T0 + 30)
    source.jobs["p"] = job("p", SUCCEEDED, T0 - 9, T0 - 6)
    clock.now = T0 + 40
    t.refresh()
    return t


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    t = _counted_twice()
    states = {t.key: t.export_state()}
    saved = states[t.key][1]
    assert saved.failures_exemplars and saved.finished_exemplars and saved.duration_exemplars
    again = decode(encode(states, T0))
    position, store = again[t.key]
    assert position == states[t.key][0]
    assert store == saved


def test_a_file_written_before_exemplars_loads_its_counters_without_them() -> None:
    t = _counted_twice()
    document = json.loads(encode({t.key: t.export_state()}, T0))
    saved = document["targets"][0]
    # The rows as the exporter wrote them before it kept exemplars.
    saved["finished_total"] = [row[:5] for row in saved["finished_total"]]
    saved["failures_total"] = [row[:4] for row in saved["failures_total"]]
    saved["durations"] = [row[:5] for row in saved["durations"]]
    _, store = decode(json.dumps(document).encode())[t.key]
    assert store.finished_total == t.export_state()[1].finished_total
    assert store.durations == t.export_state()[1].durations
    assert (store.finished_exemplars, store.failures_exemplars, store.duration_exemplars) == (
        {},
        {},
        {},
    )


@pytest.mark.parametrize(
    ("family", "tail"),
    [
        ("failures_total", [7, T0]),  # the id is not a string
        ("failures_total", ["b"]),  # no ModifyTime
        ("finished_total", ["b", "yesterday"]),
        ("durations", [[["b", -1.0, T0]]]),  # a negative duration
        ("durations", [[["b", 20.0]]]),
    ],
)
def test_a_malformed_exemplar_is_a_malformed_target(family: str, tail: list[object]) -> None:
    t = _counted_twice()
    document = json.loads(encode({t.key: t.export_state()}, T0))
    rows = document["targets"][0][family]
    width = {"finished_total": 5, "failures_total": 4, "durations": 5}[family]
    rows[0] = [*rows[0][:width], *tail]
    assert decode(json.dumps(document).encode()) == {}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "does not exist"),
        (b"", "not JSON"),
        (b'{"format": "alb-jobs-exporter-state", "version": 1, "targ', "not JSON"),
        (b'{"hello": "world"}', "not an alb-jobs-exporter-state file"),
        (b"[1, 2, 3]", "not an alb-jobs-exporter-state file"),
        (json.dumps({"format": FORMAT, "version": 99}).encode(), "version 99"),
        (json.dumps({"format": FORMAT, "version": 1}).encode(), "malformed"),
        (
            json.dumps(
                {"format": FORMAT, "version": 1, "targets": [{"account": "a", "region": 3}]}
            ).encode(),
            "malformed",
        ),
        (b"\xff\xfe\x00garbage", "not JSON"),
    ],
)
def test_unusable_file_gives_a_warning_and_a_fresh_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "state.json"
    if content is not None:
        path.write_bytes(content)
    target = make_target(Source([]), Clock(T0))
    with caplog.at_level(logging.WARNING, logger="exporter.jobs.state"):
        assert StateFile(str(path)).restore([target]) == 0
    assert reason in caplog.text
    target.refresh()
    assert target.status().up


def test_truncated_real_state_file_is_rejected_not_half_used(tmp_path: Path) -> None:
    clock = Clock(T0)
    t = make_target(Source([job(f"j{i}", SUCCEEDED, T0 - i) for i in range(50)]), clock)
    t.refresh()
    path = tmp_path / "state.json"
    StateFile(str(path)).save([t])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    fresh = make_target(Source([]), clock)
    assert StateFile(str(path)).restore([fresh]) == 0
    assert fresh.snapshot().jobs_tracked == 0


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    # The rename fails (the target is a directory): nothing half-written, no temp file left.
    blocked = tmp_path / "blocked"
    (blocked / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        write_atomically(str(blocked), b"new")
    assert sorted(os.listdir(tmp_path)) == ["blocked", "state.json"]
    write_atomically(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["blocked", "state.json"]


def test_saves_are_rate_limited_but_shutdown_always_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    ticks = Clock(0.0)
    state = StateFile(str(path), min_interval=60, timer=ticks)
    source = Source([job("p", PROCESSING, T0 - 5)])
    clock = Clock(T0)
    t = make_target(source, clock)
    t.refresh()
    assert state.maybe_save([t])
    ticks.now = 30
    assert not state.maybe_save([t])
    ticks.now = 61
    assert state.maybe_save([t])
    # A counted job is written at once: a crash must not lose it.
    source.jobs["p"] = job("p", SUCCEEDED, T0 - 5, T0 + 1)
    clock.now += 30
    t.refresh()
    ticks.now = 62
    assert state.maybe_save([t])
    assert not state.maybe_save([t])
    path.unlink()
    state.save([t])
    assert path.exists()


def test_size_is_bounded_by_the_window_and_tracked_jobs(tmp_path: Path) -> None:
    clock = Clock(T0)
    source = Source([])
    t = make_target(source, clock)
    for step in range(48):  # a day of refreshes every 30 min, 20 new jobs each
        clock.now = T0 + 1800 * step
        for k in range(20):
            source.jobs[f"{step}-{k}"] = job(f"{step}-{k}", SUCCEEDED, clock.now - 1)
        t.refresh()
    _, store = t.export_state()
    # Two or three refreshes' worth of jobs are within the hour, not the day's 960.
    assert len(store.jobs) <= 3 * 20
    assert all(j.create_time >= clock.now - LOOKBACK for j in store.jobs)


def _two_targets(clock: Clock, *, refresh: bool = True) -> tuple[Target, Target]:
    first = make_target(Source([job("a", PROCESSING, T0 - 5)]), clock)
    second = Target(
        "acct",
        "cn-shanghai",
        Source([job("b", PROCESSING, T0 - 5)]),
        JobStore(LOOKBACK, 5),
        lookback=LOOKBACK,
        clock=clock,
    )
    for t in (first, second):
        if refresh:
            t.refresh()
    return first, second


def _file_with_a_bad_second_target(tmp_path: Path, clock: Clock) -> Path:
    """A state file of `_two_targets` whose second target has a malformed job row."""
    first, second = _two_targets(clock)
    document = json.loads(encode({t.key: t.export_state() for t in (first, second)}, T0))
    document["targets"][1]["jobs"][0] = ["not", "a", "job", "row"]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(document))
    return path


def test_one_bad_target_entry_costs_that_target_its_history_not_everyones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    path = _file_with_a_bad_second_target(tmp_path, clock)
    again = _two_targets(clock, refresh=False)
    with caplog.at_level(logging.WARNING, logger="exporter.jobs.state"):
        assert StateFile(str(path)).restore(again) == 1
    assert "account=acct region=cn-shanghai is malformed" in caplog.text
    assert "that target starts fresh" in caplog.text


def test_a_version_1_file_is_still_read_and_its_saved_position_starts_the_count(
    tmp_path: Path,
) -> None:
    clock = Clock(T0)
    t = make_target(Source([job("seen", PROCESSING, T0 - 5)]), clock)
    t.refresh()
    document = json.loads(encode({t.key: t.export_state()}, T0))
    document["version"] = 1
    for key in ("listed_to", "floor", "counting_since", "recovered_total"):
        del document["targets"][0][key]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(document))
    # Down after the v1 save: "seen" finishes, "new" is born and finishes; "old" finished
    # before the saved position and was never held: history.
    source = Source(
        [
            job("seen", SUCCEEDED, T0 - 5, T0 + 10),
            job("new", FAILED, T0 + 20, T0 + 30),
            job("old", SUCCEEDED, T0 - 50, T0 - 40),
        ]
    )
    clock.now = T0 + 60
    upgraded = make_target(source, clock)
    assert StateFile(str(path)).restore([upgraded]) == 1
    upgraded.refresh()
    assert counted(upgraded) == 2


# --- a bad file is kept aside (issue 23) -----------------------------------------------------


def _aside(tmp_path: Path) -> list[Path]:
    return sorted(p for p in tmp_path.iterdir() if ".corrupt-" in p.name or ".v" in p.name)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b'{"format": "alb-jobs-exporter-state", "version": 2, "targ', "corrupt"),
        (bytes(range(256)) * 4, "corrupt"),
        (json.dumps({"format": FORMAT, "version": 7, "targets": []}).encode(), "v7"),
        (json.dumps({"format": FORMAT, "version": 0}).encode(), "corrupt"),
    ],
    ids=["truncated", "garbage", "newer-version", "older-unknown-version"],
)
def test_an_unusable_file_is_kept_aside_byte_for_byte_before_any_save(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, kind: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    clock = Clock(T0)
    state = StateFile(str(path), clock=clock)
    target = make_target(Source([job("a", PROCESSING, T0 - 5)]), clock)
    with caplog.at_level(logging.ERROR, logger="exporter.jobs.state"):
        assert state.restore([target]) == 0
    [kept] = _aside(tmp_path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(T0))
    assert kept.name == f"state.json.{kind}-{stamp}"
    assert kept.read_bytes() == content
    assert str(kept) in caplog.text and "unusable" in caplog.text
    assert state.errors() == {"restore": 1, "save": 0}
    target.refresh()
    state.save([target])  # the new file; the copy is untouched
    assert kept.read_bytes() == content and decode(path.read_bytes())


def test_a_second_bad_file_in_the_same_second_does_not_replace_the_first_copy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    for content in (b"first", b"second"):
        path.write_bytes(content)
        StateFile(str(path), clock=Clock(T0)).load()
    assert sorted(p.read_bytes() for p in _aside(tmp_path)) == [b"first", b"second"]


def test_a_file_with_one_bad_target_is_kept_and_the_good_targets_restored(
    tmp_path: Path,
) -> None:
    clock = Clock(T0)
    path = _file_with_a_bad_second_target(tmp_path, clock)
    original = path.read_bytes()
    state = StateFile(str(path), clock=clock)
    assert state.restore(_two_targets(clock, refresh=False)) == 1
    [kept] = _aside(tmp_path)
    assert kept.read_bytes() == original and state.errors()["restore"] == 1
