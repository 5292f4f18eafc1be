"""A stand-in for the ALB `ListAsynJobs` API, used by `--demo` and by every end-to-end test.

It speaks real HTTP, checks V1 and V3 signatures exactly as the gateway does (with our own
`signing` functions), serves per-region jobs that evolve with simulated time, and has fault
knobs (throttling, 5xx, hangs, malformed bodies, paging bugs, denials, clock skew). It also
stands in for an organisation: Resource Directory's ListAccounts (`/rd/`), ALB's
DescribeRegions and AssumeRole into member accounts, with their own fault knobs.
Standalone: `python -m exporter.simulator --listen 127.0.0.1:0` (see `--help`).

The parts: `core` (the `Simulator` facade: lock, time, dispatch), `world` and `jobs` (regions
and their evolving jobs), `alb` (the ListAsynJobs endpoint) with `gateway` (keys, signatures,
nonces), `listing` (paging, filters, rendering) and `faults` (the knobs), `identity` (STS and
ECS metadata stand-ins), `directory` and `resource_directory` (the organisation and its
ListAccounts endpoint), `control` (the /_sim/ API), `server` (HTTP) and `cli`.
"""

from exporter.simulator.cli import main, parse_duration
from exporter.simulator.core import DEFAULT_REGIONS, Simulator
from exporter.simulator.directory import DEMO_MEMBERS
from exporter.simulator.faults import FAULT_KNOBS, Faults
from exporter.simulator.gateway import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    NONCE_WINDOW_SECONDS,
    TIMESTAMP_TOLERANCE_SECONDS,
)
from exporter.simulator.identity import STS_API_VERSION
from exporter.simulator.messages import SimRequest, SimResponse
from exporter.simulator.server import SimulatorServer

__all__ = [
    "DEFAULT_REGIONS",
    "DEMO_ACCESS_KEY_ID",
    "DEMO_ACCESS_KEY_SECRET",
    "DEMO_MEMBERS",
    "FAULT_KNOBS",
    "NONCE_WINDOW_SECONDS",
    "STS_API_VERSION",
    "TIMESTAMP_TOLERANCE_SECONDS",
    "Faults",
    "SimRequest",
    "SimResponse",
    "Simulator",
    "SimulatorServer",
    "main",
    "parse_duration",
]
