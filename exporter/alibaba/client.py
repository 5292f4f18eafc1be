"""ListAsynJobs over httpx: paging, retries, error mapping. Knows nothing of Prometheus.

One `ListAsynJobsClient` per (account, region) endpoint; it owns one `httpx.Client` so
connections are reused across pages and refreshes. Signing is the injected `httpx.Auth`.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from exporter.alibaba.answers import (
    check_lookup_page,
    check_lookup_total,
    decode_answer,
    parse_page,
    redact,
    total_count,
)
from exporter.alibaba.cancel import CancellableClient
from exporter.alibaba.signing import Signer, canonical_query
from exporter.errors import (
    ApiError,
    AuthError,
    CancelledError,
    ExporterError,
    PagingError,
    RequestTimeoutError,
    ThrottledError,
    TransportError,
)
from exporter.jobs.model import Job, JobQuery
from exporter.wire import (
    ACTION,
    EXPIRED_TOKEN_CODE,
    MAX_IDS_PER_CALL,
    MAX_PAGE_SIZE,
)

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
        self._host = urlsplit(self._endpoint).netloc
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
        self._http = CancellableClient(transport, timeout, user_agent)

    def close(self) -> None:
        """Close the connections and cancel the calls in flight: they raise
        `CancelledError` at once instead of waiting out `request_timeout` (SIGTERM must
        not wait for a hung API). Nothing is retried or observed after this."""
        self._http.close()

    def __enter__(self) -> ListAsynJobsClient:
        return self

    def __exit__(self, *exc: object) -> None:
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
        asked = _asked_ids(filters)
        first_total: int | None = None
        for page in range(1, self._max_pages + 1):
            params = dict(filters)
            if token is not None:
                params["NextToken"] = token
            page_jobs, token, total = self._call(params)
            if page == 1:
                first_total = total
            jobs.extend(page_jobs)
            if token is None:
                if asked:
                    check_lookup_total(asked, len({job.id for job in jobs}), first_total)
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

    def _call(self, params: Mapping[str, str]) -> tuple[list[Job], str | None, int | None]:
        """One page (jobs, next token, TotalCount), after at most `max_attempts` tries."""
        attempt = 0
        renewed = False
        while True:
            try:
                return self._attempt(params)
            except CancelledError:
                raise
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

    def _attempt(self, params: Mapping[str, str]) -> tuple[list[Job], str | None, int | None]:
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
        if self._http.cancelled:
            raise CancelledError(f"{ACTION} cancelled: the exporter is shutting down")
        started = time.perf_counter()
        try:
            response = self._post(url)
        except httpx.TimeoutException as exc:
            self._observe(RequestTimeoutError.code, started)
            raise RequestTimeoutError(
                f"{ACTION} to {self._host} got no answer within {self._timeout:g}s"
                f" ({type(exc).__name__})"
            ) from exc
        except httpx.RequestError as exc:
            # Covers connect/read failures, protocol errors and bad content-encoding.
            self._observe(TransportError.code, started)
            # The host: a DNS error ("Name or service not known") does not say which name,
            # and a region typo shows in it (alb.cn-hangzou.aliyuncs.com).
            raise TransportError(
                f"{ACTION} request to {self._host} failed: {type(exc).__name__}: {redact(str(exc))}"
            ) from exc
        try:
            # Parsed inside the attempt so a malformed 200 is observed as "MalformedResponse".
            body = decode_answer(response)
            jobs, token = parse_page(body)
            total = total_count(body)
            asked = _asked_ids(params)
            if asked:
                first = "NextToken" not in params
                check_lookup_page(asked, jobs, total, first=first, last=token is None)
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
        return jobs, token, total

    def _post(self, url: str) -> httpx.Response:
        try:
            return self._http.post(url, self._auth)
        except (httpx.HTTPError, RuntimeError) as exc:
            if not self._http.cancelled:
                raise
            # Not an answer of the API: not observed, not retried (RuntimeError: httpx
            # refuses a request on a client closed meanwhile).
            raise CancelledError(f"{ACTION} cancelled: the exporter is shutting down") from exc

    def _observe(self, code: str, started: float) -> None:
        if self._observer is not None:
            self._observer(code, time.perf_counter() - started)


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


def _asked_ids(params: Mapping[str, str]) -> frozenset[str]:
    """The ids a look-up asks for (`JobIds.N`); empty for a listing."""
    return frozenset(v for k, v in params.items() if k.startswith("JobIds."))


def _code_of(exc: ExporterError) -> str:
    code = getattr(exc, "code", TransportError.code)
    return code if isinstance(code, str) else TransportError.code
