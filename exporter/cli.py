"""Composition root: flags, logging, config, wiring and serving. Nothing imports this module.

`main(argv) -> int` is the whole program; `run()` is the console-script entry point.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Generic, NoReturn, ParamSpec

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest

from exporter import __version__, config, logfmt
from exporter.alibaba.api import ACTION, API_VERSION
from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.credentials import CredentialObserver, CredentialProvider, provider_for
from exporter.alibaba.ratelimit import TokenBucket
from exporter.alibaba.signing import make_signer
from exporter.errors import ConfigError, CredentialsError
from exporter.jobs.model import Job, JobQuery
from exporter.jobs.state import StateFile
from exporter.jobs.store import JobStore
from exporter.jobs.target import Refresher, RefreshPolicy, Target, TargetKey
from exporter.metrics.collector import JobsCollector, SelfMetrics
from exporter.web import webconfig
from exporter.web.server import (
    LandingInfo,
    LandingTarget,
    Server,
    WebHooks,
    check_telemetry_path,
    make_wsgi_app,
)

log = logging.getLogger("exporter")

PROG = "alb-jobs-exporter"
DEFAULT_LISTEN = ":9868"
# Without a scrape-timeout header (curl, a browser) a scrape still must not hang forever.
DEFAULT_SCRAPE_BUDGET = 60.0
DEMO_REGIONS = ("cn-hangzhou", "cn-shanghai")
# `--demo --check-config` starts no simulator; its real port is only chosen when it starts.
DEMO_CHECK_URL = "http://127.0.0.1:0"

_P = ParamSpec("_P")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line and exit code 2, as for config errors; the usage block is noise here.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = _ArgumentParser(
        prog=PROG,
        description="Prometheus exporter for Alibaba Cloud ALB asynchronous jobs (ListAsynJobs).",
        epilog="Quick start without credentials: alb-jobs-exporter --demo",
    )
    p.add_argument(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        default=env.get("ALB_EXPORTER_CONFIG", "config.yaml"),
        help="YAML config file (env ALB_EXPORTER_CONFIG; default %(default)s)",
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        metavar="ADDR",
        default=env.get("ALB_EXPORTER_LISTEN", DEFAULT_LISTEN),
        help="host:port to serve on, e.g. :9868 or [::1]:9868 "
        "(env ALB_EXPORTER_LISTEN; default %(default)s)",
    )
    p.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        metavar="PATH",
        default="/metrics",
        help="path of the metrics endpoint (default %(default)s)",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        default=None,
        help="TLS and basic-auth config in the exporter-toolkit format",
    )
    p.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=["debug", "info", "warning", "warn", "error"],
        help="minimum level to log (default %(default)s)",
    )
    p.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=["logfmt", "json"],
        help="log line format (default %(default)s)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="serve metrics from the built-in ALB simulator: no credentials needed",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="refresh once, print the exposition to stdout and exit "
        "(0 if every target succeeded, else 1)",
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config and credential sources, print a summary "
        "without secrets; exit 0 if valid, 2 if not",
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"{PROG} {__version__} (python {platform.python_version()})",
    )
    return p


# --- wiring ------------------------------------------------------------------------------


class _Unavailable:
    """Job source of an account whose credentials cannot be found: every refresh fails
    with the same actionable message, so only that account's targets go `up 0`."""

    def __init__(self, error: CredentialsError) -> None:
        self._error = error

    def list_jobs(self, query: JobQuery) -> list[Job]:
        raise self._error


class _Gate(Generic[_P]):
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
class _Credentials:
    """An account's credential provider (or why it has none) and what it was built from;
    kept across reloads while that is unchanged, so a reload does not fetch anew."""

    provider: CredentialProvider | CredentialsError
    built_from: tuple[config.CredentialsConfig | None, float]
    gate: _Gate[[str, str, float | None]]


@dataclass(eq=False)
class _Wired:
    target: Target
    account: config.AccountConfig
    credentials: _Credentials
    client: ListAsynJobsClient | None
    gate: _Gate[[str, float]] | None = None


