"""Tests for exporter.alibaba.credentials.env: keys from the environment."""

from __future__ import annotations

import pytest

from exporter.alibaba.credentials import EnvProvider
from exporter.alibaba.signing import Credential
from exporter.errors import CredentialsError
from tests.unit.alibaba.credentials.stand import ENV_FULL, KEY_ID, TOKEN


def test_env_provider() -> None:
    provider = EnvProvider(ENV_FULL)
    assert provider.source == "env"
    assert provider.get() == Credential("LTAI5tFROMENV0000", "env-secret", None)
    assert provider.expiration() is None


def test_env_provider_with_token() -> None:
    env = {**ENV_FULL, "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN}
    assert EnvProvider(env).get().security_token == TOKEN
    assert (
        EnvProvider({**ENV_FULL, "ALIBABA_CLOUD_SECURITY_TOKEN": ""}).get().security_token is None
    )


def test_env_provider_reads_the_mapping_on_each_call() -> None:
    env = dict(ENV_FULL)
    provider = EnvProvider(env)
    env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = "rotated"
    assert provider.get().access_key_secret == "rotated"


def test_env_provider_missing_variable() -> None:
    provider = EnvProvider({"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID})
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert str(excinfo.value) == "environment: ALIBABA_CLOUD_ACCESS_KEY_SECRET not set"


def test_env_provider_defaults_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tPROCESS0000")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "process-secret")
    monkeypatch.delenv("ALIBABA_CLOUD_SECURITY_TOKEN", raising=False)
    assert EnvProvider().get() == Credential("LTAI5tPROCESS0000", "process-secret", None)
