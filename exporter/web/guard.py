"""The limits that keep one hostile client from costing the exporter more than a socket.

uvicorn's HTTP/1.1 protocol reads requests on the event loop, so an idle or slow
connection holds no thread; what it lacks, added here: a read deadline for a request's
head and body (slowloris), 414 / 431 for an oversized request line / header block, a
deadline for answers the client never reads.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one connection may use. Sizes in bytes, times in seconds."""

    #: From accepting a connection (or answering its previous request) until the
    #: request's head and body are in: an idle or trickling client is closed after it.
    read_timeout: float = 10.0
    #: Idle keep-alive connections are closed after this.
    keep_alive: float = 5.0
    #: An answer the client does not read within this is dropped with its connection.
    send_timeout: float = 30.0
    #: The same once the server is stopping: a client that does not read must not hold
    #: up the drain (and with it the state flush) for the whole send timeout.
    drain_send_timeout: float = 1.0
    #: The request line (method, target, version); longer: 414.
    max_request_line: int = 8 * 1024
    #: Request line and headers together; longer: 431.
    max_head: int = 16 * 1024
    #: Request body (no route needs one); a longer Content-Length: 413.
    max_body: int = 64 * 1024
    #: Answers sent but not yet taken by their clients, all connections together; over
    #: it, the connection stalled the longest is dropped (never the one that has just
    #: stalled: a single answer bigger than this still goes to a slow reader).
    max_unsent: int = 64 << 20
    #: Open connections. One more closes the one idle the longest (no request in
    #: progress); when every one is busy, the newcomer gets 503. A request on an open
    #: connection is never refused.
    max_connections: int = 10_000