class App:
    """Holds the live config and targets; reload swaps them without dropping counters."""

    def __init__(
        self,
        cfg: config.Config,
        env: Mapping[str, str],
        config_path: str | None,
        *,
        telemetry_path: str = "/metrics",
    ) -> None:
        self.env = env
        self.config_path = config_path
        self.telemetry_path = telemetry_path
        self.registry = CollectorRegistry()
        self.metrics = SelfMetrics(self.registry)
        self._lock = threading.Lock()
        self.cfg = cfg
        # One request budget per account, shared by its regions (ALB counts the quota per
        # main account); kept across reloads while the account's rate is unchanged.
        self._buckets: dict[str, TokenBucket] = {}
        self._credentials = self._providers(cfg, {})
        self._wired = self._wire(cfg, {}, self._credentials)
        # The state file is read once, at start-up; a reload keeps the running state.
        self.state = StateFile(cfg.state_file) if cfg.state_file else None
        self._state_error: str | None = None
        if self.state is not None:
            self.state.restore(w.target for w in self._wired.values())
        self.refresher = Refresher(
            {k: w.target for k, w in self._wired.items()},
            cache_ttl=cfg.cache_ttl,
            max_workers=cfg.max_concurrent_refreshes,
            after_refresh=self._after_refresh,
        )
        self.registry.register(JobsCollector(self.refresher.targets))
        self.metrics.set_reload_ok(True)

    def _providers(
        self, cfg: config.Config, old: Mapping[str, _Credentials]
    ) -> dict[str, _Credentials]:
        providers: dict[str, _Credentials] = {}
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
            gate = _Gate(self._credential_observer(account.name))
            provider: CredentialProvider | CredentialsError
            try:
                provider = provider_for(
                    account, self.env, observer=gate, timeout=cfg.request_timeout
                )
            except CredentialsError as exc:
                log.error("%s", exc)
                provider = exc
            providers[account.name] = _Credentials(provider, built_from, gate)
        return providers

    def _wire(
        self,
        cfg: config.Config,
        old: Mapping[TargetKey, _Wired],
        providers: Mapping[str, _Credentials],
    ) -> dict[TargetKey, _Wired]:
        wired: dict[TargetKey, _Wired] = {}
        for account in cfg.accounts:
            credentials = providers[account.name]
            for region in account.regions:
                key = (account.name, region)
                previous = old.get(key)
                if (
                    previous is not None
                    and previous.account == account
                    and previous.credentials is credentials
                    and _same_globals(self.cfg, cfg)
                ):
                    wired[key] = previous  # unchanged: keep its store, so counters continue
                    continue
                carried = None
                if previous is not None and _same_data(self.cfg, previous.account, cfg, account):
                    # Only how the API is reached changed (timeouts, page size, keys): the
                    # jobs are the same, so counters continue instead of resetting and
                    # missing the jobs that finish before the new store's first refresh.
                    carried = previous.target
                wired[key] = self._new_target(cfg, account, region, credentials, carried)
        return wired

    def _after_refresh(self, target: Target) -> None:
        if self.state is None or not target.status().up:
            return
        try:
            self.state.maybe_save(self.refresher.targets())
        except OSError as exc:
            # A full disk or a read-only volume is an operator problem, not a bug: one
            # error line (no traceback) per distinct cause, then quiet until it changes.
            kind = f"{type(exc).__name__}:{exc.errno}"
            if kind != self._state_error:
                log.error("cannot write state file %s: %s", self.state.path, exc)
            self._state_error = kind
        else:
            if self._state_error is not None:
                log.info("state file %s written again", self.state.path)
            self._state_error = None

    def _bucket(self, account: config.AccountConfig) -> TokenBucket:
        bucket = self._buckets.get(account.name)
        if bucket is None or bucket.max_rate != account.max_requests_per_second:
            bucket = TokenBucket(account.max_requests_per_second)
            self._buckets[account.name] = bucket
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
        credentials: _Credentials,
        carried: Target | None = None,
    ) -> _Wired:
        client = None
        gate = None
        provider = credentials.provider
        source: ListAsynJobsClient | _Unavailable
        if isinstance(provider, CredentialsError):
            source = _Unavailable(provider)
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
                observer=(gate := _Gate(self.metrics.request_observer(account.name, region))),
                user_agent=f"{PROG}/{__version__}",
                on_auth_expired=provider.invalidate,
                pacer=self._bucket(account),
            )
        if carried is None:
            store = JobStore(
                lookback=cfg.lookback,
                recent_failures=cfg.recent_failures,
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
        )
        return _Wired(target, account, credentials, client, gate)

    # --- hooks for web ---

    def prepare_scrape(self, budget: float | None) -> None:
        self.refresher.ensure_fresh(None, timeout=budget or DEFAULT_SCRAPE_BUDGET)

    def probe(self, account: str, region: str, budget: float | None) -> CollectorRegistry | None:
        target = self.refresher.target((account, region))
        if target is None:
            return None
        self.refresher.ensure_fresh([target.key], timeout=budget or DEFAULT_SCRAPE_BUDGET)
        registry = CollectorRegistry()
        registry.register(JobsCollector(lambda: [target]))
        return registry

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
        return LandingInfo(version=__version__, targets=rows, telemetry_path=self.telemetry_path)

    def reload(self) -> str | None:
        """Re-read the config file; on error keep the running config and report why."""
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
            old, old_credentials = self._wired, self._credentials
            self._credentials = self._providers(new_cfg, old_credentials)
            self._wired = self._wire(new_cfg, old, self._credentials)
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
            log.info("config reloaded: %d targets", len(self._wired))
            fresh = [k for k, w in self._wired.items() if old.get(k) is not w]
        if fresh:
            # New targets are tried right away, so /-/ready and their series do not wait
            # for the next scrape.
            threading.Thread(
                target=self.refresher.ensure_fresh, args=(fresh,), name="reload-warmup", daemon=True
            ).start()
        return None

    def all_up(self) -> bool:
        return all(t.status().up for t in self.refresher.targets())

    def close(self) -> None:
        for bucket in self._buckets.values():
            bucket.close()
        self.refresher.shutdown()
        if self.state is not None:
            try:
                self.state.save(self.refresher.targets())
            except OSError as exc:
                log.error("cannot write state file %s: %s", self.state.path, exc)
        for w in self._wired.values():
            self._close(w)

    @staticmethod
    def _close(w: _Wired) -> None:
        if w.client is not None:
            w.client.close()


