"""Tests for exporter.alibaba.credentials.static: inline keys and secret files re-read
when they change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.alibaba.credentials import StaticProvider
from exporter.alibaba.signing import Credential
from exporter.config import CredentialsConfig
from exporter.errors import CredentialsError
from tests.unit.alibaba.credentials.stand import KEY_ID, SECRET, TOKEN, write


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
