"""How a target is built from its plan: credentials per account, a signed client with its
request budget, a job store (new or carried over). What a reload keeps is not decided
here but by `exporter.reconcile`.

Split from `exporter.app` so that the composition root reads as one class; nothing but
`exporter.app` imports this module.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, ParamSpec

from exporter import __version__, config
from exporter.alibaba.cancel import Cancel
from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.credentials import CredentialObserver, CredentialProvider, provider_for
from exporter.alibaba.ratelimit import TokenBucket
from exporter.alibaba.signing import make_signer
from exporter.errors import CredentialsError
from exporter.jobs.model import Job, JobQuery, cap_text
from exporter.jobs.store import JobStore
from exporter.jobs.target import RefreshPolicy, Target, TargetKey
from exporter.metrics.samples import ExpositionOptions
from exporter.metrics.self_metrics import SelfMetrics
from exporter.reconcile import TargetPlan
from exporter.web import LandingFailure, LandingInfo, LandingTarget
from exporter.wire import ACTION, API_VERSION

log = logging.getLogger("exporter")

#: The program's name, in the API requests' user agent and in the command line's messages.
PROG = "alb-jobs-exporter"

_P = ParamSpec("_P")


@dataclass(frozen=True)
class Seams:
    """What tests replace instead of patching our modules or waiting in real time:
    `clock`, the wall clock the credential providers judge expiry by; `state_debounce`,
    how long the state writer gathers save requests (None: its default); `state_write`,
    how the state file is written (None: atomically, `exporter.jobs.state`)."""

    clock: Callable[[], float] = time.time
    state_debounce: float | None = None
    state_write: Callable[[str, bytes], None] | None = None


NO_SEAMS = Seams()


class Unavailable:
    """Job source of an account whose credentials cannot be found: every refresh fails
    with the same actionable message, so only that account's targets go `up 0`."""

    def __init__(self, error: CredentialsError) -> None:
        self._error = error

    def list_jobs(self, query: JobQuery) -> list[Job]:
        raise self._error


