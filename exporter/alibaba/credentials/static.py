"""Long-lived keys (or a fixed STS token) from the config, inline or from files re-read
when they change."""

from __future__ import annotations

import threading

from exporter.alibaba.credentials.base import SecretFile, resolve
from exporter.alibaba.signing import Credential
from exporter.config import CredentialsConfig
from exporter.errors import CredentialsError


class StaticProvider:
    """Long-lived keys (or a fixed STS token) from the config: inline values and/or files.

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

    def _part(self, inline: str | None, file_path: str | None, key: str) -> str | SecretFile | None:
        if file_path:
            return SecretFile(file_path, f"{self._context}.{key}_file")
        return inline or None

    def get(self) -> Credential:
        with self._lock:
            access_key_id = resolve(self._id)
            secret = resolve(self._secret)
            token = resolve(self._token)
        if access_key_id is None or secret is None:  # ruled out by __init__
            raise CredentialsError(f"{self._context}: access key id or secret missing")
        return Credential(access_key_id, secret, token)

    def expiration(self) -> float | None:
        return None

    def invalidate(self) -> None:
        """Nothing to refresh: long-lived keys are what they are."""
