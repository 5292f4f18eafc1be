"""The TLS context every outgoing HTTPS client shares.

Each `httpx.Client` otherwise builds its own `ssl.SSLContext`, loading the whole CA bundle:
about 0.8 MiB and 10 ms of CPU apiece, which is 800 MiB and 10 s at 1,000 targets (one
client per account x region). One context serves any number of clients and threads
(httpx documents reusing one; OpenSSL's context is safe to share for making connections).
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Iterable

import certifi
import httpx

# What httpcore asks for on every connection it opens (no HTTP/2 here).
_ALPN = ("http/1.1",)


class SharedContext(ssl.SSLContext):
    """A client context whose ALPN list is set once.

    httpcore calls `set_alpn_protocols` on the context for every new connection. On a
    shared context that is a data race in C: CPython makes a connection (`SSL_new`, which
    copies the context's ALPN buffer) with the GIL released, while another thread's
    `set_alpn_protocols` frees and replaces that buffer. Asked again for the list it holds,
    this context changes nothing, so after the first call connections only read it.
    """

    _alpn: tuple[str, ...] | None = None

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        wanted = tuple(alpn_protocols)
        if wanted != self._alpn:
            super().set_alpn_protocols(wanted)
            self._alpn = wanted


@functools.cache
def shared_context() -> ssl.SSLContext:
    """The default verifying context, built once, as httpx builds its own: the CA file or
    directory of `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, else certifi's bundle."""
    context = SharedContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and hostnames
    if os.environ.get("SSL_CERT_FILE"):
        context.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
    elif os.environ.get("SSL_CERT_DIR"):
        context.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
    else:
        context.load_verify_locations(cafile=certifi.where())
    context.set_alpn_protocols(_ALPN)  # before any connection can be reading it
    return context


def api_client(
    transport: httpx.BaseTransport | None, timeout: float, user_agent: str
) -> httpx.Client:
    """An HTTPS client for an Alibaba Cloud API: the shared context, JSON answers, and no
    redirects (one would be followed unsigned, to another URL: it is an error instead)."""
    return httpx.Client(
        transport=transport,
        verify=shared_context(),
        timeout=timeout,
        headers={"accept": "application/json", "user-agent": user_agent},
        follow_redirects=False,
    )
