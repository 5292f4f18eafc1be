"""Exporter config files for tests, written as YAML from plain data: accounts pointed at a
running simulator (a process or an in-process server), plus any global keys."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import yaml

# Tests watch changes land within a second or two: a short cache, and no lookback or
# timeout longer than a test runs.
QUICK: Mapping[str, object] = {"lookback": "1h", "cache_ttl": "1s", "request_timeout": "5s"}

# Account keys for tests that do not test the pacing itself: the default budget of 5 calls/s
# stretches each page-through of hundreds of jobs over seconds (ratelimit.py).
UNPACED: Mapping[str, object] = {"max_requests_per_second": 200}


class Served(Protocol):
    """A simulator: `procs.Proc` of `python -m exporter.simulator`, or a `SimulatorServer`."""

    @property
    def url(self) -> str: ...


def access_key(key_id: str, secret: str) -> dict[str, str]:
    """A `credentials` block of long-lived keys (`secret` may be `${VAR}`)."""
    return {"access_key_id": key_id, "access_key_secret": secret}


def account(
    sim: Served,
    name: str,
    regions: Iterable[str],
    credentials: Mapping[str, object] | None = None,
    **keys: object,
) -> dict[str, object]:
    """One entry of `accounts:`, each region routed to the simulator's job set for it.
    Without `credentials` the account uses the default credential chain."""
    entry: dict[str, object] = {
        "name": name,
        "regions": list(regions),
        "endpoint": f"{sim.url}/{{region}}/",
        **keys,
    }
    if credentials is not None:
        entry["credentials"] = dict(credentials)
    return entry


def write_config(
    path: Path,
    accounts: Sequence[Mapping[str, object]],
    *,
    base: Mapping[str, object] = QUICK,
    **settings: object,
) -> Path:
    """Writes the config file (global keys: `base`, then `settings`) and returns its path."""
    document = {**base, **settings, "accounts": [dict(a) for a in accounts]}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
