"""Raw-socket HTTP/1.1 of the exporter.web limit tests: what a hostile or odd client sends
is spelled out byte for byte, and one socket is one connection (no client library that
reconnects on its own)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from exporter.web import Server


def connect(server: Server, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def status(answer: bytes) -> int:
    assert answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), answer[:80]
    return int(answer.split(b" ", 2)[1])


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def ask(server: Server, request: bytes) -> bytes:
    """Send `request` raw and read the answer until the server closes."""
    with connect(server) as sock:
        sock.sendall(request)
        return read_to_eof(sock)


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """One answer (status, body) read off a keep-alive connection, by its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer's head: {data[:80]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of an answer's body"
        body += chunk
    assert len(body) == length, "more bytes than Content-Length (nothing was pipelined)"
    return status(head), body


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True once the server closes `sock` (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    """Poll `condition` (cheap, in-process) until true; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(0.005)
