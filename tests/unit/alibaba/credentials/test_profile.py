"""Tests for exporter.alibaba.credentials.profile: aliyun CLI profiles and the
credentials file."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.alibaba.credentials import CredentialProvider, provider_for
from exporter.alibaba.signing import Credential
from exporter.config import CredentialsConfig
from exporter.errors import CredentialsError
from tests.unit.alibaba.credentials.stand import (
    KEY_ID,
    NO_NETWORK_SOURCES,
    OIDC_PROVIDER_ARN,
    OIDC_TOKEN,
    OTHER_ROLE_ARN,
    ROLE_ARN,
    SECRET,
    T0,
    TOKEN,
    Stand,
    account,
    ecs_env,
    write,
    write_cli_config,
    write_ini,
)

# --- aliyun CLI profiles -----------------------------------------------------------------


def test_cli_profile_modes(stand: Stand, tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", OIDC_TOKEN)
    stand.sim.set_identity(imds_role="EcsRole")
    profiles = [
        {"name": "ak", "mode": "AK", "access_key_id": KEY_ID, "access_key_secret": SECRET},
        {
            "name": "sts",
            "mode": "StsToken",
            "access_key_id": KEY_ID,
            "access_key_secret": SECRET,
            "sts_token": TOKEN,
        },
        {
            "name": "role",
            "mode": "RamRoleArn",
            "access_key_id": KEY_ID,
            "access_key_secret": SECRET,
            "ram_role_arn": ROLE_ARN,
            "ram_session_name": "cli-session",
            "expired_seconds": 900,
        },
        {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "EcsRole"},
        {
            "name": "oidc",
            "mode": "OIDC",
            "ram_role_arn": ROLE_ARN,
            "oidc_provider_arn": OIDC_PROVIDER_ARN,
            "oidc_token_file": str(token_file),
        },
        {
            "name": "chain",
            "mode": "ChainableRamRoleArn",
            "source_profile": "oidc",
            "ram_role_arn": OTHER_ROLE_ARN,
        },
    ]
    write_cli_config(tmp_path, profiles, current="ak")
    env = ecs_env(HOME=str(tmp_path))

    def via(name: str) -> CredentialProvider:
        return stand.provider(CredentialsConfig(type="profile", profile=name), env=env)

    assert via("ak").get() == Credential(KEY_ID, SECRET, None)
    assert stand.provider(None, env).get() == Credential(KEY_ID, SECRET, None)  # `current`
    assert via("sts").get() == Credential(KEY_ID, SECRET, TOKEN)
    role = via("role").get()
    assert role.expiration == T0 + 900
    assert stand.calls("AssumeRole")[-1]["session_name"] == "cli-session"
    assert via("ecs").source == "ecs_ram_role" and via("ecs").get().security_token
    assert via("oidc").get().security_token
    chained = via("chain")
    chained.get()
    assert stand.calls("AssumeRole")[-1]["role_arn"] == OTHER_ROLE_ARN
    assert stand.calls("AssumeRole")[-1]["caller"].startswith("STS.")


def test_cli_profile_selected_by_env_and_unsupported_modes(stand: Stand, tmp_path: Path) -> None:
    write_cli_config(
        tmp_path,
        [
            {"name": "a", "mode": "AK", "access_key_id": KEY_ID, "access_key_secret": SECRET},
            {"name": "sso", "mode": "CloudSSO"},
        ],
    )
    env = {"HOME": str(tmp_path), "ALIBABA_CLOUD_PROFILE": "sso"}
    with pytest.raises(CredentialsError) as excinfo:
        stand.provider(None, env)
    assert str(excinfo.value) == (
        f'account prod: CLI profile file "{tmp_path}/.aliyun/config.json" profile "sso": '
        "mode 'CloudSSO' is not supported"
    )


def test_cli_profile_missing_field_never_shows_values(tmp_path: Path) -> None:
    write_cli_config(tmp_path, [{"name": "default", "mode": "AK", "access_key_id": SECRET}])
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), {"HOME": str(tmp_path)})
    assert str(excinfo.value).endswith('profile "default": access_key_secret is missing')
    assert SECRET not in str(excinfo.value)


# --- credentials file (INI) --------------------------------------------------------------


def test_ini_profiles(stand: Stand, tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", OIDC_TOKEN)
    stand.sim.set_identity(imds_role="EcsRole")
    write_ini(
        tmp_path,
        f"""
[default]
type = access_key                  # inline comments are stripped
access_key_id = {KEY_ID}
access_key_secret = {SECRET}

[role]
type = ram_role_arn
access_key_id = {KEY_ID}
access_key_secret = {SECRET}
role_arn = {ROLE_ARN}
role_session_name = ini-session

[oidc]
type = oidc_role_arn
role_arn = {ROLE_ARN}
oidc_provider_arn = {OIDC_PROVIDER_ARN}
oidc_token_file_path = {token_file}

[ecs]
type = ecs_ram_role
role_name = EcsRole

[rsa]
type = rsa_key_pair
""",
        name="credentials",  # the Go SDK's file name
    )
    env = ecs_env(HOME=str(tmp_path), ALIBABA_CLOUD_CLI_PROFILE_DISABLED="true")

    assert stand.provider(None, env).get() == Credential(KEY_ID, SECRET, None)
    role = stand.provider(None, {**env, "ALIBABA_CLOUD_PROFILE": "role"})
    assert role.source == "ram_role_arn" and role.get().security_token
    assert stand.calls("AssumeRole")[-1]["session_name"] == "ini-session"
    assert stand.provider(None, {**env, "ALIBABA_CLOUD_PROFILE": "oidc"}).get().security_token
    assert stand.provider(None, {**env, "ALIBABA_CLOUD_PROFILE": "ecs"}).get().security_token
    with pytest.raises(CredentialsError, match="type 'rsa_key_pair' is not supported"):
        stand.provider(None, {**env, "ALIBABA_CLOUD_PROFILE": "rsa"})


def test_credentials_file_from_env_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "creds.ini"
    env = {"ALIBABA_CLOUD_CREDENTIALS_FILE": str(missing), "HOME": str(tmp_path)}
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), env)
    assert str(excinfo.value) == (
        f'account prod: ALIBABA_CLOUD_CREDENTIALS_FILE: credentials file "{missing}" (not found)'
    )


def test_broken_ini_is_an_error_without_its_contents(tmp_path: Path) -> None:
    path = write_ini(tmp_path, f"access_key_secret = {SECRET}\n[default\n")
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), {"HOME": str(tmp_path), **NO_NETWORK_SOURCES})
    assert str(excinfo.value) == (
        f'account prod: credentials file "{path}": not valid INI (MissingSectionHeaderError)'
    )


def test_profile_type_not_found(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(
            account(CredentialsConfig(type="profile", profile="prod")), {"HOME": str(tmp_path)}
        )
    assert str(excinfo.value) == (
        "account prod: credentials: profile not found; tried: "
        f'CLI profile "{tmp_path}/.aliyun/config.json" (not found), '
        f'credentials file "{tmp_path}/.alibabacloud/credentials.ini" (not found), '
        f'credentials file "{tmp_path}/.alibabacloud/credentials" (not found)'
    )
