"""The wiring: targets from the Config, credentials per account, reload, state file.

`App` is built and driven by `exporter.cli`; nothing else imports this module.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.registry import Collector

from exporter import __version__, config
from exporter.alibaba.ratelimit import TokenBucket
from exporter.discovery import Discovery
from exporter.errors import ConfigError
from exporter.jobs.events import JobEvents
from exporter.jobs.refresher import Refresher
from exporter.jobs.state import StateFile
from exporter.jobs.state_writer import StateWriter
from exporter.jobs.target import Target, TargetKey
from exporter.metrics.exposition import Exposition
from exporter.metrics.outputs import OutputMetrics
from exporter.reconcile import TargetPlan, diff_targets, plans, target_keys
from exporter.web import LandingInfo, OtherShard, WebHooks
from exporter.wiring import (
    PROG,
    AccountCredentials,
    Builder,
    Wired,
    exposition_options,
    landing_targets,
    recent_failures,
)

__all__ = ["PROG", "App", "Seams"]

log = logging.getLogger("exporter")
# Without a scrape-timeout header (curl, a browser) a scrape still must not hang forever.
DEFAULT_SCRAPE_BUDGET = 60.0


@dataclass(frozen=True)
class Seams:
    """What tests replace instead of patching our modules or waiting in real time:
    `clock`, the wall clock the credential providers judge expiry by; `state_debounce`,
    how long the state writer gathers save requests (None: its default); `state_write`,
    how the state file is written (None: atomically, `exporter.jobs.state`)."""

    clock: Callable[[], float] = time.time
    state_debounce: float | None = None
    state_write: Callable[[str, bytes], None] | None = None


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
        seams: Seams = Seams(),
        demo: bool = False,
    ) -> None:
        """`demo`: the targets are the built-in simulator's; the landing page says so."""
        self.env = env
        self.demo = demo
        self.config_path = config_path
        self.telemetry_path = telemetry_path
        # What /metrics and /probe serve, and the version their caches key on.
        self.exposition = Exposition(
            exposition_options(cfg.metrics),
            shard=(shard.index, shard.count),
            process_metrics=True,
        )
        self.metrics = self.exposition.metrics
        # Serialises changes of the target set (reloads; targets that come and go).
        self._lock = threading.RLock()
        # Targets found at run time (a directory's members, `regions: "*"`): the engine
        # resolves the file's config into concrete accounts, and every change it finds is
        # applied like a reload. A saved discovery serves every known target at once.
        self.discovery: Discovery | None = None
        self._discovering = False
        if cfg.discovers:
            self.discovery = Discovery(cfg, env, self.metrics)
            if cfg.state_file:
                self.discovery.restore(StateFile(cfg.state_file).section("discovery"))
            cfg = self.discovery.resolved()
        # The shard is a flag, so a reload keeps it: every config read is cut down to the
        # targets it owns, and the rest are only remembered to name their owner on /probe.
        self.shard = shard
        self._configured = target_keys(cfg)
        cfg = self.cfg = shard.select(cfg)
        self._log_ownership(cfg)
        outputs = OutputMetrics(self.metrics)
        events = cfg.job_events
        self.events = JobEvents(
            events.output, events.statuses, queue_size=events.queue_size, on_change=outputs.events
        )
        self._builder = Builder(env, self.metrics, on_counted=self.events.emit, clock=seams.clock)
        self._credentials = self._builder.providers(cfg, {})
        self._wired: dict[TargetKey, Wired] = {}
        # Replaced or removed targets whose refresh in flight has not ended: their clients
        # close when it does, or at shutdown, which must not wait for that refresh.
        self._retiring: set[Wired] = set()
        self._retiring_lock = threading.Lock()  # retired in refresh threads
        self.refresher = Refresher(
            {},
            cache_ttl=cfg.cache_ttl,
            max_workers=cfg.max_concurrent_refreshes,
            after_refresh=self.after_refresh,
        )
        # The state file is read once, at start-up; a reload keeps the running state.
        self.state = (
            StateFile(cfg.state_file, write=seams.state_write, on_error=outputs.state_error)
            if cfg.state_file
            else None
        )
        if self.state is not None:
            self.state.sections = self._state_sections
        # Saved by one background thread: never inside the refresh a scrape waits for.
        self.state_writer = (
            StateWriter(self.state, self.refresher.targets, debounce=seams.state_debounce)
            if self.state is not None
            else None
        )
        self.apply_targets(plans(cfg, self._credentials))
        if self.state is not None:
            self.state.restore(w.target for w in self._wired.values())
            # Restored counters: written into the exposition anew.
            self.exposition.configure(exposition_options(cfg.metrics))
        self.metrics.set_reload_ok(True)
        self._count_sources()

    def apply_targets(self, plans: Mapping[TargetKey, TargetPlan]) -> tuple[TargetKey, ...]:
        """Make the running targets those of `plans` (a reload, or targets that come and
        go at run time): what is kept, replaced or removed is `diff_targets`'s decision.
        Returns the keys of the new targets, which have not refreshed yet (`warm_up`
        them once the change is complete). Holds the lock of the target set; settings
        besides the plans are the running config's."""
        with self._lock:
            old = self._wired
            diff = diff_targets({k: w.plan for k, w in old.items()}, plans)
            buckets = self.cfg.metrics.duration_buckets or config.DEFAULT_DURATION_BUCKETS
            wired = {k: old[k] for k in diff.keep}
            for key in diff.fresh:
                carried = old[key].target if key in diff.carry else None
                wired[key] = self._builder.target(key, plans[key], buckets, carried)
            if self.state is not None:
                # A target discovery found after start-up continues its saved counters.
                restored = self.state.claim(
                    wired[k].target for k in diff.fresh if k not in diff.carry
                )
                if restored:
                    log.info("restored the saved state of %d new targets", restored)
            self._wired = {k: wired[k] for k in plans}  # in the plans' order
            replaced = {id(old[k].target): old[k] for k in (*diff.replace, *diff.remove)}
            with self._retiring_lock:
                self._retiring.update(replaced.values())
            self.refresher.set_targets(
                {k: w.target for k, w in self._wired.items()},
                cache_ttl=self.cfg.cache_ttl,
                max_workers=self.cfg.max_concurrent_refreshes,
                # A client still paging for a refresh in flight is closed when that ends.
                retired=lambda target: self._retire(replaced[id(target)]),
            )
            for key in diff.remove:
                gate = old[key].gate
                if gate is not None:
                    gate.close()
                self.metrics.forget_target(*key)
            self.exposition.set_targets(w.target for w in self._wired.values())
            return diff.fresh

    def _retire(self, wired: Wired) -> None:
        wired.close()
        with self._retiring_lock:
            self._retiring.discard(wired)

    def after_refresh(self, target: Target) -> None:
        """The refresher's hook, in the refresh's worker thread after each refresh."""
        # Still inside the refresh a scrape waits for: that scrape sees the new lines.
        self.exposition.publish(target)
        if self.state_writer is not None and target.status().up:
            self.state_writer.request()

    # --- hooks for web ---

    def web_hooks(self) -> WebHooks:
        return WebHooks(
            prepare_scrape=self.prepare_scrape,
            registry=self.exposition,
            probe=self.probe,
            is_ready=self.is_ready,
            reload=self.reload,
            landing=self.landing,
            generation=self.exposition.version,
            probe_version=self.exposition.target_version,
        )

    def prepare_scrape(self, budget: float | None) -> None:
        self.refresher.ensure_fresh(None, timeout=budget or DEFAULT_SCRAPE_BUDGET)

    def probe(
        self, account: str, region: str, budget: float | None
    ) -> Collector | OtherShard | None:
        target = self.refresher.target((account, region))
        if target is None:
            if (account, region) not in self._configured:
                return None
            owner = self.shard.owner(account, region)
            return OtherShard(owner=owner, count=self.shard.count, this=self.shard.index)
        self.refresher.ensure_fresh([target.key], timeout=budget or DEFAULT_SCRAPE_BUDGET)
        return self.exposition.target(account, region)

    @property
    def credentials(self) -> Mapping[str, AccountCredentials]:
        """Each account's credential provider (or why it has none), by account name."""
        return self._credentials

    @property
    def request_budgets(self) -> Mapping[TargetKey, TokenBucket]:
        """The request budget of each (account, region) that has had a client."""
        return self._builder.buckets

    def is_ready(self) -> bool:
        # With discovery, ready once its first round ran (or a saved one was restored):
        # before that the target set is not known.
        discovered = self.discovery is None or self.discovery.attempted.is_set()
        return discovered and all(t.status().tried for t in self.refresher.targets())

    # --- discovery ---

    def start_discovery(self) -> None:
        """Run discovery rounds in the background (serving mode)."""
        self._discovering = True
        if self.discovery is not None:
            self._run(self.discovery)

    def _run(self, engine: Discovery) -> None:
        engine.start(functools.partial(self.apply_discovered, engine))

    def discover_once(self) -> None:
        """One discovery round, applied (`--once`)."""
        if self.discovery is not None:
            self.discovery.run_once()
            self.apply_discovered(self.discovery)

    def apply_discovered(self, engine: Discovery) -> None:
        """Targets `engine` added or removed, through the same path as a reload."""
        with self._lock:
            if engine is not self.discovery:
                return  # a reload stopped or replaced it meanwhile: its news are stale
            # Read under the lock: a config resolved before it could undo a reload.
            fresh = self._apply(engine.resolved())
            log.info("discovery: %d targets", len(self._wired))
        self.warm_up(fresh)

    def _state_sections(self) -> dict[str, object]:
        engine = self.discovery  # a reload may replace it meanwhile
        return {} if engine is None else {"discovery": engine.snapshot()}

    def _count_sources(self) -> None:
        found = self.discovery.discovered() if self.discovery is not None else frozenset()
        owned = set(self._wired)
        self.metrics.set_discovery_targets(len(owned - found), len(owned & found))

    def landing(self) -> LandingInfo:
        targets = self.refresher.targets()
        return LandingInfo(
            version=__version__,
            targets=landing_targets(targets),
            telemetry_path=self.telemetry_path,
            failures=recent_failures(
                targets, self.cfg.recent_failures, self.cfg.job_events.link_for
            ),
            shard_index=self.shard.index,
            shard_count=self.shard.count,
            configured_targets=len(self._configured),
            demo=self.demo,
        )

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
            if not new_cfg.accounts and new_cfg.discovery.resource_directory is None:
                self.metrics.set_reload_ok(False)
                error = config.NO_ACCOUNTS
                log.error("config reload failed, keeping the running config: %s", error)
                return error
            new_cfg = self._discover(new_cfg)
            fresh = self._apply(new_cfg)
            self.metrics.set_reload_ok(True)
            log.info("config reloaded: %d targets", len(self._wired))
        self.warm_up(fresh)
        return None

    def _discover(self, file_cfg: config.Config) -> config.Config:
        """The reloaded file's config resolved by discovery (started or stopped as the
        file now says); accounts or a directory no longer configured go at once."""
        if not file_cfg.discovers:
            if self.discovery is not None:
                # Not waited for: its round may be waiting for this lock.
                self.discovery.stop(wait=False)
                self.discovery = None
            return file_cfg
        if self.discovery is None:
            self.discovery = Discovery(file_cfg, self.env, self.metrics)
            if self._discovering:
                self._run(self.discovery)
        else:
            self.discovery.configure(file_cfg)
        return self.discovery.resolved()

    def _apply(self, new_cfg: config.Config) -> tuple[TargetKey, ...]:
        """Make `new_cfg` (concrete regions) the running config through `apply_targets`:
        the one path of reloads and discovery; the caller holds the lock. Returns the
        targets to warm up."""
        self._configured = target_keys(new_cfg)
        new_cfg = self.shard.select(new_cfg)
        self._log_ownership(new_cfg)
        old_credentials = self._credentials
        self._credentials = self._builder.providers(new_cfg, old_credentials)
        events = new_cfg.job_events
        self.events.configure(events.output, events.statuses, events.queue_size)
        self.cfg = new_cfg
        fresh = self.apply_targets(plans(new_cfg, self._credentials))
        # The metrics block applies in place: the stores keep their counters (the
        # histograms re-bucketed) and the collector exposes the new choice next scrape.
        # An empty list only hides the histogram: the stores keep their buckets, so
        # turning it back on loses nothing.
        if new_cfg.metrics.duration_buckets:
            for w in self._wired.values():
                w.target.store.set_duration_buckets(new_cfg.metrics.duration_buckets)
        self.exposition.configure(exposition_options(new_cfg.metrics))
        for name, credentials in old_credentials.items():
            if self._credentials.get(name) is not credentials:
                # Removed account or new credentials: the old source's series (an
                # expiry alerting forever, say) go; the new provider's fetches add theirs.
                credentials.gate.close()
                self.metrics.forget_account(name)
        self._count_sources()
        return tuple(fresh)

    def warm_up(self, keys: Sequence[TargetKey]) -> None:
        """Refresh new targets now, in the background (after `apply_targets`), so that
        /-/ready and their series do not wait for the next scrape."""
        if keys:
            threading.Thread(
                target=self.refresher.ensure_fresh, args=(keys,), name="reload-warmup", daemon=True
            ).start()

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
        if self.discovery is not None:
            self.discovery.stop()
        self._builder.close()
        # SIGTERM: in-flight API calls are cancelled, not waited for (a hung API and a 30 s
        # request_timeout would outlast the pod's grace period); their refreshes fail, the
        # data held stays as it was and is written below.
        with self._retiring_lock:
            retiring = list(self._retiring)
        for w in (*self._wired.values(), *retiring):
            w.close()
        self.refresher.shutdown()
        if self.state_writer is not None:
            self.state_writer.close()  # and a last save, with every refresh finished
        self.events.close()
