"""HTTP calls of the tests to their own servers on loopback (simulators, exporters).

`httpx.get()` and a bare `httpx.Client()` load the CA bundle into a new SSL context every
time: about 30 ms of CPU, which over the suite's thousands of calls was a large share of
its wall time. These make the same calls (a new client, so a new connection, per call)
with one context made once. TLS tests that need their own trust pass `verify=` themselves.
"""

from __future__ import annotations

from typing import Any

import httpx

TLS = httpx.create_ssl_context()


def client(**kwargs: Any) -> httpx.Client:
    """`httpx.Client(**kwargs)`, with the shared default SSL context unless `verify` is given."""
    return httpx.Client(**{"verify": TLS, **kwargs})


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """`httpx.request(...)`, with the shared default SSL context."""
    return httpx.request(method, url, **{"verify": TLS, **kwargs})


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def delete(url: str, **kwargs: Any) -> httpx.Response:
    return request("DELETE", url, **kwargs)
