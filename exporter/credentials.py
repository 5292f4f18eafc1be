"""Where an account's access key comes from: explicit config (inline or files), else env vars.

`provider_for` walks an ordered chain of sources, the first that applies wins; later
sources of the Alibaba default chain (OIDC/RRSA, profiles, ECS RAM role) slot into
`_CHAIN`. Error messages list what was tried and never contain secret values.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from exporter.config import AccountConfig, CredentialsConfig
from exporter.errors import CredentialsError
from exporter.signing import Credential

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"


class CredentialProvider(Protocol):
    """Hands out the credential to sign with; called before every request, so it is cheap."""

    source: str  # short, stable label for metrics: "static", "env", ...

    def get(self) -> Credential:
        """The current credential; raises CredentialsError when none can be obtained."""
        ...

    def expiration(self) -> float | None:
        """Unix time at which the current credential expires; None for long-lived keys."""
        ...


@dataclass(frozen=True)
class _FileVersion:
    # Kubernetes rotates a mounted secret by swapping a symlink: the inode changes, and
    # mtime alone can be too coarse on some filesystems.
    mtime_ns: int
    inode: int
    size: int


class _SecretFile:
    """One secret file, re-read only when it changes."""

    def __init__(self, path: str, key_path: str) -> None:
        self.path = path
        self.key_path = key_path
        self._version: _FileVersion | None = None
        self._value = ""

    def read(self) -> str:
        """The stripped contents; the caller holds the provider's lock."""
        try:
            info = os.stat(self.path)
            version = _FileVersion(info.st_mtime_ns, info.st_ino, info.st_size)
            if version == self._version:
                return self._value
            with open(self.path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise CredentialsError(
                f'{self.key_path}: cannot read "{self.path}": {exc.strerror or type(exc).__name__}'
            ) from None
        try:
            # Secrets are written with `echo` or by editors: a trailing newline is not part of it.
            value = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CredentialsError(f'{self.key_path}: "{self.path}" is not UTF-8 text') from None
        if not value:
            raise CredentialsError(f'{self.key_path}: "{self.path}" is empty')
        self._version, self._value = version, value
        return value


class StaticProvider:
    """Long-lived keys from the config: inline values and/or `*_file` paths.

    Files are re-read when they change, so a rotated Kubernetes secret is used without a
    restart. Safe to call from several refresh threads at once.
    """

    source = "static"

    def __init__(self, config: CredentialsConfig, *, context: str = "credentials") -> None:
        # `context` prefixes error messages, e.g. "account prod: credentials".
        self._context = context
        self._lock = threading.Lock()
        self._id = self._part(config.access_key_id, config.access_key_id_file, "access_key_id")
        self._secret = self._part(
            config.access_key_secret, config.access_key_secret_file, "access_key_secret"
        )
        self._token = self._part(
            config.security_token, config.security_token_file, "security_token"
        )
        if self._id is None or self._secret is None:
            raise CredentialsError(
                f"{context}: both access_key_id (or access_key_id_file) and "
                "access_key_secret (or access_key_secret_file) are required"
            )

    def _part(
        self, inline: str | None, file_path: str | None, key: str
    ) -> str | _SecretFile | None:
        if file_path:
            return _SecretFile(file_path, f"{self._context}.{key}_file")
        return inline or None

    def get(self) -> Credential:
        with self._lock:
            access_key_id = _resolve(self._id)
            secret = _resolve(self._secret)
            token = _resolve(self._token)
        if access_key_id is None or secret is None:  # ruled out by __init__
            raise CredentialsError(f"{self._context}: access key id or secret missing")
        return Credential(access_key_id, secret, token)

    def expiration(self) -> float | None:
        return None


def _resolve(part: str | _SecretFile | None) -> str | None:
    return part.read() if isinstance(part, _SecretFile) else part


class EnvProvider:
    """`ALIBABA_CLOUD_ACCESS_KEY_ID`, `..._SECRET` and optional `ALIBABA_CLOUD_SECURITY_TOKEN`."""

    source = "env"

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env

    def get(self) -> Credential:
        access_key_id = self._env.get(ENV_ACCESS_KEY_ID, "")
        secret = self._env.get(ENV_ACCESS_KEY_SECRET, "")
        missing = [name for name, value in _env_pair(access_key_id, secret) if not value]
        if missing:
            raise CredentialsError(f"environment: {' and '.join(missing)} not set")
        return Credential(access_key_id, secret, self._env.get(ENV_SECURITY_TOKEN) or None)

    def expiration(self) -> float | None:
        return None


def _env_pair(access_key_id: str, secret: str) -> tuple[tuple[str, str], tuple[str, str]]:
    return ((ENV_ACCESS_KEY_ID, access_key_id), (ENV_ACCESS_KEY_SECRET, secret))


# A chain link: the provider when the source applies, else why it does not (for the error).
_Source = Callable[[AccountConfig, Mapping[str, str]], "CredentialProvider | str"]


def _from_config(account: AccountConfig, env: Mapping[str, str]) -> CredentialProvider | str:
    if account.credentials is None:
        return "config 'credentials' (not set)"
    return StaticProvider(account.credentials, context=f"account {account.name}: credentials")


def _from_env(account: AccountConfig, env: Mapping[str, str]) -> CredentialProvider | str:
    pair = _env_pair(env.get(ENV_ACCESS_KEY_ID, ""), env.get(ENV_ACCESS_KEY_SECRET, ""))
    missing = [name for name, value in pair if not value]
    if not missing:
        return EnvProvider(env)
    detail = "not set" if len(missing) == 2 else f"{missing[0]} not set"
    return f"environment {ENV_ACCESS_KEY_ID}/{ENV_ACCESS_KEY_SECRET} ({detail})"


_CHAIN: tuple[_Source, ...] = (_from_config, _from_env)


def provider_for(account: AccountConfig, env: Mapping[str, str]) -> CredentialProvider:
    """The first applicable source for `account`; CredentialsError listing every source tried."""
    tried: list[str] = []
    for source in _CHAIN:
        outcome = source(account, env)
        if not isinstance(outcome, str):
            return outcome
        tried.append(outcome)
    raise CredentialsError(
        f"account {account.name}: no credentials found; tried: {', '.join(tried)}"
    )
