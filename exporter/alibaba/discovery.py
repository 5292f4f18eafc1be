"""The discovery calls over httpx: ALB DescribeRegions and Resource Directory ListAccounts
(alibaba-api.md section 11), with paging, a retry for transient failures and the error
mapping of ListAsynJobs (one error tree; a 2xx body that is not the action's answer is
`MalformedResponse`). Knows nothing of Prometheus nor of what discovery does with them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from exporter.alibaba.answers import decode_answer, redact
from exporter.alibaba.cancel import CancellableClient
from exporter.alibaba.client import RequestPacer
from exporter.alibaba.signing import Signer, canonical_query
from exporter.errors import (
    ApiError,
    AuthError,
    CancelledError,
    MalformedResponseError,
    PagingError,
    RequestTimeoutError,
    TransportError,
)
from exporter.wire import (
    DESCRIBE_REGIONS,
    EXPIRED_TOKEN_CODE,
    LIST_ACCOUNTS,
    RD_MAX_RESULTS,
)

log = logging.getLogger(__name__)

_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_DIRECTORY_PAGES = 100  # 10,000 members at 100 a page: far beyond any directory


@dataclass(frozen=True)
class Member:
    """One member account as ListAccounts lists it (the fields discovery uses)."""

    account_id: str
    display_name: str
    status: str
    path: str  # ResourceDirectoryPath: rd-…/r-…/fd-…/<AccountId>
    folder_id: str
    tags: tuple[tuple[str, str], ...]


class RpcCaller:
    """One RPC action at one endpoint: signed by `auth`, paced by `pacer`, one retry for
    transient failures (discovery runs again next interval; it must not hold its thread)."""

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        action: str,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        pacer: RequestPacer | None = None,
        user_agent: str = "alb-jobs-exporter",
        on_auth_expired: Callable[[], None] | None = None,
        retry_delay: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = base_url if base_url.endswith("/") else f"{base_url}/"
        self._auth = auth
        self.action = action
        self._timeout = timeout
        self._pacer = pacer
        self._on_auth_expired = on_auth_expired
        self._retry_delay = retry_delay
        self._sleep = sleep
        self._http = CancellableClient(transport, timeout, user_agent)

    def close(self) -> None:
        """Close the connections and cancel the call in flight: it fails at once
        (discovery stopping must not wait out `request_timeout` on a silent API)."""
        self._http.close()

    def call(self, params: Mapping[str, str], payload: str) -> Any:
        """The decoded answer (a 2xx JSON body); an `ExporterError` subclass otherwise."""
        renewed = retried = False
        while True:
            try:
                return self._attempt(params, payload)
            except (ApiError, TransportError) as exc:
                if (
                    isinstance(exc, AuthError)
                    and exc.code == EXPIRED_TOKEN_CODE
                    and self._on_auth_expired is not None
                    and not renewed
                ):
                    renewed = True
                    self._on_auth_expired()
                    continue
                if self._pacer is not None and getattr(exc, "code", "").startswith("Throttling"):
                    self._pacer.throttled(getattr(exc, "retry_after", None))
                if retried or not exc.retryable:
                    raise
                retried = True
                self._sleep(self._retry_delay)

    def _attempt(self, params: Mapping[str, str], payload: str) -> Any:
        url = f"{self._url}?{canonical_query(params)}" if params else self._url
        if isinstance(self._auth, Signer):
            self._auth.prepare()  # a credential fetch (AssumeRole) happens here
        if self._pacer is not None:
            self._pacer.acquire()
        if self._http.cancelled:
            raise CancelledError(f"{self.action} cancelled: the client was closed")
        try:
            response = self._http.post(url, self._auth)
        except httpx.HTTPError as exc:
            if self._http.cancelled:
                raise CancelledError(f"{self.action} cancelled: the client was closed") from exc
            if isinstance(exc, httpx.TimeoutException):
                raise RequestTimeoutError(
                    f"{self.action} got no answer within {self._timeout:g}s ({type(exc).__name__})"
                ) from exc
            raise TransportError(
                f"{self.action} request failed: {type(exc).__name__}: {redact(str(exc))}"
            ) from exc
        except RuntimeError as exc:
            # httpx refuses a request on a client closed meanwhile: that call ends now.
            raise CancelledError(f"{self.action} cancelled: the client was closed") from exc
        return decode_answer(response, payload)


def describe_regions(caller: RpcCaller) -> tuple[str, ...]:
    """The regions ALB is offered in, in the answer's order (DescribeRegions' flat
    `Regions[]` of `{RegionId, LocalName, RegionEndpoint}`)."""
    body = caller.call({}, "Regions")
    regions = body.get("Regions") if isinstance(body, dict) else None
    if not isinstance(regions, list):
        raise MalformedResponseError(f"{DESCRIBE_REGIONS} answer has no Regions list")
    ids: list[str] = []
    for index, item in enumerate(regions):
        region = item.get("RegionId") if isinstance(item, dict) else None
        if not isinstance(region, str) or not _REGION.fullmatch(region):
            raise MalformedResponseError(
                f"{DESCRIBE_REGIONS} answer: Regions[{index}] has no valid RegionId"
            )
        if region not in ids:
            ids.append(region)
    return tuple(ids)


def list_accounts(caller: RpcCaller, page_size: int = RD_MAX_RESULTS) -> list[Member]:
    """Every member of the directory, paged with MaxResults/NextToken, tags included.
    A partial listing is never returned."""
    members: dict[str, Member] = {}
    used: set[str] = set()
    token = ""
    for _ in range(MAX_DIRECTORY_PAGES):
        params = {"MaxResults": str(page_size), "IncludeTags": "true"}
        if token:
            params["NextToken"] = token
        body = caller.call(params, "Accounts")
        if not isinstance(body, dict):
            raise MalformedResponseError(f"{LIST_ACCOUNTS} answer is not a JSON object")
        accounts = body.get("Accounts")
        items = accounts.get("Account") if isinstance(accounts, dict) else None
        if not isinstance(items, list):
            raise MalformedResponseError(f"{LIST_ACCOUNTS} answer has no Accounts.Account list")
        for index, item in enumerate(items):
            member = _member(item, index)
            members[member.account_id] = member
        token = body.get("NextToken") or ""
        if not isinstance(token, str):
            raise MalformedResponseError(f"{LIST_ACCOUNTS} answer: NextToken is not a string")
        if not token:
            return list(members.values())
        if token in used:
            raise PagingError(f"{LIST_ACCOUNTS} returned a NextToken already used; stopped")
        used.add(token)
    raise PagingError(f"{LIST_ACCOUNTS} stopped after {MAX_DIRECTORY_PAGES} pages")


def _member(item: Any, index: int) -> Member:
    where = f"{LIST_ACCOUNTS} answer: Accounts.Account[{index}]"
    if not isinstance(item, dict):
        raise MalformedResponseError(f"{where} is not an object")
    fields: dict[str, str] = {}
    for key in ("AccountId", "Status"):
        value = item.get(key)
        if not isinstance(value, str) or not value:
            raise MalformedResponseError(f"{where} has no {key}")
        fields[key] = value
    optional = {}
    for key in ("DisplayName", "ResourceDirectoryPath", "FolderId"):
        value = item.get(key, "")
        if not isinstance(value, str):
            raise MalformedResponseError(f"{where}.{key} is not a string")
        optional[key] = value
    raw_tags = item.get("Tags")
    tag_list = raw_tags.get("Tag", []) if isinstance(raw_tags, dict) else []
    if not isinstance(tag_list, list):
        raise MalformedResponseError(f"{where}.Tags.Tag is not a list")
    tags = tuple(
        (t["Key"], t.get("Value", ""))
        for t in tag_list
        if isinstance(t, dict)
        and isinstance(t.get("Key"), str)
        and isinstance(t.get("Value", ""), str)
    )
    return Member(
        account_id=fields["AccountId"],
        display_name=optional["DisplayName"],
        status=fields["Status"],
        path=optional["ResourceDirectoryPath"],
        folder_id=optional["FolderId"],
        tags=tags,
    )
