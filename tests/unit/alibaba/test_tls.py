"""Outgoing HTTPS clients share one TLS context (exporter.alibaba.tls).

A context loads the whole CA bundle: at 1,000 targets one per client cost 800 MiB of RSS
and 10 s of start-up CPU, found by the 1,000-target bench.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from exporter.alibaba import tls
from exporter.alibaba.client import ListAsynJobsClient


@pytest.fixture
def bundle_loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ssl.SSLContext]]:
    made: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        context = real(*args, **kwargs)  # type: ignore[arg-type]
        made.append(context)
        return context

    monkeypatch.setattr(ssl, "create_default_context", counting)
    tls.shared_context.cache_clear()
    yield made
    tls.shared_context.cache_clear()


def test_many_clients_load_the_ca_bundle_once(bundle_loads: list[ssl.SSLContext]) -> None:
    clients = [
        ListAsynJobsClient(f"https://alb.cn-region{i}.aliyuncs.com", httpx.Auth())
        for i in range(50)
    ]
    try:
        assert len(bundle_loads) == 1
    finally:
        for client in clients:
            client.close()


def test_the_shared_context_verifies_certificates(bundle_loads: list[ssl.SSLContext]) -> None:
    context = tls.shared_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0
