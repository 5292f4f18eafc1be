"""The standalone simulator: `python -m exporter.simulator --listen 127.0.0.1:0` (see
`--help`). Prints the URL it serves on as its first line and stops on SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from collections.abc import Sequence

from exporter.simulator.core import DEFAULT_REGIONS, Simulator
from exporter.simulator.faults import FAULT_KNOBS, MALFORMED, coerce_knob
from exporter.simulator.gateway import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET
from exporter.simulator.messages import log
from exporter.simulator.server import SimulatorServer

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`30s`, `15m`, `2h`, `1d` or a number of seconds."""
    text = text.strip()
    unit = _UNITS.get(text[-1:].lower()) if text else None
    try:
        value = float(text[:-1]) * unit if unit else float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use 30s, 15m, 2h, 1d or seconds)") from None
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"not a duration: {text!r}")
    return value


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen wants HOST:PORT, [V6]:PORT or :PORT, not {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _parse_fault(text: str) -> tuple[str | None, str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--fault wants KNOB=VALUE or REGION:KNOB=VALUE, not {text!r}")
    region, _, knob = name.rpartition(":")
    coerce_knob(knob, value)
    return region or None, knob, value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description=(
            "Simulated Alibaba Cloud ALB ListAsynJobs API (2020-06-16) for demos and tests: "
            "real V1/V3 signature checks, evolving jobs per region, fault knobs and a "
            "loopback-only control API under /_sim/. Prints 'listening on http://HOST:PORT' "
            "as its first line. Regions are routed by path (/<region>/) or by Host header "
            "(alb.<region>.aliyuncs.com); '/' on another host is the first region."
        ),
        epilog=(
            f"fault knobs: {', '.join(FAULT_KNOBS)}. "
            f"malformed: {', '.join(MALFORMED)}. "
            "Control: GET /_sim/jobs?region=R, GET /_sim/state, GET /_sim/requests, "
            'POST|DELETE /_sim/faults, POST /_sim/time {"freeze":true,"advance":60}, '
            'POST /_sim/jobs, DELETE /_sim/jobs?region=R&id=ID, POST /_sim/sts {"ttl":900}, '
            "GET|POST /_sim/identity (STS and metadata knobs, their request log). "
            "Stand-ins: STS AssumeRole / AssumeRoleWithOIDC at /sts/, ECS instance metadata "
            "at /latest/ (token flow and RAM role credentials)."
        ),
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="address to serve on; port 0 picks a free port (default %(default)s)",
    )
    parser.add_argument(
        "--regions",
        default="cn-hangzhou,cn-shanghai",
        metavar="R1,R2",
        help="regions created up front; the first answers '/' "
        "(others are created on first use) (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="RNG seed (default %(default)s)")
    parser.add_argument(
        "--jobs-per-minute",
        type=float,
        default=6.0,
        metavar="N",
        help="job arrival rate per region (default %(default)s)",
    )
    parser.add_argument(
        "--history",
        default="2h",
        metavar="DURATION",
        help="jobs pre-populated into the past: 30m, 2h, ... (default %(default)s)",
    )
    parser.add_argument(
        "--retention",
        default="24h",
        metavar="DURATION",
        help="generated jobs older than this are forgotten (default %(default)s)",
    )
    parser.add_argument(
        "--access-key-id",
        action="append",
        default=[],
        metavar="ID",
        help="accepted AccessKeyId; repeat together with --access-key-secret "
        f"for several keys (default: {DEMO_ACCESS_KEY_ID})",
    )
    parser.add_argument(
        "--access-key-secret",
        action="append",
        default=[],
        metavar="SECRET",
        help=f"the secret of the matching --access-key-id (default: {DEMO_ACCESS_KEY_SECRET})",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="[REGION:]KNOB=VALUE",
        help="set a fault knob at start, e.g. throttle_every=3 or "
        "cn-shanghai:malformed=html502 (repeatable)",
    )
    parser.add_argument("--frozen", action="store_true", help="start with simulated time frozen")
    parser.add_argument(
        "--sts-ttl",
        default="",
        metavar="DURATION",
        help="lifetime of keys issued by the STS and metadata stand-ins, e.g. 20s "
        "(default: the requested DurationSeconds, 6h for metadata; real STS grants >= 15m)",
    )
    parser.add_argument(
        "--imds-role",
        default="",
        metavar="NAME",
        help="RAM role attached to the simulated ECS instance (default: none)",
    )
    parser.add_argument(
        "--oidc-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="an OIDC token AssumeRoleWithOIDC accepts (repeatable; default: any)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="requests are logged at debug, without query strings or secrets",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = _parse_listen(args.listen)
        regions = [r.strip() for r in args.regions.split(",") if r.strip()]
        history = parse_duration(args.history)
        retention = parse_duration(args.retention)
        faults = [_parse_fault(f) for f in args.fault]
        if len(args.access_key_id) != len(args.access_key_secret):
            raise ValueError("give each --access-key-id its own --access-key-secret")
        credentials = dict(zip(args.access_key_id, args.access_key_secret, strict=True)) or None
        simulator = Simulator(
            regions or DEFAULT_REGIONS,
            seed=args.seed,
            jobs_per_minute=args.jobs_per_minute,
            history_seconds=history,
            retention_seconds=retention or 1.0,
            credentials=credentials,
        )
        for region, knob, value in faults:
            simulator.set_faults(region, **{knob: value})
        simulator.set_identity(
            sts_ttl=parse_duration(args.sts_ttl) if args.sts_ttl else None,
            imds_role=args.imds_role or None,
            oidc_tokens=args.oidc_token,
        )
    except ValueError as err:
        parser.error(str(err))  # exits 2 with a one-line message
    logging.basicConfig(
        level=args.log_level.upper(),
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        stream=sys.stderr,
    )
    if args.frozen:
        simulator.freeze()

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d received, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        server = SimulatorServer(simulator, host, port).start()
    except OSError as err:
        print(f"simulator: cannot listen on {args.listen}: {err}", file=sys.stderr)
        return 1
    print(f"listening on {server.url}", flush=True)
    log.info(
        "simulating regions %s (seed %d, %.3g jobs/min per region); key ids: %s",
        ",".join(simulator.regions),
        args.seed,
        args.jobs_per_minute,
        ",".join(simulator.credentials),
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
    log.info("simulator stopped")
    return 0