def _same_globals(a: config.Config, b: config.Config) -> bool:
    """Whether a target built under `a` is still right under `b` (accounts aside)."""
    return replace(a, accounts=(), cache_ttl=0.0) == replace(b, accounts=(), cache_ttl=0.0)


def _same_data(
    a: config.Config,
    account_a: config.AccountConfig,
    b: config.Config,
    account_b: config.AccountConfig,
) -> bool:
    """Whether a target's job store can carry over: same jobs, same counting window.

    (Called for one region key, so name and region already match.)
    """
    return (
        a.lookback == b.lookback
        and a.recent_failures == b.recent_failures
        and account_a.filters == account_b.filters
        and account_a.endpoint == account_b.endpoint
    )


# --- modes -------------------------------------------------------------------------------


def _demo_config(sim_url: str, demo_id: str, demo_secret: str) -> config.Config:
    creds = config.CredentialsConfig(access_key_id=demo_id, access_key_secret=demo_secret)
    return config.Config(
        cache_ttl=5.0,
        accounts=(
            config.AccountConfig(
                name="demo",
                regions=DEMO_REGIONS,
                endpoint=f"{sim_url}/{{region}}/",
                credentials=creds,
            ),
            # A second account signs with V1 to show both schemes working side by side.
            config.AccountConfig(
                name="demo-v1",
                regions=("eu-central-1",),
                endpoint=f"{sim_url}/{{region}}/",
                signature="v1",
                credentials=creds,
            ),
        ),
    )


def _check_config(cfg: config.Config, env: Mapping[str, str]) -> int:
    problems = []
    for i, account in enumerate(cfg.accounts):
        try:
            provider_for(account, env)
        except CredentialsError as exc:
            problems.append(f"accounts[{i}].credentials: {exc}")
    if not cfg.accounts:
        problems.append("accounts: at least one account is required")
    if problems:
        for problem in problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    print(config.summary(cfg))
    return 0


