"""The wiring: targets from the Config, credentials per account, reload, state file.

`App` is built and driven by `exporter.cli`; nothing else imports this module.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence

from prometheus_client.registry import Collector

from exporter import config
from exporter.alibaba.ratelimit import TokenBucket
from exporter.discovery.runner import Discoverer
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
    NO_SEAMS,
    PROG,
    AccountCredentials,
    Builder,
    Retiring,
    Seams,
    Wired,
    exposition_options,
    landing_info,
    log_ownership,
)

__all__ = ["PROG", "App", "Seams"]

log = logging.getLogger("exporter")
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
        seams: Seams = NO_SEAMS,
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
        # Targets found at run time (a directory's members, `regions: "*"`): discovery
        # resolves the file's config into concrete accounts, and every change it finds is
        # applied like a reload. A saved discovery serves every known target at once.
        self.discoverer = Discoverer(env, self.metrics, lock=self._lock, apply=self._discovered)
        # Only with discovery: the whole file is parsed for it (and once more below).
        discovers = cfg.state_file and cfg.discovers
        saved = StateFile(cfg.state_file).section("discovery") if discovers else None
        cfg = self.discoverer.resolve(cfg, saved)
        # The shard is a flag, so a reload keeps it: every config read is cut down to the
        # targets it owns, and the rest are only remembered to name their owner on /probe.
        self.shard = shard
        self._configured = target_keys(cfg)
        cfg = self.cfg = shard.select(cfg)
        log_ownership(shard, len(target_keys(cfg)), len(self._configured))
        outputs = OutputMetrics(self.metrics)
        events = cfg.job_events
        self.events = JobEvents(
            events.output, events.statuses, queue_size=events.queue_size, on_change=outputs.events
        )
        self._builder = Builder(env, self.metrics, on_counted=self.events.emit, clock=seams.clock)
        self._credentials = self._builder.providers(cfg, {})
        self._wired: dict[TargetKey, Wired] = {}
        self._retiring = Retiring()
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
            self.state.sections = self.discoverer.state_sections
        # Saved by one background thread: never inside the refresh a scrape waits for.
        self.state_writer = (
            StateWriter(self.state, self.refresher.targets, debounce=seams.state_debounce)
            if self.state is not None
            else None
        )
        if self.state is not None:
            self.state.read()
        self.apply_targets(plans(cfg, self._credentials))
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
                # Saved counters continue: at start-up, and for targets that come later.
                self.state.claim(wired[k].target for k in diff.fresh if k not in diff.carry)
            self._wired = {k: wired[k] for k in plans}  # in the plans' order
            self.refresher.set_targets(
                {k: w.target for k, w in self._wired.items()},
                cache_ttl=self.cfg.cache_ttl,
                max_workers=self.cfg.max_concurrent_refreshes,
                # A client still paging for a refresh in flight is closed when that ends.
                retired=self._retiring.add(old[k] for k in (*diff.replace, *diff.remove)),
            )
            for key in diff.remove:
                gate = old[key].gate
                if gate is not None:
                    gate.close()
                self.metrics.forget_target(*key)
            self.exposition.set_targets(w.target for w in self._wired.values())
            return diff.fresh

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
        tried = all(t.status().tried for t in self.refresher.targets())
        return self.discoverer.ready() and tried

    def _discovered(self, resolved: config.Config) -> None:
        """A change discovery found, through the same path as a reload (under its lock)."""
        fresh = self._apply(resolved)
        log.info("discovery: %d targets", len(self._wired))
        self.warm_up(fresh)

    def _count_sources(self) -> None:
        found = self.discoverer.discovered()
        owned = set(self._wired)
        self.metrics.set_discovery_targets(len(owned - found), len(owned & found))

    def landing(self) -> LandingInfo:
        return landing_info(
            self.refresher.targets(),
            self.cfg,
            self.shard,
            len(self._configured),
            telemetry_path=self.telemetry_path,
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
                if not new_cfg.accounts and new_cfg.discovery.resource_directory is None:
                    raise ConfigError(config.NO_ACCOUNTS)
            except ConfigError as exc:
                self.metrics.set_reload_ok(False)
                log.error("config reload failed, keeping the running config: %s", exc)
                return str(exc)
            # Accounts or a directory no longer configured go at once.
            fresh = self._apply(self.discoverer.resolve(new_cfg))
            self.metrics.set_reload_ok(True)
            log.info("config reloaded: %d targets", len(self._wired))
        self.warm_up(fresh)
        return None

    def _apply(self, new_cfg: config.Config) -> tuple[TargetKey, ...]:
        """Make `new_cfg` (concrete regions) the running config through `apply_targets`:
        the one path of reloads and discovery; the caller holds the lock. Returns the
        targets to warm up."""
        self._configured = target_keys(new_cfg)
        new_cfg = self.shard.select(new_cfg)
        log_ownership(self.shard, len(target_keys(new_cfg)), len(self._configured))
        self._credentials = self._builder.providers(new_cfg, self._credentials)
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
        self._count_sources()
        return tuple(fresh)

    def warm_up(self, keys: Sequence[TargetKey]) -> None:
        """Refresh new targets now, in the background (after `apply_targets`), so that
        /-/ready and their series do not wait for the next scrape."""
        if keys:
            threading.Thread(
                target=self.refresher.ensure_fresh, args=(keys,), name="reload-warmup", daemon=True
            ).start()

    def all_up(self) -> bool:
        return all(t.status().up for t in self.refresher.targets())

    def close(self) -> None:
        self.discoverer.stop()
        self._builder.close()
        # SIGTERM: in-flight API calls are cancelled, not waited for (a hung API and a 30 s
        # request_timeout would outlast the pod's grace period); their refreshes fail, the
        # data held stays as it was and is written below.
        for w in self._wired.values():
            w.close()
        self._retiring.close()
        self.refresher.shutdown()
        if self.state_writer is not None:
            self.state_writer.close()  # and a last save, with every refresh finished
        self.events.close()
