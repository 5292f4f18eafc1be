"""Tests for exporter.credentials: static (inline and files, with rotation), env, and the chain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import AccountConfig, CredentialsConfig
from exporter.credentials import (
    CredentialProvider,
    EnvProvider,
    StaticProvider,
    provider_for,
)
from exporter.errors import CredentialsError
from exporter.signing import Credential

KEY_ID = "LTAI5tEXAMPLE1234"
SECRET = "Zx9secretSECRETsecret0123456789"
TOKEN = "CAIS-sts-token-value"
ENV_FULL = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tFROMENV0000",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret",
}


def account(credentials: CredentialsConfig | None = None) -> AccountConfig:
    return AccountConfig(name="prod", regions=("cn-hangzhou",), credentials=credentials)


def write(path: Path, text: str, mtime_ns: int | None = None) -> Path:
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


# --- StaticProvider --------------------------------------------------------------------


def test_static_inline() -> None:
    provider = StaticProvider(CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET))

    assert provider.source == "static"
    assert provider.get() == Credential(KEY_ID, SECRET, None)
    assert provider.expiration() is None


def test_static_inline_with_token() -> None:
    config = CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET, security_token=TOKEN)
    assert StaticProvider(config).get() == Credential(KEY_ID, SECRET, TOKEN)


def test_static_files_are_stripped(tmp_path: Path) -> None:
    config = CredentialsConfig(
        access_key_id_file=str(write(tmp_path / "id", f"{KEY_ID}\n")),
        access_key_secret_file=str(write(tmp_path / "secret", f"  {SECRET}\r\n\n")),
        security_token_file=str(write(tmp_path / "token", f"{TOKEN}\n")),
    )
    assert StaticProvider(config).get() == Credential(KEY_ID, SECRET, TOKEN)


def test_static_mixes_inline_and_files(tmp_path: Path) -> None:
    config = CredentialsConfig(
        access_key_id=KEY_ID, access_key_secret_file=str(write(tmp_path / "s", SECRET))
    )
    assert StaticProvider(config).get() == Credential(KEY_ID, SECRET, None)


def test_static_file_rotation_is_picked_up(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "secret", "old-secret\n", mtime_ns=1_700_000_000_000_000_000)
    provider = StaticProvider(
        CredentialsConfig(access_key_id=KEY_ID, access_key_secret_file=str(secret_file))
    )
    assert provider.get().access_key_secret == "old-secret"

    write(secret_file, "new-secret\n", mtime_ns=1_700_000_060_000_000_000)

    assert provider.get().access_key_secret == "new-secret"


def test_static_file_is_not_reread_while_unchanged(tmp_path: Path) -> None:
    mtime = 1_700_000_000_000_000_000
    secret_file = write(tmp_path / "secret", "secret-one\n", mtime_ns=mtime)
    provider = StaticProvider(
        CredentialsConfig(access_key_id=KEY_ID, access_key_secret_file=str(secret_file))
    )
    assert provider.get().access_key_secret == "secret-one"

    # Same inode, size and mtime: the cached value stands (no read per request).
    write(secret_file, "secret-two\n", mtime_ns=mtime)

    assert provider.get().access_key_secret == "secret-one"


def test_static_kubernetes_style_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    # A mounted Secret: key -> ..data/key, ..data -> ..<timestamp>; updates swap ..data.
    mtime = 1_700_000_000_000_000_000
    for version, value in (("..v1", "first-secret"), ("..v2", "second-secret")):
        (tmp_path / version).mkdir()
        write(tmp_path / version / "access_key_secret", f"{value}\n", mtime_ns=mtime)
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "access_key_secret").symlink_to("..data/access_key_secret")
    provider = StaticProvider(
        CredentialsConfig(
            access_key_id=KEY_ID, access_key_secret_file=str(tmp_path / "access_key_secret")
        )
    )
    assert provider.get().access_key_secret == "first-secret"

    (tmp_path / "..data_tmp").symlink_to("..v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    assert provider.get().access_key_secret == "second-secret"


def test_static_missing_file_names_key_and_path(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "secret", SECRET)
    provider = StaticProvider(
        CredentialsConfig(access_key_id=KEY_ID, access_key_secret_file=str(secret_file)),
        context="account prod: credentials",
    )
    provider.get()
    secret_file.unlink()

    with pytest.raises(CredentialsError) as excinfo:
        provider.get()

    assert str(excinfo.value) == (
        f'account prod: credentials.access_key_secret_file: cannot read "{secret_file}": '
        "No such file or directory"
    )


def test_static_empty_file_is_an_error(tmp_path: Path) -> None:
    id_file = write(tmp_path / "id", "\n \n")
    provider = StaticProvider(
        CredentialsConfig(access_key_id_file=str(id_file), access_key_secret=SECRET)
    )
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert str(excinfo.value) == f'credentials.access_key_id_file: "{id_file}" is empty'


def test_static_error_never_contains_file_contents(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(SECRET.encode() + b"\xff\n")
    provider = StaticProvider(
        CredentialsConfig(
            access_key_id=KEY_ID, access_key_secret=SECRET, security_token_file=str(token_file)
        )
    )
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert (
        str(excinfo.value) == f'credentials.security_token_file: "{token_file}" is not UTF-8 text'
    )
    assert SECRET not in str(excinfo.value)


def test_static_requires_id_and_secret() -> None:
    with pytest.raises(CredentialsError) as excinfo:
        StaticProvider(CredentialsConfig(access_key_id=KEY_ID), context="account a: credentials")
    assert str(excinfo.value) == (
        "account a: credentials: both access_key_id (or access_key_id_file) and "
        "access_key_secret (or access_key_secret_file) are required"
    )
    assert KEY_ID not in str(excinfo.value)


# --- EnvProvider -----------------------------------------------------------------------


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


# --- provider_for ----------------------------------------------------------------------


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


def test_no_source_lists_what_was_tried() -> None:
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), {})
    assert str(excinfo.value) == (
        "account prod: no credentials found; tried: config 'credentials' (not set), "
        "environment ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET (not set)"
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
        provider_for(account(), env)
    message = str(excinfo.value)
    assert message == (
        "account prod: no credentials found; tried: config 'credentials' (not set), "
        "environment ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET "
        f"({missing} not set)"
    )
    assert KEY_ID not in message and SECRET not in message


def test_providers_satisfy_the_protocol() -> None:
    # Checked by mypy: assignment to the protocol type fails to type-check otherwise.
    providers: list[CredentialProvider] = [
        StaticProvider(CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET)),
        EnvProvider(ENV_FULL),
    ]
    assert [p.source for p in providers] == ["static", "env"]


def test_credentials_module_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, exporter.credentials; "
        "sys.exit(1 if any(m.startswith('prometheus_client') for m in sys.modules) else 0)"
    )
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, check=False, timeout=60)
    assert result.returncode == 0
