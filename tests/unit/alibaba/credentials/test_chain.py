"""Tests for exporter.alibaba.credentials.chain: provider_for, the default chain's order
and what it lists as tried, the lazily tried links, and explicit config."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from exporter.alibaba.credentials import provider_for
from exporter.alibaba.signing import Credential
from exporter.config import CredentialsConfig, parse
from exporter.errors import CredentialsError
from tests.unit.alibaba.credentials.stand import (
    ENV_FULL,
    IMDS_URL,
    KEY_ID,
    NO_NETWORK_SOURCES,
    OIDC_ENV,
    OIDC_PROVIDER_ARN,
    OIDC_TOKEN,
    OTHER_ROLE_ARN,
    ROLE_ARN,
    SECRET,
    STS_URL,
    T0,
    TOKEN,
    Stand,
    account,
    ecs_env,
    levels,
    write,
    write_cli_config,
    write_ini,
)

# --- provider_for ------------------------------------------------------------------------


def test_explicit_config_wins_over_env() -> None:
    config = CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET)
    provider = provider_for(account(config), ENV_FULL)
    assert provider.source == "static"
    assert provider.get() == Credential(KEY_ID, SECRET, None)


def test_env_when_no_config() -> None:
    provider = provider_for(account(), ENV_FULL)
    assert provider.source == "env"
    assert provider.get().access_key_id == "LTAI5tFROMENV0000"


def test_provider_for_errors_name_the_account(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "secret", SECRET)
    config = CredentialsConfig(access_key_id=KEY_ID, access_key_secret_file=str(secret_file))
    provider = provider_for(account(config), {})
    secret_file.unlink()
    with pytest.raises(
        CredentialsError, match=r"^account prod: credentials\.access_key_secret_file"
    ):
        provider.get()


def test_no_source_lists_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), {**NO_NETWORK_SOURCES, "HOME": str(tmp_path)})
    assert str(excinfo.value) == (
        "account prod: no credentials found; tried: config 'credentials' (not set), "
        "environment ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET (not set), "
        "OIDC ALIBABA_CLOUD_ROLE_ARN/ALIBABA_CLOUD_OIDC_PROVIDER_ARN/"
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE (not set), "
        f'CLI profile "{tmp_path}/.aliyun/config.json" (not found), '
        f'credentials file "{tmp_path}/.alibabacloud/credentials.ini" (not found), '
        f'credentials file "{tmp_path}/.alibabacloud/credentials" (not found), '
        "ECS instance metadata (disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED), "
        "ALIBABA_CLOUD_CREDENTIALS_URI (not set)"
    )


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID}, "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}, "ALIBABA_CLOUD_ACCESS_KEY_ID"),
        (
            {"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""},
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        ),
    ],
)
def test_half_set_environment_says_which_half_and_no_value(
    env: dict[str, str], missing: str
) -> None:
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), {**env, **NO_NETWORK_SOURCES})
    message = str(excinfo.value)
    assert message.startswith(
        "account prod: no credentials found; tried: config 'credentials' (not set), "
        "environment ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET "
        f"({missing} not set), OIDC "
    )
    assert KEY_ID not in message and SECRET not in message


# --- default chain order -----------------------------------------------------------------


def test_chain_order(stand: Stand, tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", OIDC_TOKEN)
    home = tmp_path / "home"
    write_cli_config(
        home,
        [
            {
                "name": "default",
                "mode": "AK",
                "access_key_id": "LTAI5tCLI000",
                "access_key_secret": "c",
            }
        ],
    )
    write_ini(home, "[default]\naccess_key_id = LTAI5tINI000\naccess_key_secret = i\n")
    oidc = {**OIDC_ENV, "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file)}
    base = {"HOME": str(home), **NO_NETWORK_SOURCES}

    assert stand.provider(None, {**base, **oidc, **ENV_FULL}).source == "env"
    assert stand.provider(None, {**base, **oidc}).source == "oidc_role_arn"
    assert stand.provider(None, base).get().access_key_id == "LTAI5tCLI000"
    no_cli = {**base, "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true"}
    assert stand.provider(None, no_cli).get().access_key_id == "LTAI5tINI000"


def test_half_set_oidc_environment_is_named(tmp_path: Path) -> None:
    env = {**OIDC_ENV, **NO_NETWORK_SOURCES, "HOME": str(tmp_path)}
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), env)
    assert "OIDC ALIBABA_CLOUD_ROLE_ARN/ALIBABA_CLOUD_OIDC_PROVIDER_ARN/" in str(excinfo.value)
    assert "(ALIBABA_CLOUD_OIDC_TOKEN_FILE not set)" in str(excinfo.value)


def test_oidc_env_session_name(stand: Stand, tmp_path: Path) -> None:
    env = {
        **OIDC_ENV,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(write(tmp_path / "t", OIDC_TOKEN)),
        "ALIBABA_CLOUD_ROLE_SESSION_NAME": "rrsa-session",
    }
    stand.provider(None, env).get()
    assert stand.calls()[0]["session_name"] == "rrsa-session"


# --- the lazily tried end of the chain ---------------------------------------------------


def test_lazily_tried_chain_links_fail_quietly(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    caplog.set_level(logging.DEBUG, logger="exporter.alibaba.credentials")
    provider = provider_for(
        account(),
        {"ALIBABA_CLOUD_ECS_METADATA_ENDPOINT": IMDS_URL},
        transport=httpx.MockTransport(refuse),
    )
    with pytest.raises(CredentialsError):
        provider.get()
    assert levels(caplog) and set(levels(caplog)) == {"DEBUG"}


def test_a_chosen_chain_link_failing_is_a_fault_not_a_probe(
    stand: Stand, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.alibaba.credentials")
    stand.sim.set_identity(imds_role="ExporterRole", sts_ttl=60)
    provider = stand.provider(None, env=ecs_env(HOME="/nonexistent-home"))
    first = provider.get()
    assert provider.source == "ecs_ram_role"
    caplog.clear()

    stand.sim.set_identity(imds_role=None)  # the role is detached from the instance
    stand.clock.advance(45)  # due for refresh, still valid
    assert provider.get() is first

    assert levels(caplog) == ["WARNING"]
    assert "no RAM role is attached" in caplog.records[0].getMessage()


def test_lazy_chain_tries_metadata_then_uri_and_sticks_to_the_winner(stand: Stand) -> None:
    stand.sim.set_identity(imds_role="ExporterRole")
    env = ecs_env(HOME="/nonexistent-home", ALIBABA_CLOUD_CREDENTIALS_URI=STS_URL)
    provider = stand.provider(None, env=env)
    assert provider.get().security_token
    assert provider.source == "ecs_ram_role"


def test_lazy_chain_lists_everything_tried(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    provider = provider_for(
        account(), ecs_env(HOME=str(tmp_path)), transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    message = str(excinfo.value)
    assert message.startswith("account prod: no credentials found; tried: config")
    assert message.endswith(
        "ALIBABA_CLOUD_CREDENTIALS_URI (not set), ECS instance metadata (ecs_ram_role: "
        f"ECS instance metadata {IMDS_URL}: no answer in time (ConnectTimeout))"
    )


# --- explicit config, end to end through the config loader -------------------------------


def test_config_types_build_the_expected_providers(stand: Stand, tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", OIDC_TOKEN)
    text = f"""
