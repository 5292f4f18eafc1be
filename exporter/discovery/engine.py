"""The discovery engine: every `discovery.interval`, list the directory's members and each
`"*"` account's regions, keep the known targets by discovery's rules, and hand the resulting
config (every account with concrete regions) to whoever applies it.

One thread runs the rounds; `resolved()` may be read from any thread. The engine knows the
API side and the config, never Prometheus: its outcomes go to a `DiscoveryObserver`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from exporter import __version__
from exporter.alibaba.cancel import Cancel
from exporter.alibaba.credentials import CredentialProvider, provider_for
from exporter.alibaba.discovery import RpcCaller, describe_regions, list_accounts
from exporter.alibaba.ratelimit import TokenBucket
from exporter.alibaba.signing import make_signer
from exporter.config import AccountConfig, Config, CredentialsConfig, ResourceDirectoryConfig
from exporter.discovery.rules import Known, fallback_regions, regions_of, watched
from exporter.errors import CredentialsError, ExporterError
from exporter.wire import (
    API_VERSION,
    DESCRIBE_REGIONS,
    LIST_ACCOUNTS,
    RD_API_VERSION,
    RD_ENDPOINT,
    member_role_arn,
)

log = logging.getLogger("exporter")

SOURCE_DIRECTORY = "resource_directory"
SOURCE_REGIONS = "regions"
ASSUME_ROLE_FAILED = "AssumeRoleFailed"
SESSION_NAME = "alb-jobs-exporter"
SNAPSHOT_VERSION = 1
# Discovery's own budget (SPEC "Budget"): ListAccounts and DescribeRegions are separate
# APIs in their quota scopes, so they never take a ListAsynJobs token.
DISCOVERY_RATE = 5.0
# With a directory of hundreds of members, DescribeRegions into each costs a round-trip
# (and an AssumeRole) apiece: a few at a time keep a round short.
PARALLEL_REGION_LISTINGS = 4
# Before the one retry of a transient failure (the next round is the real retry).
RETRY_DELAY = 0.5


class DiscoveryObserver(Protocol):
    """Hears each discovery call's outcome (the composition root makes metrics of it)."""

    def succeeded(self, source: str, account: str) -> None: ...

    def failed(self, source: str, account: str, code: str) -> None: ...


@dataclass
class _Caller:
    built_from: tuple[Any, ...]
    caller: RpcCaller | CredentialsError
    provider: CredentialProvider | None


