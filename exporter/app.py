"""The wiring: targets from the Config, credentials per account, reload, state file.

`App` is built and driven by `exporter.cli`; nothing else imports this module.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry

from exporter import __version__, config
from exporter.alibaba.api import ACTION, API_VERSION
from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.credentials import CredentialObserver, CredentialProvider, provider_for
from exporter.alibaba.ratelimit import TokenBucket
from exporter.alibaba.signing import make_signer
from exporter.errors import ConfigError, CredentialsError
from exporter.jobs.events import JobEvents
from exporter.jobs.model import Job, cap_text
from exporter.jobs.refresher import Refresher
from exporter.jobs.state import StateFile
from exporter.jobs.state_writer import StateWriter
from exporter.jobs.store import JobStore
from exporter.jobs.target import RefreshPolicy, Target, TargetKey
from exporter.metrics.collector import JobsCollector
from exporter.metrics.self_metrics import SelfMetrics
from exporter.web import LandingFailure, LandingInfo, LandingTarget, OtherShard, WebHooks
from exporter.wiring import (
    AccountCredentials,
    Gate,
    Generation,
    Unavailable,
    Wired,
    exposition_options,
    same_data,
    same_globals,
    target_keys,
)

log = logging.getLogger("exporter")

#: The program's name, in the API requests' user agent and in the command line's messages.
PROG = "alb-jobs-exporter"
# Without a scrape-timeout header (curl, a browser) a scrape still must not hang forever.
DEFAULT_SCRAPE_BUDGET = 60.0


class App:
    """Holds the live config and targets; reload swaps them without dropping counters."""

    def __init__(
        self,
        cfg: config.Config,
        env: Mapping[str, str],
        config_path: str | None,
        *,
        telemetry_path: str = "/metrics",
        shard: config.Shard = config.UNSHARDED,
    ) -> None:
        self.env = env
        self.config_path = config_path
        self.telemetry_path = telemetry_path
        self.registry = CollectorRegistry()
        self.generation = Generation()
        self._reloads = 0
        self.metrics = SelfMetrics(
            self.registry, shard=(shard.index, shard.count), on_change=self.generation.bump
        )
        self._lock = threading.Lock()
        # The shard is a flag, so a reload keeps it: every config read is cut down to the
        # targets it owns, and the rest are only remembered to name their owner on /probe.
        self.shard = shard
        self._configured = target_keys(cfg)
        cfg = self.cfg = shard.select(cfg)
        self._log_ownership(cfg)
        # One request budget per (account, region), ALB's quota scope (account x region x
        # API): a throttled region slows down alone. Kept across reloads while the rate holds.
        self._buckets: dict[TargetKey, TokenBucket] = {}
        self.events = JobEvents(cfg.job_events.output, cfg.job_events.statuses)
        self._credentials = self._providers(cfg, {})
        self._wired = self._wire(cfg, {}, self._credentials)
        # The state file is read once, at start-up; a reload keeps the running state.
        self.state = StateFile(cfg.state_file) if cfg.state_file else None
        if self.state is not None:
            self.state.restore(w.target for w in self._wired.values())
        # Saved by one background thread: never inside the refresh a scrape waits for.
        self.state_writer = (
            StateWriter(self.state, lambda: self.refresher.targets())
            if self.state is not None
            else None
        )
        self.refresher = Refresher(
            {k: w.target for k, w in self._wired.items()},
            cache_ttl=cfg.cache_ttl,
            max_workers=cfg.max_concurrent_refreshes,
            after_refresh=self._after_refresh,
        )
        self.jobs_collector = JobsCollector(self.refresher.targets, exposition_options(cfg.metrics))
        self.registry.register(self.jobs_collector)
        self.metrics.set_reload_ok(True)

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
                    account, self.env, observer=gate, timeout=cfg.request_timeout
                )
            except CredentialsError as exc:
                log.error("%s", exc)
                provider = exc
            providers[account.name] = AccountCredentials(provider, built_from, gate)
        return providers

    def _wire(
        self,
        cfg: config.Config,
        old: Mapping[TargetKey, Wired],
        providers: Mapping[str, AccountCredentials],
    ) -> dict[TargetKey, Wired]:
        wired: dict[TargetKey, Wired] = {}
        for account in cfg.accounts:
            credentials = providers[account.name]
            for region in account.regions:
                key = (account.name, region)
                previous = old.get(key)
                if (
                    previous is not None
                    and previous.account == account
                    and previous.credentials is credentials
                    and same_globals(self.cfg, cfg)
                ):
                    wired[key] = previous  # unchanged: keep its store, so counters continue
                    continue
                carried = None
                if previous is not None and same_data(self.cfg, previous.account, cfg, account):
                    # Only how the API is reached changed (timeouts, page size, keys): the
                    # jobs are the same, so counters continue instead of resetting and
                    # missing the jobs that finish before the new store's first refresh.
                    carried = previous.target
                wired[key] = self._new_target(cfg, account, region, credentials, carried)
        return wired

    def _after_refresh(self, target: Target) -> None:
        # Still inside the refresh a scrape waits for: that scrape sees the new generation.
        self.generation.bump()
        if self.state_writer is not None and target.status().up:
            self.state_writer.request()

    def _bucket(self, account: config.AccountConfig, region: str) -> TokenBucket:
        key = (account.name, region)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.max_rate != account.max_requests_per_second:
            bucket = TokenBucket(account.max_requests_per_second)
            self._buckets[key] = bucket
        return bucket

    def _credential_observer(self, account: str) -> CredentialObserver:
        """Feeds every fetch of temporary credentials of `account` into the self-metrics."""

        def observe(source: str, code: str, expiration: float | None) -> None:
            self.metrics.credential_refresh(account, source, code)
            if expiration is not None:
                self.metrics.set_credentials_expiry(account, source, expiration)

        return observe

    def _new_target(
        self,
        cfg: config.Config,
        account: config.AccountConfig,
        region: str,
        credentials: AccountCredentials,
        carried: Target | None = None,
    ) -> Wired:
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
                duration_buckets=cfg.metrics.duration_buckets or config.DEFAULT_DURATION_BUCKETS,
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
            # Same store, same data: readiness and `up` hold until the new target refreshes.
            status=carried.status() if carried is not None else None,
            on_counted=self._on_counted,
        )
        return Wired(target, account, credentials, client, gate)

    def _on_counted(self, account: str, region: str, jobs: Sequence[Job], now: float) -> None:
        self.events.emit(account, region, jobs, now)

    # --- hooks for web ---

    def web_hooks(self) -> WebHooks:
        return WebHooks(
            prepare_scrape=self.prepare_scrape,
            registry=self.registry,
            probe=self.probe,
            is_ready=self.is_ready,
            reload=self.reload,
            landing=self.landing,
            generation=self.generation,
            probe_version=self.probe_version,
        )

    def prepare_scrape(self, budget: float | None) -> None:
        self.refresher.ensure_fresh(None, timeout=budget or DEFAULT_SCRAPE_BUDGET)

    def probe(
        self, account: str, region: str, budget: float | None
    ) -> CollectorRegistry | OtherShard | None:
        target = self.refresher.target((account, region))
        if target is None:
            if (account, region) not in self._configured:
                return None
            owner = self.shard.owner(account, region)
            return OtherShard(owner=owner, count=self.shard.count, this=self.shard.index)
        self.refresher.ensure_fresh([target.key], timeout=budget or DEFAULT_SCRAPE_BUDGET)
        registry = CollectorRegistry()
        registry.register(JobsCollector(lambda: [target], exposition_options(self.cfg.metrics)))
        return registry

    def probe_version(self, account: str, region: str) -> object:
        """What a target's probe exposition is made of besides its name: its published
        snapshot and status (both replaced, never changed in place, on every refresh). Not
        the target itself: a cached render must not keep a removed target's store alive.
        And the reload count: a reload may change what is exposed of the same data."""
        target = self.refresher.target((account, region))
        if target is None:
            return None
        return (self._reloads, target.snapshot(), target.status())

    def is_ready(self) -> bool:
        return all(t.status().tried for t in self.refresher.targets())

    def landing(self) -> LandingInfo:
        rows = []
        for t in self.refresher.targets():
            st = t.status()
            rows.append(
                LandingTarget(
                    t.account,
                    t.region,
                    st.up if st.tried else None,
                    st.last_success,
                    st.last_error,
                )
            )
        return LandingInfo(
            version=__version__,
            targets=rows,
            telemetry_path=self.telemetry_path,
            failures=self._recent_failures(),
            shard_index=self.shard.index,
            shard_count=self.shard.count,
            configured_targets=len(self._configured),
        )

    def _recent_failures(self) -> list[LandingFailure]:
        failed = [
            (job, t.account, t.region)
            for t in self.refresher.targets()
            for job in t.snapshot().recent_failures
        ]
        failed.sort(key=lambda row: (row[0].modify_time, row[0].id), reverse=True)
        events = self.cfg.job_events
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
                link=events.link_for(job.id) if shown == job.id else "",
            )
            for job, account, region in failed[: self.cfg.recent_failures]
        ]

    def reload(self) -> str | None:
        """Re-read the config file; on error keep the running config and report why."""
        # SIGHUP is logrotate's "reopen your file", whatever becomes of the config.
        self.events.reopen()
        if self.config_path is None:
            return "reload is not available in --demo mode"
        with self._lock:
            try:
                new_cfg = config.load(self.config_path, self.env)
            except ConfigError as exc:
                self.metrics.set_reload_ok(False)
                log.error("config reload failed, keeping the running config: %s", exc)
                return str(exc)
            if not new_cfg.accounts:
                self.metrics.set_reload_ok(False)
                error = "accounts: at least one account is required"
                log.error("config reload failed, keeping the running config: %s", error)
                return error
            self._configured = target_keys(new_cfg)
            new_cfg = self.shard.select(new_cfg)
            self._log_ownership(new_cfg)
            old, old_credentials = self._wired, self._credentials
            self._credentials = self._providers(new_cfg, old_credentials)
            self._wired = self._wire(new_cfg, old, self._credentials)
            self.events.configure(new_cfg.job_events.output, new_cfg.job_events.statuses)
            # The metrics block applies in place: the stores keep their counters (the
            # histograms re-bucketed) and the collector exposes the new choice next scrape.
            # An empty list only hides the histogram: the stores keep their buckets, so
            # turning it back on loses nothing.
            if new_cfg.metrics.duration_buckets:
                for w in self._wired.values():
                    w.target.store.set_duration_buckets(new_cfg.metrics.duration_buckets)
            self.jobs_collector.configure(exposition_options(new_cfg.metrics))
            self.cfg = new_cfg
            replaced = {id(w.target): w for k, w in old.items() if self._wired.get(k) is not w}
            self.refresher.set_targets(
                {k: w.target for k, w in self._wired.items()},
                cache_ttl=new_cfg.cache_ttl,
                max_workers=new_cfg.max_concurrent_refreshes,
                # A client still paging for a refresh in flight is closed when that ends.
                retired=lambda target: self._close(replaced[id(target)]),
            )
            for key, w in old.items():
                if key not in self._wired:
                    if w.gate is not None:
                        w.gate.close()
                    self.metrics.forget_target(*key)
            for name, credentials in old_credentials.items():
                if self._credentials.get(name) is not credentials:
                    # Removed account or new credentials: the old source's series (an
                    # expiry alerting forever, say) go; the new provider's fetches add theirs.
                    credentials.gate.close()
                    self.metrics.forget_account(name)
            self.metrics.set_reload_ok(True)
            self._reloads += 1
            self.generation.bump()  # targets came and went, settings changed
            log.info("config reloaded: %d targets", len(self._wired))
            fresh = [k for k, w in self._wired.items() if old.get(k) is not w]
        if fresh:
            # New targets are tried right away, so /-/ready and their series do not wait
            # for the next scrape.
            threading.Thread(
                target=self.refresher.ensure_fresh, args=(fresh,), name="reload-warmup", daemon=True
            ).start()
        return None

    def _log_ownership(self, own: config.Config) -> None:
        owned = len(target_keys(own))
        if self.shard.count == 1:
            return
        if owned == 0:
            # Not an error: with more shards than targets some have nothing to do. Such a
            # replica stays healthy and ready and serves only its own metrics.
            log.warning(
                "%s owns none of the %d configured targets: it serves no job metrics",
                self.shard,
                len(self._configured),
            )
        else:
            log.info(
                "%s owns %d of the %d configured targets", self.shard, owned, len(self._configured)
            )

    def all_up(self) -> bool:
        return all(t.status().up for t in self.refresher.targets())

    def close(self) -> None:
        for bucket in self._buckets.values():
            bucket.close()
        self.refresher.shutdown()
        if self.state_writer is not None:
            self.state_writer.close()  # and a last save, with every refresh finished
        self.events.close()
        for w in self._wired.values():
            self._close(w)

    @staticmethod
    def _close(w: Wired) -> None:
        if w.client is not None:
            w.client.close()
