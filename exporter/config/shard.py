"""Which replica owns a target: `--shard.count` / `--shard.index` and the one hash behind them.

A target (account x region) belongs to shard

    int.from_bytes(sha256(account + "\\0" + region)[:4], "big") % count

(UTF-8). A region id is lowercase letters, digits and '-', so the last NUL splits the
pair unambiguously whatever the account name holds.
The README gives the same function as a shell one-liner, so anyone can tell which replica
owns a target without running the exporter. Python's `hash()` would differ per process.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from exporter.config.model import Config

#: `--shard.index hostname`: the ordinal of a StatefulSet pod, from its host name.
HOSTNAME = "hostname"
_ORDINAL = re.compile(r".*-([0-9]+)")


def shard_of(account: str, region: str, count: int) -> int:
    """The shard, `0..count-1`, that owns the target `account` x `region`."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, not {count}")
    digest = hashlib.sha256(f"{account}\0{region}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % count


@dataclass(frozen=True)
class Shard:
    """This replica's share of the targets: shard `index` of `count`."""

    index: int = 0
    count: int = 1

    def owner(self, account: str, region: str) -> int:
        return shard_of(account, region, self.count)

    def owns(self, account: str, region: str) -> bool:
        return self.count == 1 or self.owner(account, region) == self.index

    def select(self, config: Config) -> Config:
        """`config` with only the targets this shard owns; accounts left without a region
        are dropped, so their credentials are never built."""
        accounts = []
        for account in config.accounts:
            regions = tuple(r for r in account.regions if self.owns(account.name, r))
            if regions:
                same = regions == account.regions
                accounts.append(account if same else replace(account, regions=regions))
        return replace(config, accounts=tuple(accounts))

    def __str__(self) -> str:
        return f"shard {self.index} of {self.count}"


#: One replica serving every target: the default.
UNSHARDED = Shard()


def parse_count(text: str) -> int:
    """`--shard.count`: a whole number of at least 1 (ValueError otherwise)."""
    count = _whole(text)
    if count is None or count < 1:
        raise ValueError(f"must be a whole number of at least 1, not {text!r}")
    return count


def parse_index(text: str, count: int, hostname: Callable[[], str]) -> int:
    """`--shard.index`: `0..count-1`, or `hostname` for the trailing `-<ordinal>` of the
    host name (a StatefulSet pod is `<name>-<ordinal>`). ValueError otherwise."""
    if text.strip() == HOSTNAME:
        host = hostname()
        # An FQDN's first label is the pod name.
        m = _ORDINAL.fullmatch(host.split(".", 1)[0])
        if m is None:
            raise ValueError(
                f"hostname: the host name {host!r} has no trailing -<ordinal> "
                "(as a StatefulSet pod's has, e.g. alb-jobs-exporter-2)"
            )
        index, source = int(m.group(1)), f"the host name {host!r} gives ordinal"
    else:
        whole = _whole(text)
        if whole is None:
            raise ValueError(f"must be a whole number or {HOSTNAME!r}, not {text!r}")
        index, source = whole, "shard"
    if not 0 <= index < count:
        raise ValueError(f"{source} {index}, outside 0..{count - 1} (--shard.count {count})")
    return index


def _whole(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None