def _refusal(status: HTTPStatus, message: str) -> bytes:
    body = (message + "\n").encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the read deadline, head-size and send limits."""

    limits: Limits = Limits()  # set per server by `protocol_for`
    #: The server's connections with no request in progress, idle the longest first (a
    #: dict for its order); one per server, made by `protocol_for`.
    idle: ClassVar[dict[GuardedH11Protocol, None]] = {}
    #: The server's connections with output not yet sent, stalled the longest first, and
    #: how many bytes each had left when last looked at; one per server.
    unsent: ClassVar[_Unsent]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._eof = False  # the client has half-closed: close once its answer is sent

    # --- read deadline --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read()
        self.idle[self] = None
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._read_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self.idle.pop(self, None)
        self.unsent.forget(self)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request (handle_events)
        self._arm_read()  # the next request's head is due within the deadline too
        if self.transport.get_write_buffer_size() > 0:
            self._arm_send()
            self._note_unsent()
        if self._eof and not self._in_progress():
            self.transport.close()
        if not self._in_progress() and not self.transport.is_closing():
            self.idle.pop(self, None)
            self.idle[self] = None  # idle from now: the youngest

    def handle_events(self) -> None:
        # Here, not in data_received: a pipelined request's head, which came in with the
        # one before, is looked at once that one is answered (h11 would say 400).
        if self.conn.their_state is h11.IDLE and not self._head_fits():
            return
        super().handle_events()
        if self._in_progress():
            self.idle.pop(self, None)

    def _in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    # --- the connection cap ---------------------------------------------------------

    def _make_room(self) -> None:
        """Over the cap by this new connection: close the longest idle, else refuse this."""
        oldest = next(iter(self.idle))
        if oldest is self:  # every other connection has a request in progress
            self.idle.pop(self)
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "too many open connections")
            return
        logger.debug(
            "%d connections open: closing the one idle the longest, from %s",
            len(self.connections),
            peer(oldest.client),
        )
        self.idle.pop(oldest)
        oldest._drop()

    def _arm_read(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
        self._read_timer = self.loop.call_later(self.limits.read_timeout, self._read_expired)

    def _read_expired(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE):
            # The request is in; its answer is on the way (and re-arms). MUST_CLOSE is
            # what h11 says after a whole `Connection: close` or HTTP/1.0 request.
            return
        logger.debug(
            "closing connection from %s: no complete request within %gs",
            peer(self.client),
            self.limits.read_timeout,
        )
        self._drop()

    def _drop(self) -> None:
        # close() would wait for a client that does not read to take the buffered answer.
        if self.transport.get_write_buffer_size() > 0 or self.conn.their_state is h11.SEND_BODY:
            self.transport.abort()
        else:
            self.transport.close()

    def eof_received(self) -> bool | None:  # type: ignore[override]
        # A client that sends its request and then its end of the stream (`nc`, some
        # health checkers) still reads the answer: keep the connection until it is sent.
        # A TLS transport cannot be half-closed, and the answer is then lost anyway.
        if self._in_progress() and self.transport.get_extra_info("sslcontext") is None:
            self._eof = True
            return True
        return None

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self._drop()

    def shutdown(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # in flight: answered, then closed
        elif self.transport.get_write_buffer_size() == 0:
            self.transport.close()  # idle: nothing to finish
            return
        else:
            self.transport.close()  # answered, still being read: closed once it is
        if self.flow.write_paused or self.transport.get_write_buffer_size() > 0:
            self._arm_send(min(self.limits.send_timeout, self.limits.drain_send_timeout))

    # --- sizes of the head -----------------------------------------------------------

    def _head_fits(self) -> bool:
        """False (answered and closed) when the pending request head is over a limit."""
        pending = self.conn.trailing_data[0]  # at most max_head and one read: see below
        line_end = pending.find(b"\n", 0, self.limits.max_request_line + 2)
        if line_end < 0 and len(pending) > self.limits.max_request_line + 1:
            self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            return False
        if pending.find(b"\r\n\r\n", 0, self.limits.max_head + 4) >= 0:
            return True
        if len(pending) > self.limits.max_head:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request header too large")
            return False
        return True

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        logger.debug("refused a request from %s: %s", peer(self.client), message)
        self.transport.write(_refusal(status, message))
        self.transport.pause_reading()
        self.transport.close()
        self._arm_send()

    # --- answers the client does not read --------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm_send()
        self._note_unsent()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.unsent.note(self, self.transport.get_write_buffer_size())
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _arm_send(self, timeout: float | None = None) -> None:
        """Start the send deadline; a shorter `timeout` replaces one already running."""
        timeout = self.limits.send_timeout if timeout is None else timeout
        if self._send_timer is not None:
            if self._send_timer.when() <= self.loop.time() + timeout:
                return
            self._send_timer.cancel()
        self._send_timer = self.loop.call_later(timeout, self._send_expired)

    def _note_unsent(self) -> None:
        """Count this connection's unsent output; over `max_unsent` in all, drop the
        connections stalled the longest (their clients are not reading)."""
        unsent = self.unsent
        unsent.note(self, self.transport.get_write_buffer_size())
        while unsent.total > self.limits.max_unsent:
            oldest = next(iter(unsent.sizes))
            if oldest is self:
                return
            unsent.forget(oldest)
            if oldest.transport.get_write_buffer_size() > 0:
                logger.debug(
                    "dropping connection from %s: %d bytes of answers are unread in all",
                    peer(oldest.client),
                    unsent.total,
                )
                oldest.transport.abort()

    def _send_expired(self) -> None:
        self._send_timer = None
        if self.transport.get_write_buffer_size() > 0 or self.flow.write_paused:
            logger.debug(
                "dropping connection from %s: answer not read within %gs",
                peer(self.client),
                self.limits.send_timeout,
            )
            self.transport.abort()


class _Unsent:
    """Output not yet taken by clients: per connection (oldest first) and in total."""

    def __init__(self) -> None:
        self.sizes: dict[GuardedH11Protocol, int] = {}
        self.total = 0

    def note(self, connection: GuardedH11Protocol, size: int) -> None:
        self.forget(connection)
        if size > 0:
            self.sizes[connection] = size
            self.total += size

    def forget(self, connection: GuardedH11Protocol) -> None:
        self.total -= self.sizes.pop(connection, 0)


GuardedH11Protocol.unsent = _Unsent()


def protocol_for(limits: Limits) -> type[GuardedH11Protocol]:
    """A protocol class bound to `limits`, with its own books of idle connections and
    unsent output (uvicorn builds one instance per connection)."""
    shared = {"limits": limits, "idle": {}, "unsent": _Unsent()}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), shared)


def peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"