class Gate(Generic[_P]):
    """Passes observations on until closed: by a reload that removes their target (request
    observations) or replaces their account's credential provider (credential fetches),
    so a request or fetch still in flight then cannot bring its forgotten series back."""

    def __init__(self, observe: Callable[_P, None]) -> None:
        self._observe = observe
        self._lock = threading.Lock()
        self._open = True

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> None:
        with self._lock:
            if self._open:
                self._observe(*args, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._open = False


@dataclass(eq=False)
class AccountCredentials:
    """An account's credential provider (or why it has none) and what it was built from;
    kept across reloads while that is unchanged, so a reload does not fetch anew."""

    provider: CredentialProvider | CredentialsError
    built_from: tuple[config.CredentialsConfig | None, float]
    gate: Gate[[str, str, float | None]]


@dataclass(eq=False)
class Wired:
    """A running target, the plan it was built from and what closes with it."""

    target: Target
    plan: TargetPlan
    client: ListAsynJobsClient | None
    gate: Gate[[str, float]] | None = None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class Retiring:
    """Targets a change replaced or removed whose refresh in flight has not ended: each
    one's client closes when that refresh does, and all at shutdown, which must not wait
    for those refreshes (a hung API). Thread-safe: refreshes end in their own threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wired: dict[int, Wired] = {}  # by id() of the target, which it keeps alive

    def add(self, wired: Iterable[Wired]) -> Callable[[Target], None]:
        """Take `wired`; returns the refresher's `retired(target)` hook for them."""
        with self._lock:
            self._wired.update((id(w.target), w) for w in wired)
        return self._retired

    def _retired(self, target: Target) -> None:
        with self._lock:
            wired = self._wired.pop(id(target), None)
        if wired is not None:
            wired.close()

    def close(self) -> None:
        with self._lock:
            wired, self._wired = list(self._wired.values()), {}
        for w in wired:
            w.close()


def exposition_options(metrics: config.MetricsConfig) -> ExpositionOptions:
    return ExpositionOptions(metrics.duration_labels, metrics.disabled())


OnCounted = Callable[[str, str, Sequence[Job], float], None]


class Builder:
    """Builds credential providers and targets, and holds what they share across reloads:
    one request budget per (account, region), ALB's quota scope (account x region x API),
    so a throttled region slows down alone; kept while the account's rate holds."""

    def __init__(
        self,
        env: Mapping[str, str],
        metrics: SelfMetrics,
        on_counted: OnCounted,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.env = env
        self.clock = clock
        self.metrics = metrics
        self.on_counted = on_counted
        self.buckets: dict[TargetKey, TokenBucket] = {}
        # Every credential fetch of every account: cancelled together at shutdown.
        self.cancel = Cancel()

    def providers(
        self, cfg: config.Config, old: Mapping[str, AccountCredentials]
    ) -> dict[str, AccountCredentials]:
        """Each account's credentials; an account's previous ones are kept while they are
        built from the same settings (so a reload does not fetch anew). The others of
        `old` are retired: a removed account's or replaced provider's series (an expiry
        alerting forever, say) go; the new provider's fetches add theirs."""
        providers = self._providers(cfg, old)
        for name, credentials in old.items():
            if providers.get(name) is not credentials:
                credentials.gate.close()
                self.metrics.forget_account(name)
        return providers

    def _providers(
        self, cfg: config.Config, old: Mapping[str, AccountCredentials]
    ) -> dict[str, AccountCredentials]:
        providers: dict[str, AccountCredentials] = {}
        for account in cfg.accounts:
            built_from = (account.credentials, cfg.request_timeout)
            previous = old.get(account.name)
            if (
                previous is not None
                and previous.built_from == built_from
                # A source that was missing may be there now (a file written, a profile).
                and not isinstance(previous.provider, CredentialsError)
            ):
                providers[account.name] = previous
                continue
            gate = Gate(self._credential_observer(account.name))
            provider: CredentialProvider | CredentialsError
            try:
                provider = provider_for(
                    account,
                    self.env,
                    observer=gate,
                    timeout=cfg.request_timeout,
                    clock=self.clock,
                    cancel=self.cancel,
                )
            except CredentialsError as exc:
                log.error("%s", exc)
                provider = exc
            providers[account.name] = AccountCredentials(provider, built_from, gate)
        return providers

    def _credential_observer(self, account: str) -> CredentialObserver:
        """Feeds every fetch of temporary credentials of `account` into the self-metrics."""

        def observe(source: str, code: str, expiration: float | None) -> None:
            self.metrics.credential_refresh(account, source, code)
            if expiration is not None:
                self.metrics.set_credentials_expiry(account, source, expiration)

        return observe

    def _bucket(self, account: config.AccountConfig, region: str) -> TokenBucket:
        key = (account.name, region)
        bucket = self.buckets.get(key)
        if bucket is None or bucket.max_rate != account.max_requests_per_second:
            bucket = TokenBucket(account.max_requests_per_second)
            self.buckets[key] = bucket
        return bucket

    def target(
        self,
        key: TargetKey,
        plan: TargetPlan,
        duration_buckets: tuple[float, ...],
        carried: Target | None = None,
    ) -> Wired:
        """A new target for `plan`; with `carried`, on that target's job store and status
        (same store, same data: readiness and `up` hold until the new target refreshes)."""
        account, region, cfg = plan.account, key[1], plan.settings
        credentials = plan.credentials
        assert isinstance(credentials, AccountCredentials)
        client = None
        gate = None
        provider = credentials.provider
        source: ListAsynJobsClient | Unavailable
        if isinstance(provider, CredentialsError):
            source = Unavailable(provider)
            # No client, so no request observer creates the target's series (below it does).
            self.metrics.register_target(account.name, region)
        else:
            signer = make_signer(
                account.signature, provider.get, action=ACTION, version=API_VERSION
            )
            client = source = ListAsynJobsClient(
                account.endpoint_for(region),
                signer,
                page_size=cfg.page_size,
                max_pages=cfg.max_pages,
                timeout=cfg.request_timeout,
                observer=(gate := Gate(self.metrics.request_observer(account.name, region))),
                user_agent=f"{PROG}/{__version__}",
                on_auth_expired=provider.invalidate,
                pacer=self._bucket(account, region),
            )
        if carried is None:
            store = JobStore(
                lookback=cfg.lookback,
                recent_failures=cfg.recent_failures,
                duration_buckets=duration_buckets,
                processing_max_age=cfg.processing_max_age,
            )
        else:
            store = carried.store
            store.set_processing_max_age(cfg.processing_max_age)
        target = Target(
            account.name,
            region,
            source,
            store,
            lookback=cfg.lookback,
            filters=account.filters,
            policy=RefreshPolicy(
                overlap=cfg.overlap, full_resync_interval=cfg.full_resync_interval
            ),
            status=carried.status() if carried is not None else None,
            on_counted=self.on_counted,
        )
        return Wired(target, plan, client, gate)

    def close(self) -> None:
        """Shutdown: paced calls and credential fetches give up at once."""
        self.cancel.cancel()
        for bucket in self.buckets.values():
            bucket.close()


def log_ownership(shard: config.Shard, owned: int, configured: int) -> None:
    """Say how many of the configured targets this shard owns (a config read or changed)."""
    if shard.count == 1:
        return
    if owned == 0:
        # Not an error: with more shards than targets some have nothing to do. Such a
        # replica stays healthy and ready and serves only its own metrics.
        log.warning(
            "%s owns none of the %d configured targets: it serves no job metrics",
            shard,
            configured,
        )
    else:
        log.info("%s owns %d of the %d configured targets", shard, owned, configured)


# --- what the landing page shows of the targets ---


def landing_info(
    targets: Sequence[Target],
    cfg: config.Config,
    shard: config.Shard,
    configured: int,
    *,
    telemetry_path: str,
    demo: bool,
) -> LandingInfo:
    """What the landing page shows: the targets, the newest failures, the shard."""
    return LandingInfo(
        version=__version__,
        targets=landing_targets(targets),
        telemetry_path=telemetry_path,
        failures=recent_failures(targets, cfg.recent_failures, cfg.job_events.link_for),
        shard_index=shard.index,
        shard_count=shard.count,
        configured_targets=configured,
        demo=demo,
    )


def landing_targets(targets: Sequence[Target]) -> list[LandingTarget]:
    rows = []
    for t in targets:
        st = t.status()
        rows.append(
            LandingTarget(
                t.account, t.region, st.up if st.tried else None, st.last_success, st.last_error
            )
        )
    return rows


def recent_failures(
    targets: Sequence[Target], limit: int, link_for: Callable[[str], str]
) -> list[LandingFailure]:
    """The newest `limit` recent failures of all targets, newest first, each with the
    link to its event line (`job_events.link`; "" for none)."""
    failed = [(job, t.account, t.region) for t in targets for job in t.snapshot().recent_failures]
    failed.sort(key=lambda row: (row[0].modify_time, row[0].id), reverse=True)
    return [
        LandingFailure(
            time=job.modify_time,
            account=account,
            region=region,
            job_id=(shown := cap_text(job.id)),
            resource_id=cap_text(job.resource_id),
            api_name=cap_text(job.api_name),
            error_code=cap_text(job.error_code),
            error_message=cap_text(job.error_message),
            # Only an id shown whole is linked: a cut one would search for another.
            link=link_for(job.id) if shown == job.id else "",
        )
        for job, account, region in failed[:limit]
    ]
