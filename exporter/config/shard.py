"""Which replica owns a target: `--shard.count` / `--shard.index` and the one hash behind them.

A target (account x region) belongs to shard

    jump_consistent_hash(fnv1a_64(account + "\\0" + region), count)

(UTF-8; Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm", 2014).
A region id is lowercase letters, digits and '-', so the last NUL splits the pair
unambiguously whatever the account name holds. Jump hash rather than `hash % count`:
growing from N to N+1 shards moves only the targets that go to the new shard (about
1/(N+1) of them) and shrinking moves only the removed shard's, so a StatefulSet scaled up
or down re-homes as few targets (and resets as few counters) as possible. Python's
`hash()` would differ per process. `alb-jobs-exporter --shard.count N --shard.owner-of
ACCOUNT REGION` prints the owner, since jump hash is not a shell expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from exporter.config.model import Config

#: `--shard.index hostname`: the ordinal of a StatefulSet pod, from its host name.
HOSTNAME = "hostname"
_ORDINAL = re.compile(r".*-([0-9]+)")


_MASK64 = (1 << 64) - 1
_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
# The 64-bit linear congruential generator of the paper's reference code.
_LCG_MULTIPLIER = 2862933555777941757


def fnv1a_64(data: bytes) -> int:
    """FNV-1a, 64 bits (Fowler, Noll, Vo): xor each byte in, then multiply."""
    h = _FNV64_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV64_PRIME) & _MASK64
    return h


def jump_consistent_hash(key: int, buckets: int) -> int:
    """The bucket, `0..buckets-1`, of a 64-bit `key` (Lamping & Veach's reference, line
    by line: a pseudo-random walk whose jumps land past `buckets` for all but the last)."""
    if buckets < 1:
        raise ValueError(f"bucket count must be at least 1, not {buckets}")
    key &= _MASK64
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _LCG_MULTIPLIER + 1) & _MASK64
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def shard_of(account: str, region: str, count: int) -> int:
    """The shard, `0..count-1`, that owns the target `account` x `region`."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, not {count}")
    return jump_consistent_hash(fnv1a_64(f"{account}\0{region}".encode()), count)


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
