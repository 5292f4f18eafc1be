"""Job events end to end: the real exporter process against the real simulator process.

N failed and S succeeded jobs give exactly N (and, when asked, S) JSON lines, across a
restart with `state_file` that includes jobs born and finished while the exporter was down;
hostile ErrorMessages stay one valid line each and render escaped on the landing page; a
file that logrotate renames, then SIGHUPs, loses no event; no secret appears in an event.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support import loopback, procs
from tests.support.configs import access_key, account, write_config

pytestmark = pytest.mark.e2e

KEY_ID = "LTAI5tEventsTestKey00001"
SECRET = "events-Secret-Value-0001"
REGION = "cn-hangzhou"
SPEC_KEYS = {
    "ts",
    "account",
    "region",
    "job_id",
    "status",
    "api_name",
    "operate_type",
    "resource_type",
    "resource_id",
    "error_code",
    "error_message",
    "create_time",
    "modify_time",
    "duration_seconds",
}
HOSTILE = [
    'quote " and backslash \\ and a {"json": "lookalike"}',
    "two\nlines\r\nand a tab\t",
    "control \x00\x01\x1b[31m characters",
    "</script><script>alert(1)</script>",
    "x" * 10_000,
    "lone surrogate \ud800 from a bad encoder",
]


@pytest.fixture
def sim(start_simulator: procs.Simulators) -> procs.Proc:
    return start_simulator([REGION], keys={KEY_ID: SECRET}, jobs_per_minute=0, history="0s")


def now_ms(sim: procs.Proc) -> int:
    return int(procs.control(sim, "GET", "/_sim/state")["now"] * 1000)


def config(tmp: Path, sim: procs.Proc, **job_events: object) -> Path:
    prod = account(sim, "prod", [REGION], access_key(KEY_ID, SECRET))
    return write_config(
        tmp / "config.yaml",
        [prod],
        cache_ttl=0.3,  # each wait below ends at a scrape that refreshes: keep it short
        state_file=str(tmp / "state.json"),
        job_events=job_events,
        recent_failures=20,
    )


def events(path: Path, scrape: procs.Proc | None = None) -> list[dict[str, Any]]:
    """The events in the file; first a scrape of `scrape`: the exporter refreshes on scrapes."""
    if scrape is not None:
        procs.scrape(scrape.url)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def processing(sim: procs.Proc, ids: list[str]) -> None:
    """Jobs created a second ago, still running: the exporter sees them start."""
    t = now_ms(sim)
    procs.put_jobs(
        sim, REGION, *[{"Id": i, "Status": "Processing", "CreateTime": t - 1000} for i in ids]
    )


def jobs(sim: procs.Proc, prefix: str, failed: int, succeeded: int) -> None:
    ids = [f"{prefix}-f{i}" for i in range(failed)] + [f"{prefix}-s{i}" for i in range(succeeded)]
    processing(sim, ids)


def finish(sim: procs.Proc, prefix: str, failed: int, succeeded: int) -> None:
    done = [
        {"Id": f"{prefix}-f{i}", "Status": "Failed", "ErrorCode": "Conflict.Lock",
         "ErrorMessage": f"listener {prefix}-{i} is locked by another job"}
        for i in range(failed)
    ]  # fmt: skip
    done += [{"Id": f"{prefix}-s{i}", "Status": "Succeeded"} for i in range(succeeded)]
    procs.put_jobs(sim, REGION, *done)


def born_and_done(sim: procs.Proc, prefix: str, failed: int, succeeded: int) -> None:
    t = now_ms(sim)
    procs.put_jobs(
        sim,
        REGION,
        *[{"Id": f"{prefix}-f{i}", "Status": "Failed", "ErrorCode": "Other", "CreateTime": t}
          for i in range(failed)],
        *[{"Id": f"{prefix}-s{i}", "Status": "Succeeded", "CreateTime": t}
          for i in range(succeeded)],
    )  # fmt: skip


def failures_total(url: str) -> float:
    _, samples = procs.scrape(url)
    return sum(procs.select(samples, "alb_async_jobs_failures_total").values())


def test_exactly_one_event_per_counted_job_across_a_restart(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    out = tmp_path / "events.jsonl"
    t = now_ms(sim)
    # Terminal before the first ever start: history, no event (and no count).
    procs.put_jobs(
        sim, REGION, {"Id": "old", "Status": "Failed", "CreateTime": t - 60_000, "ModifyTime": t}
    )
    jobs(sim, "a", failed=3, succeeded=2)
    cfg = config(tmp_path, sim, output=str(out), statuses=["Failed", "Succeeded"])
    with start_exporter(cfg) as first:
        finish(sim, "a", failed=3, succeeded=2)
        procs.wait_until(lambda: len(events(out, first)) == 5, timeout=30)
        assert first.stop(signal.SIGTERM) == 0  # flushes the state file

    # Down: 2 failed and 1 succeeded job are born and finish.
    born_and_done(sim, "down", failed=2, succeeded=1)
    with start_exporter(cfg) as second:
        procs.wait_until(lambda: len(events(out, second)) == 8, timeout=30)
        assert failures_total(second.url) == 5
        assert len(events(out)) == 8  # the restart repeated nothing
        seen = [e["job_id"] for e in events(out)]
        assert sorted(seen) == sorted(
            [f"a-f{i}" for i in range(3)] + ["a-s0", "a-s1", "down-f0", "down-f1", "down-s0"]
        )
        assert set(e["status"] for e in events(out)) == {"Failed", "Succeeded"}
        for e in events(out):
            assert set(e) >= SPEC_KEYS, e
            assert e["account"] == "prod" and e["region"] == REGION
            assert e["ts"].endswith("Z") and e["create_time"].endswith("Z")
        failed = {e["job_id"]: e for e in events(out) if e["status"] == "Failed"}
        assert failed["a-f1"]["error_code"] == "Conflict.Lock"
        assert failed["a-f1"]["error_message"] == "listener a-1 is locked by another job"
        assert KEY_ID not in out.read_text() and SECRET not in out.read_text()


def test_only_failed_jobs_by_default_on_stdout_apart_from_the_log_lines(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    jobs(sim, "b", failed=2, succeeded=3)
    with start_exporter(config(tmp_path, sim, output="stdout")) as proc:
        finish(sim, "b", failed=2, succeeded=3)
        procs.wait_until(lambda: failures_total(proc.url) == 2, timeout=30)
        procs.wait_until(lambda: len(stdout_events(proc)) == 2, timeout=10)
        assert [e["status"] for e in stdout_events(proc)] == ["Failed", "Failed"]
        # The exporter's own lines are logfmt; nothing else on the stream parses as an event.
        assert any(line.startswith("ts=") for line in proc.output().splitlines())


def stdout_events(proc: procs.Proc) -> list[dict[str, Any]]:
    found = []
    for text in proc.output().splitlines():
        if text.startswith("{"):
            record = json.loads(text)
            if record.get("type") == "alb_job_event":
                found.append(record)
    return found


def test_hostile_messages_stay_one_json_line_and_render_escaped(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    out = tmp_path / "events.jsonl"
    processing(sim, [f"h{i}" for i in range(len(HOSTILE))])
    with start_exporter(config(tmp_path, sim, output=str(out))) as proc:
        failed = [
            {"Id": f"h{i}", "Status": "Failed", "ErrorCode": "E", "ErrorMessage": message}
            for i, message in enumerate(HOSTILE)
        ]
        # Sent as ASCII JSON: the lone surrogate travels as the escape \ud800, as a bad
        # encoder upstream of the API would produce it.
        body = json.dumps({"region": REGION, "jobs": failed}).encode()
        answer = loopback.post(sim.url + "/_sim/jobs", content=body, timeout=10)
        assert answer.status_code == 200, answer.text
        procs.wait_until(lambda: len(events(out, proc)) == len(HOSTILE), timeout=30)
        lines = out.read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(HOSTILE)  # no message broke a line in two
        by_id = {e["job_id"]: e["error_message"] for e in events(out)}
        assert by_id["h0"] == HOSTILE[0]
        assert by_id["h1"] == HOSTILE[1]
        assert by_id["h3"] == HOSTILE[3]
        assert len(by_id["h4"]) == 256 and by_id["h4"].endswith("…")  # capped like labels
        assert "\ud800" not in by_id["h5"] and "\ufffd" in by_id["h5"]

        page = loopback.get(proc.url + "/").text
        assert "</script><script>" not in page
        assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "quote &quot; and backslash" in page
        assert all(f"<td>h{i}</td>" in page for i in range(len(HOSTILE)))


def test_a_rotated_file_loses_no_event(
    tmp_path: Path, sim: procs.Proc, start_exporter: procs.Exporters
) -> None:
    out = tmp_path / "events.jsonl"
    rotated = tmp_path / "events.jsonl.1"
    jobs(sim, "r1", failed=2, succeeded=0)
    jobs(sim, "r2", failed=3, succeeded=0)
    with start_exporter(config(tmp_path, sim, output=str(out))) as proc:
        finish(sim, "r1", failed=2, succeeded=0)
        procs.wait_until(lambda: len(events(out, proc)) == 2, timeout=30)
        out.rename(rotated)  # logrotate: rename, then signal
        finish(sim, "r2", failed=1, succeeded=0)
        procs.wait_until(lambda: len(events(rotated, proc)) == 3, timeout=30)  # still the old file
        proc.popen.send_signal(signal.SIGHUP)
        procs.wait_until(lambda: out.exists(), timeout=10)
        procs.put_jobs(
            sim,
            REGION,
            *[{"Id": f"r2-f{i}", "Status": "Failed", "ErrorCode": "X"} for i in (1, 2)],
        )
        procs.wait_until(lambda: len(events(out, proc)) == 2, timeout=30)
    ids = [e["job_id"] for e in events(rotated) + events(out)]
    assert sorted(ids) == ["r1-f0", "r1-f1", "r2-f0", "r2-f1", "r2-f2"]
