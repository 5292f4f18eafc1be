"""A target's refresh failures in the log: `error` while they persist, at most every
REPEAT seconds for the same failure, a new failure at once, the recovery at `info`."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from exporter.errors import ServerError
from exporter.jobs.failure_log import REPEAT, FailureLog
from exporter.jobs.store import JobStore
from exporter.jobs.target import RefreshPolicy, Target
from tests.unit.jobs.test_target import LOOKBACK, Clock, FakeAlb

LOGGER = "exporter.jobs.failure_log"


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Lines = Callable[[], list[tuple[str, str]]]


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Lines:
    """The failure log's (level, message) lines, every level, since the last call."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    def logged() -> list[tuple[str, str]]:
        out = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
        caplog.clear()
        return out

    return logged


def test_a_persisting_failure_is_an_error_every_repeat_interval(lines: Lines) -> None:
    ticks = Ticks()
    failures = FailureLog("account=prod region=cn-hangzhou", clock=ticks)
    failures.failed("ServiceUnavailable: down", "ServerError:ServiceUnavailable")
    assert lines() == [
        ("ERROR", "refresh of account=prod region=cn-hangzhou failed: ServiceUnavailable: down")
    ]
    for _ in range(9):  # a scrape every 30 s, for 4.5 minutes: debug only
        ticks.now += 30
        failures.failed("ServiceUnavailable: down", "ServerError:ServiceUnavailable")
    assert {level for level, _ in lines()} == {"DEBUG"}
    ticks.now += 30  # 5 minutes after the first line
    failures.failed("ServiceUnavailable: down", "ServerError:ServiceUnavailable")
    assert lines() == [
        (
            "ERROR",
            "refresh of account=prod region=cn-hangzhou still failing for 5m00s (10 failed"
            " refreshes since the last report): ServiceUnavailable: down",
        )
    ]
    ticks.now += 10  # another failure: at once, whatever the interval
    failures.failed("Forbidden.RAM: no", "ServerError:Forbidden.RAM")
    assert lines() == [
        ("ERROR", "refresh of account=prod region=cn-hangzhou failed: Forbidden.RAM: no")
    ]
    ticks.now += 50
    failures.succeeded()
    assert lines() == [
        ("INFO", "account=prod region=cn-hangzhou recovered after 6m00s (12 failed refreshes)")
    ]


def test_recovery_is_logged_once_and_a_new_outage_starts_afresh(lines: Lines) -> None:
    ticks = Ticks()
    failures = FailureLog("t", clock=ticks)
    failures.succeeded()  # nothing failed: nothing to say
    failures.failed("x", "K")
    ticks.now += 90
    failures.succeeded()
    failures.succeeded()
    assert lines() == [
        ("ERROR", "refresh of t failed: x"),
        ("INFO", "t recovered after 1m30s (1 failed refreshes)"),
    ]
    ticks.now += 1  # the same kind soon after a recovery is a new outage: logged at once
    failures.failed("x", "K")
    assert lines() == [("ERROR", "refresh of t failed: x")]
    assert REPEAT == 300.0


def test_a_target_logs_its_failures_through_it(lines: Lines) -> None:
    alb, clock = FakeAlb(), Clock()
    target = Target(
        "a", "r", alb, JobStore(LOOKBACK, 5), lookback=LOOKBACK, policy=RefreshPolicy(), clock=clock
    )
    alb.fail = True
    target.refresh()
    target.refresh()
    alb.fail = False
    target.refresh()
    got = lines()
    assert [level for level, _ in got] == ["ERROR", "DEBUG", "INFO"]
    assert (
        got[0][1]
        == f"refresh of account=a region=r failed: {ServerError('ServiceUnavailable', 'down')}"
    )
    assert got[2][1].startswith("account=a region=r recovered after ")
