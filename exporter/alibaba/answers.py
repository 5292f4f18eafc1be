"""Reading ListAsynJobs answers: error bodies mapped onto the error tree once, pages and
jobs parsed strictly, secrets redacted from anything that becomes a message."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Collection, Mapping
from typing import Any

import httpx

from exporter.errors import (
    ApiError,
    AuthError,
    MalformedResponseError,
    RequestError,
    ServerError,
    ThrottledError,
    TransportError,
)
from exporter.jobs.model import Job

MESSAGE_LIMIT = 300  # API messages can embed a whole string-to-sign; keep errors one-liners


# Error classification by `Code`. The HTTP status of a given code differs between doc pages
# (400/403/404/503 for the same code), so the status is only a fallback for unknown codes.
_THROTTLED_PREFIXES = ("Throttling",)


_THROTTLED_CODES = frozenset({"Rejected.Throttling"})


_SERVER_CODES = frozenset({"SystemBusy", "ServiceUnavailable", "InternalError", "UnknownError"})


_AUTH_PREFIXES = ("InvalidAccessKeyId", "InvalidTimeStamp", "InvalidSecurityToken", "Forbidden")


_AUTH_CODES = frozenset(
    {"SignatureDoesNotMatch", "IncompleteSignature", "SignatureNonceUsed", "MissingSecurityToken"}
)


# Codes become a metric label; an absurd one from a broken gateway must not bloat it.
_CODE_LIMIT = 100


# Error texts can echo secrets: V1 signing puts the token in the URL (httpx exception
# texts), and the gateway's SignatureDoesNotMatch message quotes its string to sign (V1:
# the query percent-encoded once more, "SecurityToken%3D...%26") or its canonical request
# (V3: the "x-acs-security-token:..." header line).
_SECRET_PARAMS = re.compile(
    r"(Signature|SecurityToken|AccessKeyId)(=|%3D|%253D)(?:(?!%26|%2526)[^&\s'\"])*"
)


_SECRET_HEADERS = re.compile(r"(x-acs-security-token:)\S*", re.IGNORECASE)


def classify(code: str, http_status: int | None) -> type[ApiError]:
    """The error class for an API error `Code`; the status only decides unknown codes."""
    if code in _THROTTLED_CODES or code.startswith(_THROTTLED_PREFIXES):
        return ThrottledError
    if code in _SERVER_CODES:
        return ServerError
    if code in _AUTH_CODES or code.startswith(_AUTH_PREFIXES):
        return AuthError
    if http_status is not None and http_status >= 500:
        # An unlisted code on a 5xx is still the server's fault (errors.ServerError covers
        # "5xx"); a known client-side code on a 5xx was classified above.
        return ServerError
    return RequestError


def decode_answer(response: httpx.Response, payload: str = "Jobs") -> Any:
    """The JSON body of a success answer; raises the mapped error for anything else.
    `payload` is the key a success answer of the action carries (ListAsynJobs: Jobs)."""
    status = response.status_code
    body, parse_problem = _json(response.content)
    code = _error_code(body)
    if 200 <= status < 300 and not (code and payload not in body):
        # A 2xx body carrying a Code but no Jobs is an error answer in disguise; reading it
        # as "no jobs" would make an outage look like a quiet account.
        if parse_problem is not None:
            raise MalformedResponseError(parse_problem)
        return body
    if code:
        raise _api_error(code, body, response)
    what = parse_problem or "a JSON body without an error Code"
    err = TransportError(f"HTTP {status} with {what}")
    # Gateways and proxies answer 5xx/408/429 transiently; any other status without an API
    # error body (a 404 page from a wrong endpoint) will not change on a retry.
    err.retryable = status >= 500 or status in (408, 429)
    raise err


def _json(content: bytes) -> tuple[Any, str | None]:
    """(value, None) or (None, problem)."""
    if not content.strip():
        return None, "an empty body"
    try:
        # A stray invalid byte in one job's ErrorMessage must not blind the whole target:
        # it becomes U+FFFD and the job is still counted (and its event written).
        return json.loads(content.decode("utf-8-sig", "replace")), None
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and over-long integer literals.
        return None, f"a non-JSON body ({len(content)} bytes: {_short(str(exc), 120)})"


def _error_code(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    code = body.get("Code", body.get("code"))
    if isinstance(code, str) and code.strip():
        return code.strip()[:_CODE_LIMIT]
    return None


def _api_error(code: str, body: dict[str, Any], response: httpx.Response) -> ApiError:
    message = _first_str(body, "Message", "message")
    request_id = _first_str(body, "RequestId", "requestId") or response.headers.get(
        "x-acs-request-id"
    )
    cls = classify(code, response.status_code)
    return cls(
        code,
        _short(redact(message or ""), MESSAGE_LIMIT),
        http_status=response.status_code,
        request_id=request_id or None,
        retry_after=_retry_after(response.headers.get("x-acs-retry-after")),
    )


def _retry_after(value: str | None) -> float | None:
    """`x-acs-retry-after` is milliseconds (as the official SDK reads it); junk is ignored."""
    # Bounded length: a hostile header must not reach int()'s digit limit or overflow.
    if value is None or not value.strip().isdecimal() or len(value.strip()) > 12:
        return None
    millis = int(value.strip())
    return millis / 1000 if millis > 0 else None


def parse_page(body: Any) -> tuple[list[Job], str | None]:
    """(jobs, next token or None) from a decoded 200 body; MalformedResponseError otherwise."""
    if not isinstance(body, dict):
        raise _malformed(f"body is a JSON {_kind(body)}, not an object")
    if "Jobs" not in body and "TotalCount" not in body:
        # Some other JSON object (a proxy's, a different API's): read as "no jobs", every
        # tracked Processing job would look vanished and the stuck-job alerts resolve.
        raise _malformed("neither Jobs nor TotalCount in the body")
    raw_jobs = body.get("Jobs")
    if raw_jobs is None:
        # An empty listing may come without Jobs, but not while TotalCount counts jobs: read
        # as "no jobs", a list lost by the server would zero the gauges and make every
        # tracked Processing job look vanished.
        if _positive_count(body.get("TotalCount")):
            raise _malformed(f"Jobs is {_kind(raw_jobs)} while TotalCount counts jobs")
        raw_jobs = []
    elif not isinstance(raw_jobs, list):
        raise _malformed(f"Jobs is a JSON {_kind(raw_jobs)}, not an array")
    token = body.get("NextToken")
    if token is not None and not isinstance(token, str):
        raise _malformed(f"NextToken is a JSON {_kind(token)}, not a string")
    jobs = [parse_job(raw, index) for index, raw in enumerate(raw_jobs)]
    return jobs, token or None


def total_count(body: Any) -> int | None:
    """`TotalCount` of a decoded answer when it is a count (an int, or a numeric string as
    NLB's same-named API sends it); None when absent or not a count."""
    value = body.get("TotalCount") if isinstance(body, dict) else None
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 18:
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def check_lookup_page(
    asked: Collection[str], jobs: list[Job], total: int | None, *, first: bool, last: bool
) -> None:
    """A page of a look-up by id (`JobIds.N`) that contradicts itself or the question is a
    MalformedResponseError: read as it stands, each asked id it lacks would be counted as
    vanished and its stuck-job series removed (issue 23: `Jobs: []` with `TotalCount: 5`).

    Whether `TotalCount` counts the whole listing or the page is unconfirmed
    (alibaba-api.md): every check here is a contradiction under either reading.
    """
    strangers = [job.id for job in jobs if job.id not in asked]
    if strangers:
        raise _malformed(
            f"a look-up by id answered job {_short(strangers[0], 80)!r}, which it was not asked"
        )
    if total is None:
        return
    if total > len(asked):
        raise _malformed(f"a look-up of {len(asked)} ids says TotalCount {total}")
    if first and len(jobs) > total:
        raise _malformed(f"a look-up page holds {len(jobs)} jobs but says TotalCount {total}")
    if first and total > 0 and not jobs:
        raise _malformed(f"a look-up answered no jobs while TotalCount says {total}")
    if first and last and len(jobs) != total:
        raise _malformed(f"a look-up answered {len(jobs)} jobs while TotalCount says {total}")


def check_lookup_total(asked: Collection[str], found: int, total: int | None) -> None:
    """A look-up that paged to its end with fewer distinct jobs than its first page's
    `TotalCount` omitted ids it said it had (the pages themselves were well-formed)."""
    if total is not None and found < total:
        raise _malformed(
            f"a look-up of {len(asked)} ids answered {found} jobs over its pages "
            f"while TotalCount says {total}"
        )


def parse_job(raw: Any, index: int = 0) -> Job:
    """One `Jobs[]` entry. Id, Status and CreateTime are required; unknown fields ignored."""
    where = f"Jobs[{index}]"
    if not isinstance(raw, dict):
        raise _malformed(f"{where} is a JSON {_kind(raw)}, not an object")
    job_id = _text(raw, "Id", where)
    status = _text(raw, "Status", where)
    if not job_id or not status:
        missing = "Id" if not job_id else "Status"
        raise _malformed(f"{where} has no {missing}")
    create_time = _seconds(raw.get("CreateTime"), f"{where}.CreateTime")
    if create_time is None:
        raise _malformed(f"{where}.CreateTime is missing")
    # ModifyTime may be absent while a job is still running; its creation is the last change.
    modify_time = _seconds(raw.get("ModifyTime"), f"{where}.ModifyTime")
    # The label fields take few distinct values but json.loads makes a new string for every
    # occurrence: interned, 100k jobs held take about a third less memory.
    return Job(
        id=job_id,
        api_name=sys.intern(_text(raw, "ApiName", where)),
        operate_type=sys.intern(_text(raw, "OperateType", where)),
        resource_type=sys.intern(_text(raw, "ResourceType", where)),
        resource_id=_text(raw, "ResourceId", where),
        status=sys.intern(status),
        error_code=sys.intern(_text(raw, "ErrorCode", where)),
        error_message=_text(raw, "ErrorMessage", where),
        create_time=create_time,
        modify_time=create_time if modify_time is None else modify_time,
    )


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    """A string field; missing/null is "", an integer is accepted (ErrorCode "506" vs 506)."""
    value = raw.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _malformed(f"{where}.{key} is a JSON {_kind(value)}, not a string")


def _seconds(value: Any, where: str) -> float | None:
    """Epoch milliseconds (number or numeric string) as float seconds; None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _malformed(f"{where} is a JSON {_kind(value)}, not epoch milliseconds")
    try:
        millis = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise _malformed(f"{where} is {_short(repr(value), 40)}, not epoch milliseconds") from None
    if not math.isfinite(millis) or millis < 0:
        raise _malformed(f"{where} is {_short(repr(value), 40)}, not epoch milliseconds")
    return millis / 1000


def _first_str(body: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = body.get(key)
        if isinstance(value, str):
            return value
    return None


def _malformed(message: str) -> MalformedResponseError:
    return MalformedResponseError(message, retryable=False)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact(text: str) -> str:
    text = _SECRET_PARAMS.sub(r"\1\2REDACTED", text)
    return _SECRET_HEADERS.sub(r"\1REDACTED", text)


def _positive_count(value: Any) -> bool:
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 18:
        value = int(value.strip())
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
