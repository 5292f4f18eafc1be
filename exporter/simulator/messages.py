"""Requests, answers and the error shape that every part of the simulator shares."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

# Named explicitly: under `python -m exporter.simulator` __name__ is "__main__", and every
# module of the package logs under this one name.
log = logging.getLogger("exporter.simulator")

JSON = "application/json;charset=utf-8"
REQUEST_LOG_SIZE = 1000
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z0-9]+)+$")


@dataclass(frozen=True)
class SimRequest:
    """One HTTP request as the server received it (the seam between HTTP and the logic)."""

    method: str
    target: str  # the raw request-target: path and query, undecoded
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    client: str = "127.0.0.1"

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for k, v in self.headers if k.lower() == lower]


@dataclass(frozen=True)
class SimResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    delay: float = 0.0  # seconds the server waits before sending (latency / hang knobs)
    # Set when the fault knobs are cleared: the rest of `delay` is not waited for.
    cut: threading.Event | None = None

    def json(self) -> Any:
        return json.loads(self.body)


class Reject(Exception):
    """An error answer in the gateway's shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: tuple[tuple[str, str], ...] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = dict(extra or {})

    def body(self, request_id: str, host_id: str, product: str) -> dict[str, Any]:
        """The JSON error body as the gateway answers it; `product` names the service in
        the troubleshooting link (Alb, Sts, ResourceDirectoryMaster)."""
        return {
            "RequestId": request_id,
            "HostId": host_id,
            "Code": self.code,
            "Message": self.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={self.code}"
            f"&product={product}&requestId={request_id}",
            **self.extra,
        }


def missing(name: str) -> Reject:
    return Reject(
        400,
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request '
        "is not supplied.",
    )


def dumps(value: Any) -> bytes:
    # UTF-8 like the real API; a lone surrogate a test put into a job (what a bad encoder
    # upstream produces) goes out as its JSON escape instead of failing the answer.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


def iso(ms: Any) -> Any:
    if not isinstance(ms, int):
        return ms
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def form_params(request: SimRequest) -> dict[str, str]:
    """The parameters of a form body (older SDKs and STS clients send them there), else {}."""
    content_type = (request.header("content-type") or "").lower()
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return {}
    return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