class Discovery:
    """The known targets of `cfg`'s `"*"` accounts and directory members, kept current."""

    def __init__(
        self,
        cfg: Config,
        env: Mapping[str, str],
        observer: DiscoveryObserver,
        *,
        transport: Any = None,
        user_agent: str = f"alb-jobs-exporter/{__version__}",
        clock: Callable[[], float] = time.time,
        rate: float = DISCOVERY_RATE,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        """`rate` (calls per second of each budget) and `retry_delay` (before the one
        retry of a transient failure) are seams for tests that fail listings on purpose."""
        self._env = env
        self._observer = observer
        self._transport = transport
        self._user_agent = user_agent
        self._clock = clock
        self._rate = rate
        self._retry_delay = retry_delay
        self._lock = threading.Lock()  # the state below, between rounds and readers
        self._round = threading.Lock()  # one round at a time
        self._cfg = cfg
        self._known = Known()
        self._members: dict[str, str] = {}  # label -> AccountId, of the known members
        self._offered: tuple[str, ...] = ()  # the last DescribeRegions answer
        self._callers: dict[str, _Caller] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self.attempted = threading.Event()  # a round ran, or a saved discovery was restored
        self._stop = threading.Event()
        self._cancel = Cancel()  # the credential fetches (AssumeRole) of every caller
        self._thread: threading.Thread | None = None

    # --- configuration and state ---------------------------------------------------------

    def configure(self, cfg: Config) -> None:
        """A reloaded config: targets of accounts or a directory no longer configured go at
        once (the config is the user's word); the rest stay until listings say otherwise."""
        with self._lock:
            self._cfg = cfg
            keep = {a.name for a in cfg.accounts if a.all_regions}
            if cfg.discovery.resource_directory is not None:
                keep |= set(self._members)
            else:
                self._members.clear()
            for key in self._known.targets():
                if key[0] not in keep:
                    del self._known.misses[key]

    def snapshot(self) -> dict[str, Any]:
        """The last successful discovery, for the state file."""
        with self._lock:
            return {
                "version": SNAPSHOT_VERSION,
                "targets": self._known.export(),
                "members": dict(sorted(self._members.items())),
                "offered": list(self._offered),
            }

    def restore(self, saved: object) -> bool:
        """Take a saved discovery (a restart while the APIs are down serves every known
        target); False when there is none usable."""
        if not isinstance(saved, dict) or saved.get("version") != SNAPSHOT_VERSION:
            return False
        members = saved.get("members")
        offered = saved.get("offered")
        with self._lock:
            self._known = Known.restore(saved.get("targets"))
            if isinstance(members, dict):
                self._members = {str(k): str(v) for k, v in members.items() if isinstance(v, str)}
            if isinstance(offered, list):
                self._offered = tuple(r for r in offered if isinstance(r, str))
        self.configure(self._cfg)
        self.attempted.set()
        return True

    def resolved(self) -> Config:
        """The config with every account's regions concrete: listed accounts as written,
        `"*"` accounts and members with the regions discovery knows."""
        with self._lock:
            cfg, known = self._cfg, self._known.targets()
            accounts: list[AccountConfig] = []
            for account in cfg.accounts:
                if account.all_regions:
                    account = replace(account, regions=regions_of(known, account.name))
                accounts.append(account)
            rd = cfg.discovery.resource_directory
            if rd is not None:
                for label, account_id in sorted(self._members.items()):
                    regions = regions_of(known, label)
                    if regions:
                        accounts.append(member_account(rd, label, account_id, regions))
        return replace(cfg, accounts=tuple(accounts))

    def discovered(self) -> frozenset[tuple[str, str]]:
        """The targets that came from discovery (not listed by hand)."""
        with self._lock:
            return frozenset(self._known.targets())

    # --- the rounds ----------------------------------------------------------------------

    def start(self, on_change: Callable[[], None]) -> None:
        """Run a round now and then every interval in a thread; `on_change()` after each
        round whose targets differ from the last one's. The callee reads `resolved()`
        under whatever serialises its changes: a config built here, before that, could be
        older than a reload's."""

        def loop() -> None:
            last = None
            while not self._stop.is_set():
                targets = self.run_once()
                if self._stop.is_set():
                    return  # stopped during the round: its outcome is nobody's any more
                if targets != last:
                    last = targets
                    on_change()
                self._stop.wait(self._cfg.discovery.interval)

        self._thread = threading.Thread(target=loop, name="discovery", daemon=True)
        self._thread.start()

    def stop(self, *, wait: bool = True) -> None:
        """No more rounds; calls in flight are cancelled, not waited for: SIGTERM stops
        within seconds whatever the discovery APIs do. `wait=False` for a caller that
        holds what the round's `on_change` takes (it returns once it sees the stop)."""
        self._stop.set()
        self._cancel.cancel()  # credential fetches (AssumeRole into a member)
        for bucket in list(self._buckets.values()):
            bucket.close()  # a paced call gives up at once
        with self._lock:
            callers = list(self._callers.values())
        for entry in callers:
            if isinstance(entry.caller, RpcCaller):
                entry.caller.close()
        if wait and self._thread is not None:
            self._thread.join(timeout=5)

    def run_once(self) -> frozenset[tuple[str, str]]:
        """One round: list, apply the rules; returns the known targets after it."""
        with self._round:
            cfg = self._cfg
            rd = cfg.discovery.resource_directory
            listed_names = [a.name for a in cfg.accounts]
            members: dict[str, str] | None = None
            if rd is not None:
                members = self._list_members(cfg, rd, listed_names)
            with self._lock:
                if members is not None:
                    gone = set(self._members) - set(members)
                    for label in gone:
                        # Absent from a successful listing: one miss for each of its targets.
                        self._known.listed({k for k in self._known.targets() if k[0] == label}, ())
                    self._members.update(members)
                accounts = [a for a in cfg.accounts if a.all_regions]
                if rd is not None:
                    present = members if members is not None else dict(self._members)
                    accounts += [
                        member_account(rd, label, account_id, ())
                        for label, account_id in sorted(present.items())
                    ]
            self._list_regions(cfg, accounts)
            with self._lock:
                # A member whose targets all went is forgotten, with its client.
                labels = {a for a, _ in self._known.targets()}
                gone_callers = []
                for label in [m for m in self._members if m not in labels]:
                    if members is None or label not in members:
                        del self._members[label]
                        gone_callers.append(self._callers.pop(f"{SOURCE_REGIONS}/{label}", None))
                        self._buckets.pop(label, None)
                known = frozenset(self._known.targets())
            for entry in gone_callers:
                if entry is not None and isinstance(entry.caller, RpcCaller):
                    entry.caller.close()
        self.attempted.set()
        return known

    def _list_members(
        self, cfg: Config, rd: ResourceDirectoryConfig, listed_names: list[str]
    ) -> dict[str, str] | None:
        entry = self._caller(
            SOURCE_DIRECTORY,
            (rd.credentials, rd.directory_endpoint, cfg.request_timeout),
            lambda: self._rpc(
                AccountConfig("discovery", (), signature="v3", credentials=rd.credentials),
                rd.directory_endpoint or RD_ENDPOINT,
                LIST_ACCOUNTS,
                RD_API_VERSION,
                cfg.request_timeout,
                SOURCE_DIRECTORY,
            ),
        )
        try:
            if isinstance(entry.caller, CredentialsError):
                raise entry.caller
            found = watched(list_accounts(entry.caller), rd, listed_names)
        except ExporterError as exc:
            self._failed(SOURCE_DIRECTORY, "", exc, "ListAccounts")
            return None
        self._observer.succeeded(SOURCE_DIRECTORY, "")
        return {label: m.account_id for label, m in found.items()}

    def _list_regions(self, cfg: Config, accounts: list[AccountConfig]) -> None:
        pending = list(accounts)
        failed: list[AccountConfig] = []
        workers = [
            threading.Thread(target=self._region_worker, args=(cfg, pending, failed), daemon=True)
            for _ in range(min(PARALLEL_REGION_LISTINGS, len(pending)))
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        with self._lock:
            for account in failed:
                if not any(a == account.name for a, _ in self._known.targets()):
                    # Never listed: placeholders, so that its failure shows as `up 0`.
                    fallback = fallback_regions(
                        self._offered, account.exclude_regions, cfg.discovery.region
                    )
                    for region in fallback:
                        self._known.misses[(account.name, region)] = 0

    def _region_worker(
        self, cfg: Config, pending: list[AccountConfig], failed: list[AccountConfig]
    ) -> None:
        while not self._stop.is_set():
            try:
                account = pending.pop()
            except IndexError:
                return
            if not self._list_account_regions(cfg, account):
                failed.append(account)

    def _list_account_regions(self, cfg: Config, account: AccountConfig) -> bool:
        """List one account's regions; False when the listing failed."""
        label = account.name
        with self._lock:
            scope = {k for k in self._known.targets() if k[0] == label}
        if not account.all_regions:
            # A member with listed regions: the directory's listing is its only source.
            with self._lock:
                self._known.listed(scope, {(label, r) for r in account.regions})
            return True
        endpoint = account.endpoint_for(cfg.discovery.region)
        entry = self._caller(
            f"{SOURCE_REGIONS}/{label}",
            (account.credentials, endpoint, account.signature, cfg.request_timeout),
            lambda: self._rpc(
                account, endpoint, DESCRIBE_REGIONS, API_VERSION, cfg.request_timeout, label
            ),
        )
        try:
            if isinstance(entry.caller, CredentialsError):
                raise entry.caller
            offered = describe_regions(entry.caller)
        except ExporterError as exc:
            self._failed(SOURCE_REGIONS, label, exc, "DescribeRegions")
            return False
        self._observer.succeeded(SOURCE_REGIONS, label)
        excluded = set(account.exclude_regions)
        with self._lock:
            self._offered = offered
            self._known.listed(scope, {(label, r) for r in offered if r not in excluded})
        return True

    def _failed(self, source: str, account: str, exc: ExporterError, call: str) -> None:
        if self._stop.is_set():
            return  # cancelled by the stop: not a failure of the API
        code = _code(exc)
        self._observer.failed(source, account, code)
        who = f" for account {account}" if account else ""
        # The text, not the exception: a log record keeps its arguments, and the
        # exception's traceback would keep the failed request's connection alive.
        log.warning(
            "discovery: %s%s failed, keeping the targets known so far: %s", call, who, str(exc)
        )

    # --- clients -------------------------------------------------------------------------

    def _caller(
        self, key: str, built_from: tuple[Any, ...], build: Callable[[], _Caller]
    ) -> _Caller:
        with self._lock:
            entry = self._callers.get(key)
        # A source that was missing may be there now (a file written): built again.
        if (
            entry is not None
            and entry.built_from == built_from
            and not isinstance(entry.caller, CredentialsError)
        ):
            return entry
        if entry is not None and isinstance(entry.caller, RpcCaller):
            entry.caller.close()
        entry = build()
        entry.built_from = built_from
        with self._lock:
            self._callers[key] = entry
        return entry

    def _rpc(
        self,
        account: AccountConfig,
        endpoint: str,
        action: str,
        version: str,
        timeout: float,
        budget: str,
    ) -> _Caller:
        try:
            provider = provider_for(account, self._env, timeout=timeout, cancel=self._cancel)
        except CredentialsError as exc:
            return _Caller((), exc, None)
        bucket = self._buckets.get(budget)
        if bucket is None:
            bucket = self._buckets[budget] = TokenBucket(self._rate)
        signer = make_signer(account.signature, provider.get, action=action, version=version)
        caller = RpcCaller(
            endpoint,
            signer,
            action=action,
            timeout=timeout,
            transport=self._transport,
            pacer=bucket,
            user_agent=self._user_agent,
            on_auth_expired=provider.invalidate,
            retry_delay=self._retry_delay,
        )
        return _Caller((), caller, provider)


def member_account(
    rd: ResourceDirectoryConfig, label: str, account_id: str, regions: tuple[str, ...]
) -> AccountConfig:
    """A member as an account: the directory's account keys, its own label and regions,
    and the role assumed in it with the management account's credentials (the chain's
    ram_role_arn, refreshed before expiry)."""
    credentials = CredentialsConfig(
        type="ram_role_arn",
        role_arn=member_role_arn(account_id, rd.role_name),
        role_session_name=SESSION_NAME,
        external_id=rd.external_id or None,
        sts_endpoint=rd.sts_endpoint or None,
        source=rd.credentials,
    )
    return replace(rd.member, name=label, regions=regions, credentials=credentials)


def _code(exc: ExporterError) -> str:
    if isinstance(exc, CredentialsError):
        return ASSUME_ROLE_FAILED
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else type(exc).__name__
