"""Faults of the API and its credentials: throttling, 5xx, hanging calls, bad or expired keys.

The world the tests run in (processes, drivers, checks) is world.py.
"""

from __future__ import annotations

from itertools import pairwise

import pytest

from tests.e2e.faults.world import (
    FAULTED,
    REQUEST_TIMEOUT,
    STS,
    WRONG_SECRET,
    Suite,
    absorbed,
    check_no_secret_in_any_log_line_or_answer,
    outage,
    sts_episode,
)

# timing: while a call hangs, scrapes answer at the deadline the exporter keeps (SCRAPE_TIMEOUT
# minus its 0.5 s offset), a few tenths of a second inside the bound Suite.scrape checks.
pytestmark = [pytest.mark.e2e, pytest.mark.timing]


# --- API error faults ---------------------------------------------------------------------


def test_throttling_storm_every_call(suite: Suite) -> None:
    outage(suite, "Throttling.User", throttle=1.0)


def test_throttling_storm_with_retry_after_header(suite: Suite) -> None:
    # 300 ms is within the client's backoff cap (5 s): waited for, then still failing. The
    # backoff alone would retry after 0.1-0.2 s.
    ep = outage(suite, "Throttling.User", throttle=1.0, retry_after_ms=300)
    log = [
        r
        for r in suite.control("GET", f"/_sim/requests?region={FAULTED[1]}")
        if r["time"] >= ep.since
    ]
    waits = [b["time"] - a["time"] for a, b in pairwise(log) if a["code"] == "Throttling.User"]
    assert waits and min(waits) >= 0.29, waits


def test_throttling_every_third_call_is_absorbed_by_retries(suite: Suite) -> None:
    absorbed(suite, "Throttling.User", throttle_every=3)


@pytest.mark.parametrize("error_code", ["ServiceUnavailable", "InternalError"])
def test_5xx_burst(suite: Suite, error_code: str) -> None:
    outage(suite, error_code, error_rate=1.0, error_code=error_code)


def test_every_other_call_5xx_is_absorbed_by_retries(suite: Suite) -> None:
    absorbed(suite, "SystemBusy", error_every=2, error_code="SystemBusy")


# --- transport faults ---------------------------------------------------------------------


def test_call_hanging_past_the_timeout(suite: Suite) -> None:
    # Every scrape still answers within the scrape timeout (checked in Suite.scrape) while
    # each attempt waits REQUEST_TIMEOUT for nothing.
    outage(suite, "Timeout", cause="no answer within 2s", hang=REQUEST_TIMEOUT + 1.0)


def test_wrong_secret_is_logged_once_not_every_scrape(suite: Suite) -> None:
    creds = suite.issue_sts(3600)
    _, logs = sts_episode(
        suite, "SignatureDoesNotMatch", lambda: suite.write_sts(creds, WRONG_SECRET)
    )
    tag = f"account={STS[0]} region={STS[1]}"
    mentions = [line for line in logs if tag in line and "SignatureDoesNotMatch" in line]
    # ... but is logged once at error, with the code; repeats (within 5 minutes) at debug.
    assert len([line for line in mentions if "level=error" in line]) == 1
    assert len(mentions) >= 4


def test_expired_sts_token(suite: Suite) -> None:
    # The exporter holds a token that expires (the STS refresh flow itself is issue #5).
    _, logs = sts_episode(
        suite, "InvalidSecurityToken.Expired", lambda: suite.write_sts(suite.issue_sts(0))
    )
    tag = f"account={STS[0]} region={STS[1]}"
    errors = [line for line in logs if "level=error" in line and tag in line]
    assert len(errors) == 1 and "InvalidSecurityToken.Expired" in errors[0], errors


# --- secrets (keep last: it checks everything this module produced) ----------------------


def test_no_secret_or_token_in_any_log_line_answer_or_error(suite: Suite) -> None:
    check_no_secret_in_any_log_line_or_answer(suite)
