"""Composition root: flags, logging, modes and serving; the wiring is `exporter.app`.

`main(argv) -> int` is the whole program; `run()` is the console-script entry point.
Nothing imports this module but `exporter.__main__`.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import logging
import os
import platform
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from prometheus_client import disable_created_metrics, generate_latest

from exporter import __version__, config, logfmt
from exporter.alibaba.credentials import Plan, plan_for, provider_for
from exporter.app import PROG, App
from exporter.config.shard import (
    HOSTNAME,
    UNSHARDED,
    Shard,
    parse_count,
    parse_index,
    shard_of,
)
from exporter.errors import ConfigError, CredentialsError
from exporter.web import (
    Limits,
    Server,
    check_telemetry_path,
    make_wsgi_app,
    raise_open_files_limit,
    webconfig,
)
from exporter.wire import REGIONS

log = logging.getLogger("exporter")

DEFAULT_LISTEN = ":9868"
DEMO_REGIONS = ("cn-hangzhou", "cn-shanghai")
# `--demo --check-config` starts no simulator; its real port is only chosen when it starts.
DEMO_CHECK_URL = "http://127.0.0.1:0"
#: Seconds at most between a signal and its handler running (see `_serve`).
_SIGNAL_POLL = 0.2


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line and exit code 2, as for config errors; the usage block is noise here.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 and less than 3600")
    return value


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
    # Hidden: the deadline for a request's head and body (default 10 s, README "Serving");
    # the tests shorten it to see slow clients cut without waiting 10 s.
    p.add_argument(
        "--web.read-timeout",
        dest="read_timeout",
        type=_positive_seconds,
        default=Limits().read_timeout,
        help=argparse.SUPPRESS,
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
    # No argparse default: an absent flag falls back to its env var, and an error then
    # names where the bad value came from.
    p.add_argument(
        "--shard.count",
        dest="shard_count",
        metavar="N",
        default=None,
        help="number of replicas the targets are split across "
        "(env ALB_EXPORTER_SHARD_COUNT; default 1)",
    )
    p.add_argument(
        "--shard.index",
        dest="shard_index",
        metavar="I",
        default=None,
        help=f"this replica's shard, 0..N-1, or '{HOSTNAME}' for the trailing -<ordinal> "
        "of the host name, as in a StatefulSet (env ALB_EXPORTER_SHARD_INDEX; default 0)",
    )
    p.add_argument(
        "--shard.owner-of",
        dest="owner_of",
        nargs=2,
        metavar=("ACCOUNT", "REGION"),
        default=None,
        help="print which of the --shard.count shards owns the target ACCOUNT x REGION "
        "(a listed or discovered one) and exit; needs no config",
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"{PROG} {__version__} (python {platform.python_version()})",
    )
    return p


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
        # And an organisation: the simulator's directory (simulator.DEMO_MEMBERS), each
        # member's regions read with DescribeRegions, one member without the role (up 0).
        discovery=config.DiscoveryConfig(
            interval=60.0,
            resource_directory=config.ResourceDirectoryConfig(
                credentials=creds,
                directory_endpoint=f"{sim_url}/rd/",
                sts_endpoint=f"{sim_url}/sts/",
                member=config.AccountConfig(
                    "",
                    (),
                    endpoint=f"{sim_url}/{{region}}/",
                    all_regions=True,
                    exclude_regions=("eu-central-1",),
                ),
            ),
        ),
    )


def _shard(args: argparse.Namespace, env: Mapping[str, str], hostname: Callable[[], str]) -> Shard:
    """The `--shard.*` flags (or their env vars) as a Shard; ValueError names the flag."""

    def given(value: str | None, flag: str, var: str, default: str) -> tuple[str, str]:
        if value is not None:
            return value, flag
        if var in env:
            return env[var], f"{flag} (from {var})"
        return default, flag

    count_text, count_flag = given(
        args.shard_count, "--shard.count", "ALB_EXPORTER_SHARD_COUNT", "1"
    )
    index_text, index_flag = given(
        args.shard_index, "--shard.index", "ALB_EXPORTER_SHARD_INDEX", "0"
    )
    try:
        count = parse_count(count_text)
    except ValueError as exc:
        raise ValueError(f"{count_flag}: {exc}") from None
    try:
        return Shard(parse_index(index_text, count, hostname), count)
    except ValueError as exc:
        raise ValueError(f"{index_flag}: {exc}") from None


def _check_config(cfg: config.Config, env: Mapping[str, str], shard: Shard = UNSHARDED) -> int:
    """The config summary, which credentials each account would use and warnings for what
    looks wrong but may be right (a region this version does not know). Offline: no source
    is fetched, and discovery's ListAccounts / DescribeRegions are not called."""
    problems = []
    plans: list[tuple[str, Plan]] = []
    for i, account in enumerate(cfg.accounts):
        try:
            plans.append((account.name, plan_for(account, env)))
        except CredentialsError as exc:
            problems.append(f"accounts[{i}].credentials: {exc}")
    directory = cfg.discovery.resource_directory
    if directory is not None:
        try:
            provider_for(
                config.AccountConfig("discovery", (), credentials=directory.credentials), env
            )
        except CredentialsError as exc:
            problems.append(f"discovery.resource_directory.credentials: {exc}")
    if not cfg.accounts and directory is None:
        problems.append(config.NO_ACCOUNTS)
    if problems:
        for problem in problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    for warning in _config_warnings(cfg, plans):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    print(config.summary(cfg, shard))
    print("credentials found (no API called):")
    for name, plan in plans:
        print(f"  {name}: {plan.source}" + (" -- unconfirmed until it runs" * plan.unconfirmed))
    return 0