accounts:
  - name: prod
    regions: [cn-hangzhou]
    credentials:
      type: ram_role_arn
      role_arn: {ROLE_ARN}
      external_id: ext-id-1
      duration: 15m
      sts_endpoint: {STS_URL}
      source:
        type: oidc_role_arn
        role_arn: {OTHER_ROLE_ARN}
        oidc_provider_arn: {OIDC_PROVIDER_ARN}
        oidc_token_file: {token_file}
        sts_endpoint: {STS_URL}
  - name: legacy
    regions: [cn-hangzhou]
    credentials:
      access_key_id: {KEY_ID}
      access_key_secret: {SECRET}
      security_token: {TOKEN}
"""
    cfg = parse(text, {})
    prod, legacy = (
        provider_for(a, {}, transport=stand.transport, clock=stand.clock) for a in cfg.accounts
    )
    assert prod.get().expiration == T0 + 900
    assert [(c["action"], c["role_arn"]) for c in stand.calls()] == [
        ("AssumeRoleWithOIDC", OTHER_ROLE_ARN),
        ("AssumeRole", ROLE_ARN),
    ]
    assert legacy.source == "static" and legacy.get() == Credential(KEY_ID, SECRET, TOKEN)


def test_every_credentials_type_has_one_builder() -> None:
    # The config's block, the CLI profile and the INI profile build through one table;
    # `profile` alone is resolved to one of the others.
    from exporter.alibaba.credentials.build import BUILDERS
    from exporter.config import CREDENTIAL_TYPES

    assert {*BUILDERS, "profile"} == set(CREDENTIAL_TYPES)
