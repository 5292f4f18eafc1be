"""Job events: the line of one job, what reaches the output, and the output's life
(configure, reopen after a rename, an unwritable path)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import httpx
import pytest

from exporter.alibaba.answers import decode_answer, parse_page
from exporter.jobs.events import JobEvents, event, line
from exporter.jobs.model import Job
from exporter.wire import FAILED, SUCCEEDED
from tests.support.clock import T0
from tests.support.jobs import job as make_job


def job(job_id: str, status: str = FAILED, message: str = "locked") -> Job:
    return make_job(job_id, status, T0, T0 + 12.5, message=message)


def test_the_event_of_a_failed_job() -> None:
    assert event("prod", "cn-hangzhou", job("j1"), T0 + 30) == {
        "type": "alb_job_event",
        "ts": "2023-11-14T22:13:50.000Z",
        "account": "prod",
        "region": "cn-hangzhou",
        "job_id": "j1",
        "status": "Failed",
        "api_name": "CreateListener",
        "operate_type": "Create",
        "resource_type": "listener",
        "resource_id": "lsn-1",
        "error_code": "Conflict.Lock",
        "error_message": "locked",
        "create_time": "2023-11-14T22:13:20.000Z",
        "modify_time": "2023-11-14T22:13:32.500Z",
        "duration_seconds": 12.5,
    }


def test_invalid_utf8_from_the_api_is_one_valid_json_line() -> None:
    raw = (
        b'{"TotalCount":1,"Jobs":[{"Id":"j","Status":"Failed","CreateTime":1700000000000,'
        b'"ErrorMessage":"bad \xff\xfe byte\\nand a newline"}]}'
    )
    jobs, _ = parse_page(decode_answer(httpx.Response(200, content=raw)))
    text = line(event("prod", "cn-hangzhou", jobs[0], T0))
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text)["error_message"] == "bad \ufffd\ufffd byte\nand a newline"


def test_only_the_chosen_statuses_reach_the_output() -> None:
    out = io.StringIO()
    events = JobEvents("stdout", ["Failed"], stdout=out)
    events.emit("prod", "r", [job("f"), job("s", SUCCEEDED)], T0)
    assert [json.loads(x)["job_id"] for x in out.getvalue().splitlines()] == ["f"]
    events.configure("stdout", ["Failed", "Succeeded"])
    events.emit("prod", "r", [job("s2", SUCCEEDED)], T0)
    events.configure("", ["Failed"])  # off
    events.emit("prod", "r", [job("f2")], T0)
    assert [json.loads(x)["job_id"] for x in out.getvalue().splitlines()] == ["f", "s2"]


def test_a_renamed_file_is_reopened_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = JobEvents(str(path), ["Failed"])
    events.emit("prod", "r", [job("a")], T0)
    path.rename(tmp_path / "events.jsonl.1")
    events.emit("prod", "r", [job("b")], T0)  # before the signal: still the old file
    events.reopen()
    events.emit("prod", "r", [job("c")], T0)
    events.close()
    old = (tmp_path / "events.jsonl.1").read_text().splitlines()
    assert [json.loads(x)["job_id"] for x in old] == ["a", "b"]
    assert [json.loads(x)["job_id"] for x in path.read_text().splitlines()] == ["c"]


def test_an_unwritable_output_is_one_error_line_until_it_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing-dir" / "events.jsonl"
    with caplog.at_level(logging.ERROR, logger="exporter.jobs.events"):
        events = JobEvents(str(path), ["Failed"])
        for name in ("a", "b", "c"):
            events.emit("prod", "r", [job(name)], T0)
    assert len(caplog.records) == 1 and "cannot open job_events.output" in caplog.text
    path.parent.mkdir()
    events.emit("prod", "r", [job("d")], T0)
    events.close()
    assert [json.loads(x)["job_id"] for x in path.read_text().splitlines()] == ["d"]
