"""ListAsynJobs over httpx: paging, retries, error mapping. Knows nothing of Prometheus.

One `ListAsynJobsClient` per (account, region) endpoint; it owns one `httpx.Client` so
connections are reused across pages and refreshes. Signing is the injected `httpx.Auth`.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Protocol

import httpx

from exporter.alibaba.api import (
    ACTION,
    EXPIRED_TOKEN_CODE,
    MAX_IDS_PER_CALL,
    MAX_PAGE_SIZE,
)
from exporter.alibaba.signing import Signer, canonical_query
from exporter.errors import (
    ApiError,
    AuthError,
    ExporterError,
    MalformedResponseError,
    PagingError,
    RequestError,
    RequestTimeoutError,
    ServerError,
    ThrottledError,
    TransportError,
)
from exporter.jobs.model import Job, JobQuery

MESSAGE_LIMIT = 300  # API messages can embed a whole string-to-sign; keep errors one-liners

# Called once per HTTP attempt with (code, seconds): code is "OK", the API error Code,
# "Timeout" or "TransportError"; seconds cover the request and its answer, not the pacing
# wait or a credential fetch. The composition root turns it into metrics.
RequestObserver = Callable[[str, float], None]


class RequestPacer(Protocol):
    """A request budget shared beyond this client (e.g. `ratelimit.TokenBucket`, one per
    account): `acquire()` blocks before every HTTP attempt, `throttled()` reports a
    Throttling answer and its `x-acs-retry-after` (seconds)."""

    def acquire(self) -> None: ...

    def throttled(self, retry_after: float | None) -> None: ...


log = logging.getLogger(__name__)

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


class ListAsynJobsClient:
    """Pages ListAsynJobs to the end for one endpoint, retrying transient failures.

    Retry delay for attempt n (0-based) is "equal jitter":
    `min(backoff_cap, backoff_base * 2**n) * (0.5 + rng() / 2)`, so at least half the
    exponential step is always waited (spreads concurrent targets without ever retrying
    immediately), raised to the server's `x-acs-retry-after` when that is longer. A
    retry-after longer than `backoff_cap` is not waited for: the error is raised so the
    refresh fails fast, and the next refresh tries again.

    Safe to share between threads: a listing keeps its state on the stack, and
    `httpx.Client` is thread-safe.
    """

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        page_size: int = 100,
        max_pages: int = 500,
        timeout: float = 10.0,
        observer: RequestObserver | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 3,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        rng: Callable[[], float] = random.random,
        user_agent: str = "alb-jobs-exporter",
        on_auth_expired: Callable[[], None] | None = None,
        pacer: RequestPacer | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        if max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, got {max_pages}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self._endpoint = _endpoint(base_url)
        self._auth = auth
        self._page_size = page_size
        self._max_pages = max_pages
        self._timeout = timeout
        self._observer = observer
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = rng
        # Called when the API says the security token expired; the request is then retried
        # once (with whatever credentials the signer gets next).
        self._on_auth_expired = on_auth_expired
        self._pacer = pacer
        self._http = httpx.Client(
            transport=transport,
            timeout=timeout,
            headers={"accept": "application/json", "user-agent": user_agent},
            # A redirect would be followed unsigned for a different URL; treat it as an error.
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ListAsynJobsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- listing -------------------------------------------------------------------------

    def list_jobs(self, query: JobQuery) -> list[Job]:
        """Every job matching `query`, de-duplicated by Id (last version seen wins).

        Raises an `ExporterError` subclass; a partial listing is never returned.
        """
        by_id: dict[str, Job] = {}
        for params in self._listings(query):
            for job in self._list_one(params):
                # Re-assigning an existing key keeps its first-seen position.
                by_id[job.id] = job
        return list(by_id.values())

    def _listings(self, query: JobQuery) -> Iterator[dict[str, str]]:
        """The filter parameters of each listing; long id lists are split into batches."""
        common: dict[str, str] = {"MaxResults": str(self._page_size)}
        if query.begin_time_ms is not None:
            common["BeginTime"] = str(query.begin_time_ms)
        if query.end_time_ms is not None:
            common["EndTime"] = str(query.end_time_ms)
        if query.resource_type:
            common["ResourceType"] = query.resource_type
        if query.api_name:
            common["ApiName"] = query.api_name
        # Filters are ANDed by the API, so the cross product of the batches covers exactly
        # the requested set; an empty id list is one "no filter" batch.
        for job_batch, resource_batch in itertools.product(
            _batches(query.job_ids), _batches(query.resource_ids)
        ):
            params = dict(common)
            params.update(_indexed("JobIds", job_batch))
            params.update(_indexed("ResourceIds", resource_batch))
            yield params

    def _list_one(self, filters: Mapping[str, str]) -> list[Job]:
        jobs: list[Job] = []
        used_tokens: set[str] = set()
        token: str | None = None
        for page in range(1, self._max_pages + 1):
            params = dict(filters)
            if token is not None:
                params["NextToken"] = token
            page_jobs, token = self._call(params)
            jobs.extend(page_jobs)
            if token is None:
                return jobs
            if token in used_tokens:
                raise PagingError(
                    f"{ACTION} returned a NextToken already used in this listing "
                    f"(after page {page}); stopped to avoid looping forever"
                )
            used_tokens.add(token)
        raise PagingError(
            f"{ACTION} stopped after {self._max_pages} pages; raise max_pages or narrow filters"
        )

    # --- one HTTP request, with retries ----------------------------------------------------

    def _call(self, params: Mapping[str, str]) -> tuple[list[Job], str | None]:
        """One page (jobs, next token), after at most `max_attempts` tries."""
        attempt = 0
        renewed = False
        while True:
            try:
                return self._attempt(params)
            except (ApiError, TransportError) as exc:
                if (
                    isinstance(exc, AuthError)
                    and exc.code == EXPIRED_TOKEN_CODE
                    and self._on_auth_expired is not None
                    and not renewed
                ):
                    renewed = True
                    log.info("%s: security token expired; refreshing credentials once", ACTION)
                    self._on_auth_expired()
                    continue
                attempt += 1
                retry_after = exc.retry_after if isinstance(exc, ApiError) else None
                if isinstance(exc, ThrottledError) and self._pacer is not None:
                    self._pacer.throttled(retry_after)
                if not exc.retryable or attempt >= self._max_attempts:
                    raise
                if retry_after is not None and retry_after > self._backoff_cap:
                    raise
                delay = self._backoff(attempt - 1, retry_after)
                log.debug(
                    "%s attempt %d failed (%s); retrying in %.3fs", ACTION, attempt, exc, delay
                )
                self._sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        step = min(self._backoff_cap, self._backoff_base * 2.0**attempt)
        delay = step * (0.5 + self._rng() / 2)
        return max(retry_after or 0.0, delay)

    def _attempt(self, params: Mapping[str, str]) -> tuple[list[Job], str | None]:
        # The query is built here, byte-exact and sorted, because the V3 signature covers it
        # and httpx's `params=` would encode spaces as "+". Secrets are added (V1) or put in
        # headers (V3) by the auth flow, which httpx runs afresh on every send: each attempt
        # gets a new nonce and date.
        url = f"{self._endpoint}?{canonical_query(params)}"
        if isinstance(self._auth, Signer):
            # A credential fetch (STS, instance metadata) can take seconds; it happens here,
            # untimed, so the observed duration is the API's latency alone.
            self._auth.prepare()
        if self._pacer is not None:
            self._pacer.acquire()
        started = time.perf_counter()
        try:
            response = self._http.post(url, content=b"", auth=self._auth)
        except httpx.TimeoutException as exc:
            self._observe(RequestTimeoutError.code, started)
            raise RequestTimeoutError(
                f"{ACTION} got no answer within {self._timeout:g}s ({type(exc).__name__})"
            ) from exc
        except httpx.RequestError as exc:
            # Covers connect/read failures, protocol errors and bad content-encoding.
            self._observe(TransportError.code, started)
            raise TransportError(
                f"{ACTION} request failed: {type(exc).__name__}: {_redact(str(exc))}"
            ) from exc
        try:
            # Parsed inside the attempt so a malformed 200 is observed as "TransportError".
            page = parse_page(_decode(response))
        except ExporterError as exc:
            self._observe(_code_of(exc), started)
            raise
        self._observe("OK", started)
        log.debug(
            "%s %s params=%s -> HTTP %d",
            ACTION,
            self._endpoint,
            sorted(params),  # names only: values are filters and opaque tokens
            response.status_code,
        )
        return page

    def _observe(self, code: str, started: float) -> None:
        if self._observer is not None:
            self._observer(code, time.perf_counter() - started)


# --- response decoding -------------------------------------------------------------------


def _decode(response: httpx.Response) -> Any:
    """The JSON body of a success answer; raises the mapped error for anything else."""
    status = response.status_code
    body, parse_problem = _json(response.content)
    code = _error_code(body)
    if 200 <= status < 300 and not (code and "Jobs" not in body):
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
        return json.loads(content), None
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, bad UTF-8 and over-long integer literals.
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
        _short(_redact(message or ""), MESSAGE_LIMIT),
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


# --- small helpers -----------------------------------------------------------------------


def _endpoint(base_url: str) -> str:
    """`scheme://host[:port]/path` from `base_url`, checked; the query is appended per call."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid base_url: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an http(s) URL with a host")
    if url.userinfo:
        # Never echo the URL here: the userinfo would be a secret.
        raise ValueError("base_url must not contain credentials")
    if url.query or url.fragment:
        raise ValueError("base_url must not have a query or fragment")
    path = url.raw_path.decode("ascii") or "/"
    return f"{url.scheme}://{url.netloc.decode('ascii')}{path}"


def _batches(ids: tuple[str, ...]) -> list[tuple[str, ...]]:
    unique = tuple(dict.fromkeys(ids))  # a repeated id would cost a slot and return nothing new
    if not unique:
        return [()]
    return [unique[i : i + MAX_IDS_PER_CALL] for i in range(0, len(unique), MAX_IDS_PER_CALL)]


def _indexed(name: str, values: tuple[str, ...]) -> dict[str, str]:
    """The API's list encoding: `Name.1=a&Name.2=b`, 1-based."""
    return {f"{name}.{i}": value for i, value in enumerate(values, start=1)}


def _first_str(body: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = body.get(key)
        if isinstance(value, str):
            return value
    return None


def _code_of(exc: ExporterError) -> str:
    code = getattr(exc, "code", TransportError.code)
    return code if isinstance(code, str) else TransportError.code


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


def _redact(text: str) -> str:
    text = _SECRET_PARAMS.sub(r"\1\2REDACTED", text)
    return _SECRET_HEADERS.sub(r"\1REDACTED", text)


def _positive_count(value: Any) -> bool:
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 18:
        value = int(value.strip())
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