def _serve(app: App, args: argparse.Namespace, web: webconfig.LiveWebConfig | None = None) -> int:
    hooks = WebHooks(
        prepare_scrape=app.prepare_scrape,
        registry=app.registry,
        probe=app.probe,
        is_ready=app.is_ready,
        reload=app.reload,
        landing=app.landing,
    )
    wsgi = make_wsgi_app(
        hooks,
        telemetry_path=app.telemetry_path,
        authenticate=web.authenticate if web is not None else None,
        headers=web.headers if web is not None else None,
    )
    tls = web.ssl_context if web is not None and web.tls_enabled else None
    try:
        server = Server(wsgi, args.listen, ssl_context=tls)
    except (OSError, ValueError) as exc:
        print(f"{PROG}: error: --web.listen-address {args.listen}: {exc}", file=sys.stderr)
        app.close()
        return 2
    stop = threading.Event()

    def _on_stop(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    def _on_hup(_signum: int, _frame: object) -> None:
        threading.Thread(target=app.reload, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, _on_stop)
    signal.signal(signal.SIGINT, _on_stop)
    signal.signal(signal.SIGHUP, _on_hup)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    log.info(
        "listening on %s (version %s, %d targets)",
        server.url,
        __version__,
        len(app.refresher.targets()),
    )
    # Refresh once right away so /-/ready turns 200 without waiting for the first scrape.
    threading.Thread(target=app.refresher.ensure_fresh, name="warmup", daemon=True).start()
    stop.wait()
    server.shutdown()  # stops accepting, lets in-flight scrapes finish
    thread.join(timeout=30)
    app.close()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    args = build_parser(env).parse_args(argv)
    try:
        check_telemetry_path(args.telemetry_path)
    except ValueError as exc:
        print(f"{PROG}: error: --web.telemetry-path: {exc}", file=sys.stderr)
        return 2
    logfmt.setup(args.log_level, args.log_format)
    web = None
    if args.web_config_file:
        try:
            web = webconfig.LiveWebConfig(args.web_config_file)
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"{PROG}: error: --web.config.file: {problem}", file=sys.stderr)
            return 2

    sim = None
    config_path: str | None = args.config_file
    if args.demo:
        from exporter import simulator  # only the demo needs the stand-in in-process

        if args.check_config:
            print("demo mode: the built-in simulator's port (0 below) is chosen when it starts")
            demo = _demo_config(
                DEMO_CHECK_URL, simulator.DEMO_ACCESS_KEY_ID, simulator.DEMO_ACCESS_KEY_SECRET
            )
            return _check_config(demo, env)
        sim = simulator.SimulatorServer(
            simulator.Simulator(regions=(*DEMO_REGIONS, "eu-central-1"))
        )
        sim.start()
        cfg = _demo_config(sim.url, simulator.DEMO_ACCESS_KEY_ID, simulator.DEMO_ACCESS_KEY_SECRET)
        config_path = None
        log.info("demo mode: serving synthetic jobs from the built-in simulator at %s", sim.url)
    else:
        try:
            cfg = config.load(args.config_file, env)
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"{PROG}: error: {problem}", file=sys.stderr)
            return 2
        if args.check_config:
            return _check_config(cfg, env)
        if not cfg.accounts:
            print(f"{PROG}: error: accounts: at least one account is required", file=sys.stderr)
            return 2

    app = App(cfg, env, config_path, telemetry_path=args.telemetry_path)
    try:
        if args.once:
            app.refresher.ensure_fresh(None, timeout=None)
            sys.stdout.write(generate_latest(app.registry).decode())
            sys.stdout.flush()
            app.close()
            return 0 if app.all_up() else 1
        return _serve(app, args, web)
    finally:
        if sim is not None:
            sim.shutdown()


def run() -> None:
    # `_created` series double the counters' cardinality and most dashboards ignore them.
    # prometheus_client only has a process-wide switch for them, so the process entry
    # point flips it and `main()` leaves global state alone for in-process callers.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    sys.exit(main())
