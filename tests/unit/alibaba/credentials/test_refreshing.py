"""Tests for exporter.alibaba.credentials.refreshing: refresh timing, single-flight,
backoff, once-per-kind logging and forced refreshes."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.signing import make_signer
from exporter.errors import CredentialsError
from exporter.jobs.model import JobQuery
from exporter.simulator import Simulator
from tests.unit.alibaba.credentials.stand import (
    KEY_ID,
    OIDC_TOKEN,
    SECRET,
    T0,
    FakeClock,
    Stand,
    levels,
    oidc_config,
    sim_transport,
    write,
)

# --- refresh timing ----------------------------------------------------------------------


def test_refresh_happens_ahead_of_expiry_and_not_before(stand: Stand, tmp_path: Path) -> None:
    stand.sim.set_identity(sts_ttl=3600)
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    first = provider.get()

    stand.clock.advance(3600 - 15 * 60 - 1)  # 15 min + 1 s before expiry: still fresh
    assert provider.get() is first
    stand.clock.advance(1)  # 15 min left: refreshed
    assert provider.get() is not first
    assert len(stand.calls("AssumeRoleWithOIDC")) == 2


def test_short_lived_credentials_refresh_at_two_thirds_of_their_life(
    stand: Stand, tmp_path: Path
) -> None:
    stand.sim.set_identity(sts_ttl=30)
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    first = provider.get()
    stand.clock.advance(19.9)
    assert provider.get() is first
    stand.clock.advance(0.2)
    assert provider.get() is not first


# --- single-flight, backoff and logging --------------------------------------------------


def test_single_flight_one_sts_call_for_many_concurrent_callers(tmp_path: Path) -> None:
    clock = FakeClock()
    sim = Simulator(credentials={KEY_ID: SECRET}, clock=clock)
    stand = Stand(sim, clock, sim_transport(sim, delay=0.2))
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    barrier = threading.Barrier(8)

    def worker() -> str:
        barrier.wait()
        return provider.get().access_key_id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: worker(), range(8)))

    assert len(ids) == 1
    assert len(stand.calls("AssumeRoleWithOIDC")) == 1


def test_failed_refresh_backs_off_and_keeps_valid_credentials(
    stand: Stand, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stand.sim.set_identity(sts_ttl=60)
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    first = provider.get()
    stand.sim.set_identity(sts_error="ServiceUnavailable")
    stand.clock.advance(45)  # due for refresh, 15 s of validity left

    assert provider.get() is first  # refresh failed: the still-valid credential is kept
    assert provider.get() is first  # backing off: no second call yet
    assert len(stand.calls("AssumeRoleWithOIDC")) == 2
    assert "still using the current credentials" in caplog.text

    stand.clock.advance(1)  # first backoff step is 1 s
    assert provider.get() is first
    assert len(stand.calls("AssumeRoleWithOIDC")) == 3
    stand.clock.advance(1)  # second step is 2 s: not yet
    provider.get()
    assert len(stand.calls("AssumeRoleWithOIDC")) == 3

    stand.sim.set_identity(sts_error=None)
    stand.clock.advance(1)
    assert provider.get() is not first
    assert [e[1] for e in stand.events] == ["OK", "ServiceUnavailable", "ServiceUnavailable", "OK"]


def test_expired_and_unrefreshable_raises_the_last_error_without_calling_again(
    stand: Stand, tmp_path: Path
) -> None:
    stand.sim.set_identity(sts_error="Throttling.User")
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    with pytest.raises(CredentialsError, match=r"Throttling\.User"):
        provider.get()
    with pytest.raises(CredentialsError, match=r"Throttling\.User"):
        provider.get()
    assert len(stand.calls()) == 1


def test_fetch_failures_warn_once_per_kind_then_log_at_debug(
    stand: Stand, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.alibaba.credentials")
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))

    def fail(times: int) -> None:
        for _ in range(times):
            with pytest.raises(CredentialsError):
                provider.get()
            stand.clock.advance(61)  # past the longest backoff step: the next get() fetches

    stand.sim.set_identity(sts_error="ServiceUnavailable")
    fail(4)  # STS down: one warning, then debug however long it lasts
    stand.sim.set_identity(sts_error="Throttling.User")
    fail(2)  # another kind of failure: warned again
    assert len(stand.calls()) == 6
    assert levels(caplog) == ["WARNING", "DEBUG", "DEBUG", "DEBUG", "WARNING", "DEBUG"]
    assert "ServiceUnavailable" in caplog.records[0].getMessage()

    caplog.clear()
    stand.sim.set_identity(sts_error=None)
    provider.get()  # the recovery
    (record,) = caplog.records
    assert record.levelname == "INFO"
    assert "obtained after 6 failed attempts" in record.getMessage()

    caplog.clear()
    stand.clock.advance(3600)  # expired: due again, and STS is down again
    stand.sim.set_identity(sts_error="ServiceUnavailable")
    fail(2)
    assert levels(caplog) == ["WARNING", "DEBUG"]  # a new outage is warned about afresh


def test_losing_the_still_valid_credential_is_warned_about(
    stand: Stand, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.alibaba.credentials")
    stand.sim.set_identity(sts_ttl=60)
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    first = provider.get()
    caplog.clear()
    stand.sim.set_identity(sts_error="ServiceUnavailable")

    stand.clock.advance(45)  # due, 15 s of validity left
    assert provider.get() is first
    stand.clock.advance(1)
    assert provider.get() is first
    stand.clock.advance(20)  # expired: the targets of this account are down now
    with pytest.raises(CredentialsError):
        provider.get()

    assert levels(caplog) == ["WARNING", "DEBUG", "WARNING"]
    assert "still using the current credentials" in caplog.records[0].getMessage()
    assert "still using" not in caplog.records[2].getMessage()


# --- forced refresh ----------------------------------------------------------------------


def test_invalidate_forces_one_refresh(stand: Stand, tmp_path: Path) -> None:
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    first = provider.get()
    provider.invalidate()  # right after a fetch: other regions' failures must not refetch
    assert provider.get() is first
    stand.clock.advance(5)
    provider.invalidate()
    provider.invalidate()
    second = provider.get()
    assert second is not first and provider.get() is second
    assert len(stand.calls()) == 2


def test_client_retries_once_after_an_expired_token(stand: Stand, tmp_path: Path) -> None:
    # The gateway's clock runs ahead: it considers the token expired before we do.
    stand.sim.set_identity(sts_ttl=600)
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    provider.get()
    stand.sim.sts_tokens = {
        token: (key, secret, T0 - 1) for token, (key, secret, _) in stand.sim.sts_tokens.items()
    }
    stand.clock.advance(5)
    codes: list[str] = []
    with ListAsynJobsClient(
        "http://127.0.0.1:11/cn-hangzhou/",
        make_signer(
            "v3", provider.get, action="ListAsynJobs", version="2020-06-16", clock=stand.clock
        ),
        transport=stand.transport,
        observer=lambda code, _: codes.append(code),
        on_auth_expired=provider.invalidate,
    ) as client:
        client.list_jobs(JobQuery())
    # One rejected attempt, then the retry and every further page with the new token.
    assert codes[0] == "InvalidSecurityToken.Expired" and set(codes[1:]) == {"OK"}
    assert len(stand.calls("AssumeRoleWithOIDC")) == 2
