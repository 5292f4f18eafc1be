"""Fixtures of the exporter.web tests: a fresh `FakeApp` and a client of a server for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import loopback
from tests.unit.web.fakes import FakeApp, serving


@pytest.fixture
def fake() -> FakeApp:
    return FakeApp()


@pytest.fixture
def client(fake: FakeApp) -> Iterator[httpx.Client]:
    with serving(fake.hooks()) as server, loopback.client(base_url=server.url, timeout=10) as c:
        yield c
