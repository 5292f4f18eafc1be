"""Tests for exporter.alibaba.credentials.uri: ALIBABA_CLOUD_CREDENTIALS_URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.alibaba.credentials import provider_for
from exporter.alibaba.signing import Credential
from exporter.errors import CredentialsError
from tests.unit.alibaba.credentials.stand import NO_NETWORK_SOURCES, T0, FakeClock, account


def uri_transport(body: dict[str, Any], status: int = 200) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body))


def test_credentials_uri_in_the_chain() -> None:
    body = {
        "Code": "Success",
        "AccessKeyId": "STS.uri",
        "AccessKeySecret": "uri-secret",
        "SecurityToken": "uri-token",
        "Expiration": "2023-11-14T23:13:20Z",  # T0 + 3600
    }
    env = {
        **NO_NETWORK_SOURCES,
        "ALIBABA_CLOUD_CREDENTIALS_URI": "http://127.0.0.1:12/creds",
    }
    clock = FakeClock()
    provider = provider_for(account(), env, transport=uri_transport(body), clock=clock)
    assert provider.source == "default_chain"  # not known before the first get()
    assert provider.get() == Credential("STS.uri", "uri-secret", "uri-token", T0 + 3600)
    assert provider.source == "credentials_uri"


def test_credentials_uri_failure_is_in_the_tried_list(tmp_path: Path) -> None:
    env = {
        **NO_NETWORK_SOURCES,
        "HOME": str(tmp_path),
        "ALIBABA_CLOUD_CREDENTIALS_URI": "http://127.0.0.1:12/creds",
    }
    provider = provider_for(account(), env, transport=uri_transport({"Code": "Failed"}, status=500))
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert str(excinfo.value).endswith(
        "ALIBABA_CLOUD_CREDENTIALS_URI (credentials_uri: credentials URI "
        "(ALIBABA_CLOUD_CREDENTIALS_URI): HTTP 500, Code 'Failed')"
    )
