"""Runs a WSGI app under uvicorn: the event loop reads the request body (bounded), one
worker thread runs the app and collects its whole answer, the loop sends it.

One hand-off each way per request: a bridge that streams (a2wsgi) crosses threads for
every message, and under load each crossing waits for the loop's turn at the GIL.
Our routes answer with one short body, so collecting it in the worker costs nothing.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from http import HTTPStatus
from typing import Any
from wsgiref.types import WSGIApplication

from exporter.web.guard import peer

logger = logging.getLogger(__name__)

Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
_Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
#: What `_body` returns for a request whose client disconnected before its body was in.
_GONE = b"<gone>"


class WSGIBridge:
    """An ASGI app serving `app` on `executor`; a body over `max_body` bytes gets 413."""

    def __init__(self, app: WSGIApplication, executor: Executor, max_body: int) -> None:
        self.app = app
        self.executor = executor
        self.max_body = max_body

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await self._body(scope, receive)
        if body is _GONE:
            return  # the client left (or was cut by the read deadline) mid-body
        if body is None:
            await _send(send, *_too_large())
            _access(scope, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        environ = _environ(scope, body)
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self.executor, _run, self.app, environ)
        except asyncio.CancelledError:
            # Only the server's drain cancels, past its deadline, once it has aborted the
            # connection and logged why; uvicorn would log this as a crash, traceback and all.
            return
        await _send(send, *answer)
        _access(scope, answer[0])

    async def _body(self, scope: dict[str, Any], receive: Receive) -> bytes | None:
        """The whole request body; None when it is longer than `max_body`, `_GONE` when
        the client disconnected before it was in."""
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_body):
                return None
        body = bytearray()
        while True:
            message: Message = await receive()
            if message["type"] != "http.request":
                # Disconnected before the body was whole: the app must not act on a
                # truncated request (a POST /-/reload cut by the read deadline).
                return _GONE
            body += message.get("body", b"")
            if len(body) > self.max_body:
                return None
            if not message.get("more_body", False):
                return bytes(body)


def _too_large() -> _Answer:
    text = b"request body too large\n"
    return (
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE.value,
        [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(text)).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"connection", b"close"),  # the rest of the body is not read
        ],
        text,
    )


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _run(app: WSGIApplication, environ: dict[str, Any]) -> _Answer:
    """Call `app` (in a worker thread) and collect its answer."""
    started: list[tuple[str, list[tuple[str, str]]]] = []
    chunks: list[bytes] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [(status, headers)]
        return chunks.append

    result: Iterable[bytes] = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not started:
        raise RuntimeError("the WSGI app did not call start_response")
    status, headers = started[0]
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    return int(status.split(" ", 1)[0]), raw, b"".join(chunks)


def _environ(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        # PEP 3333: the path's bytes as latin-1 text (uvicorn has percent-decoded it).
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0] if client else "",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if scope.get("scheme") == "https":
        environ["HTTPS"] = "on"
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        if name in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is whole by now: CONTENT_LENGTH above is its length
        key = name if name == "CONTENT_TYPE" else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _access(scope: dict[str, Any], status: int) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        client = scope.get("client")
        logger.debug(
            '%s "%s %s" %d',
            peer(tuple(client) if client else None),
            scope["method"],
            scope["path"],
            status,
        )
