"""Cancelling HTTP calls in flight, which closing an `httpx.Client` does not do.

A thread blocked reading an answer (a hung API, a silent STS) is not woken by closing
httpx's connection pool; it waits out its timeout, and SIGTERM must not. httpx's `trace`
request extension names each socket as it connects; `cancel()` shuts them down, which
wakes the reader at once, and refuses the calls that start later.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from typing import Any

import httpx

from exporter.alibaba.tls import api_client


class Cancel:
    """The sockets of the calls made with `extensions`; `cancel()` ends them all."""

    def __init__(self) -> None:
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._cancelled = False
        # Passed to every request: `client.post(..., extensions=cancel.extensions)`.
        self.extensions: dict[str, Any] = {"trace": self._trace}

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Shut down every socket opened so far and any opened from now on."""
        with self._lock:
            self._cancelled = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        # connect_tcp, and start_tls (whose socket replaces the TCP one) return the stream.
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                with self._lock:
                    self._sockets.add(sock)
                    late = self._cancelled  # cancelled while this connection was made
                if late:
                    _shutdown(sock)


class CancellableClient:
    """An `api_client` whose `close()` also ends the calls in flight: they fail at once
    instead of waiting out the timeout (stopping must not wait on a hung API)."""

    def __init__(
        self, transport: httpx.BaseTransport | None, timeout: float, user_agent: str
    ) -> None:
        self._cancel = Cancel()
        self._http = api_client(transport, timeout, user_agent)

    @property
    def cancelled(self) -> bool:
        return self._cancel.cancelled

    def post(self, url: str, auth: httpx.Auth) -> httpx.Response:
        """POST `url` with an empty body (the parameters are in the query), signed by `auth`."""
        return self._http.post(url, content=b"", auth=auth, extensions=self._cancel.extensions)

    def close(self) -> None:
        self._cancel.cancel()
        self._http.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)
