"""Tests for exporter.alibaba.credentials.base: every provider keeps the protocol, and the
package stays free of prometheus_client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.alibaba.credentials import CredentialProvider, EnvProvider, StaticProvider
from exporter.config import CredentialsConfig
from tests.unit.alibaba.credentials.stand import ENV_FULL, KEY_ID, SECRET


def test_providers_satisfy_the_protocol() -> None:
    # Checked by mypy: assignment to the protocol type fails to type-check otherwise.
    providers: list[CredentialProvider] = [
        StaticProvider(CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET)),
        EnvProvider(ENV_FULL),
    ]
    assert [p.source for p in providers] == ["static", "env"]


def test_every_provider_has_invalidate() -> None:
    providers: list[CredentialProvider] = [
        StaticProvider(CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET)),
        EnvProvider(ENV_FULL),
    ]
    for provider in providers:
        provider.invalidate()
        assert provider.expiration() is None


@pytest.mark.e2e
def test_credentials_module_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, exporter.alibaba.credentials; "
        "sys.exit(1 if any(m.startswith('prometheus_client') for m in sys.modules) else 0)"
    )
    repo = Path(__file__).resolve().parents[4]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, check=False, timeout=60)
    assert result.returncode == 0