def _did_you_mean(region: str) -> str:
    close = difflib.get_close_matches(region, REGIONS, n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def _config_warnings(cfg: config.Config, plans: list[tuple[str, Plan]]) -> list[str]:
    warnings = []
    for i, account in enumerate(cfg.accounts):
        for j, region in enumerate(account.regions):
            # A custom endpoint outside aliyuncs.com (a proxy, the simulator) may name any region.
            if region not in REGIONS and "aliyuncs.com" in (account.endpoint or "aliyuncs.com"):
                warnings.append(
                    f"accounts[{i}].regions[{j}]: {region!r} is not a region ALB is known to"
                    f" serve{_did_you_mean(region)}; alb.{region}.aliyuncs.com"
                    " will not resolve unless ALB opened it after this release"
                )
    for name, plan in plans:
        if plan.unconfirmed:
            warnings.append(
                f"account {name}: no credentials present here; at run time it will try"
                f" {plan.source.removesuffix(' (default chain)')}, which only the network can"
                " confirm (the metadata service answers on an ECS instance or ACK node with a"
                f" RAM role attached). Ruled out: {', '.join(plan.tried)}"
            )
    return warnings


def _serve(app: App, args: argparse.Namespace, web: webconfig.LiveWebConfig | None = None) -> int:
    wsgi = make_wsgi_app(
        app.web_hooks(),
        telemetry_path=app.telemetry_path,
        authenticate=web.authenticate if web is not None else None,
        headers=web.headers if web is not None else None,
    )
    tls = web.ssl_context if web is not None and web.tls_enabled else None
    raise_open_files_limit()  # a connection is a file descriptor
    try:
        server = Server(
            wsgi, args.listen, ssl_context=tls, limits=Limits(read_timeout=args.read_timeout)
        )
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
        "listening on %s (version %s, %d targets, %s)",
        server.url,
        __version__,
        len(app.refresher.targets()),
        app.shard,
    )
    app.discoverer.start()
    # Refresh once right away so /-/ready turns 200 without waiting for the first scrape.
    threading.Thread(target=app.refresher.ensure_fresh, name="warmup", daemon=True).start()
    # Not an untimed stop.wait(): Python runs signal handlers in the main thread only, and
    # when the kernel hands SIGTERM to another of our threads, a main thread asleep in an
    # untimed wait is never woken to run the handler; the exporter then ignored SIGTERM
    # until Kubernetes' SIGKILL (about 1 stop in 40 during start-up). Waking to look
    # bounds the delay.
    while not stop.wait(_SIGNAL_POLL):
        pass
    # Kubernetes sends SIGKILL 30 s after SIGTERM: the state is flushed while in-flight
    # scrapes finish (the drain is bounded by the server's graceful timeout), not after.
    server.begin_shutdown()  # no new request starts from here on
    drain = threading.Thread(target=server.shutdown, name="http-drain", daemon=True)
    drain.start()
    app.close()  # waits for in-flight refreshes, then writes the state file
    drain.join()
    thread.join(timeout=5)
    log.info("stopped")
    return 0


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    hostname: Callable[[], str] = socket.gethostname,
) -> int:
    env = dict(os.environ) if env is None else env
    args = build_parser(env).parse_args(argv)
    try:
        check_telemetry_path(args.telemetry_path)
    except ValueError as exc:
        print(f"{PROG}: error: --web.telemetry-path: {exc}", file=sys.stderr)
        return 2
    try:
        shard = _shard(args, env, hostname)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.owner_of is not None:
        # Jump hash is not a shell expression: this is README's "which shard owns it".
        print(shard_of(args.owner_of[0], args.owner_of[1], shard.count))
        return 0
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
            return _check_config(demo, env, shard)
        demo_sim = simulator.Simulator(regions=(*DEMO_REGIONS, "eu-central-1"))
        demo_sim.set_directory(members=simulator.DEMO_MEMBERS)
        sim = simulator.SimulatorServer(demo_sim)
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
            return _check_config(cfg, env, shard)
        if not cfg.accounts and cfg.discovery.resource_directory is None:
            print(f"{PROG}: error: {config.NO_ACCOUNTS}", file=sys.stderr)
            return 2

    app = App(
        cfg, env, config_path, telemetry_path=args.telemetry_path, shard=shard, demo=args.demo
    )
    try:
        if args.once:
            try:
                app.discoverer.run_once()
                app.refresher.ensure_fresh(None, timeout=None)
                sys.stdout.write(generate_latest(app.exposition).decode())
                sys.stdout.flush()
            finally:
                app.close()  # the final state write, even when stdout is gone (`| head`)
            return 0 if app.all_up() else 1
        return _serve(app, args, web)
    finally:
        if sim is not None:
            sim.shutdown()


# Allocations between two collections of the young generation; CPython's default is 700.
YOUNG_GENERATION = 20_000


def setup_process() -> None:
    """The process-wide settings of the exporter's process, made by its entry point before
    `main()`, which leaves global state alone for in-process callers (the tests). The
    in-process benchmark makes them too, to measure what users run."""
    # `_created` series double the counters' cardinality and most dashboards ignore them;
    # prometheus_client only has a process-wide switch for them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    # The job store holds ~1,400 objects the collector tracks per target (1.4 million at
    # 1,000 targets), kept for hours. At the default threshold, what 32 refreshes in
    # flight hold (pages, parsed jobs) outlives young collections, and the promoted
    # objects set off a full collection, a traversal of all 1.4 million under the GIL,
    # about every second round of refreshes: ~1 ms per target each time. With a larger
    # young generation most of it dies first. Measured in process at 1,000 targets of the
    # simulator's mix, 8 rounds each: full collections 1 instead of 3, the collector's CPU
    # 0.55 instead of 0.86 ms per target per round, peak memory the same (955 MiB, with
    # the simulator). Only garbage in reference cycles waits longer; the rest is freed at
    # once, by reference counting.
    gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])


def run() -> None:
    setup_process()
    sys.exit(main())
