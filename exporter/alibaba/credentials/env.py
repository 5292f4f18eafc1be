"""Keys from the environment: `ALIBABA_CLOUD_ACCESS_KEY_ID`, `..._SECRET`, `..._SECURITY_TOKEN`."""

from __future__ import annotations

import os
from collections.abc import Mapping

from exporter.alibaba.credentials.base import (
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    ENV_SECURITY_TOKEN,
)
from exporter.alibaba.signing import Credential
from exporter.errors import CredentialsError


class EnvProvider:
    """`ALIBABA_CLOUD_ACCESS_KEY_ID`, `..._SECRET` and optional `ALIBABA_CLOUD_SECURITY_TOKEN`."""

    source = "env"

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env

    def get(self) -> Credential:
        access_key_id = self._env.get(ENV_ACCESS_KEY_ID, "")
        secret = self._env.get(ENV_ACCESS_KEY_SECRET, "")
        missing = [name for name, value in env_pair(access_key_id, secret) if not value]
        if missing:
            raise CredentialsError(f"environment: {' and '.join(missing)} not set")
        return Credential(access_key_id, secret, self._env.get(ENV_SECURITY_TOKEN) or None)

    def expiration(self) -> float | None:
        return None

    def invalidate(self) -> None:
        """Nothing to refresh: the environment is fixed for the life of the process."""


def env_pair(access_key_id: str, secret: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """(variable name, value) of the access key id and secret."""
    return ((ENV_ACCESS_KEY_ID, access_key_id), (ENV_ACCESS_KEY_SECRET, secret))
