"""The shard hash and the `--shard.*` values (exporter/config/shard.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.config import AccountConfig, Config
from exporter.config.shard import (
    Shard,
    fnv1a_64,
    jump_consistent_hash,
    parse_count,
    parse_index,
    shard_of,
)

# Published values, not computed by the code under test.
# FNV-1a 64: the test vectors of Fowler/Noll/Vo's reference suite (isthe.com/chongo/tech/comp/fnv).
FNV1A_64 = [(b"", 0xCBF29CE484222325), (b"a", 0xAF63DC4C8601EC8C), (b"foobar", 0x85944171F73967E8)]
# Jump hash: the vectors of the Go and Python ports of Lamping & Veach's C++ (dgryski/go-jump,
# lithammer/python-jump-consistent-hash), including keys over 2^63 and counts over 2^31.
JUMP = [
    (1, 1, 0),
    (42, 57, 43),
    (0xDEAD10CC, 1, 0),
    (0xDEAD10CC, 666, 361),
    (256, 1024, 520),
    (1, 128, 55),
    (129, 128, 120),
    (128, 100000000, 38172097),
    (128, 2147483648, 1644467860),
    (18446744073709551615, 128, 92),
]

# README "Sharding"'s worked examples for N = 3 (the owners README quotes).
WORKED = [
    ("prod", "cn-hangzhou", 1),
    ("prod", "cn-shanghai", 0),
    ("prod", "eu-central-1", 2),
    ("staging", "cn-hangzhou", 0),
    ("staging", "eu-central-1", 0),
]


@pytest.mark.parametrize(("data", "digest"), FNV1A_64)
def test_fnv1a_64_matches_the_published_vectors(data: bytes, digest: int) -> None:
    assert fnv1a_64(data) == digest


@pytest.mark.parametrize(("key", "buckets", "bucket"), JUMP)
def test_jump_hash_matches_the_published_vectors(key: int, buckets: int, bucket: int) -> None:
    assert jump_consistent_hash(key, buckets) == bucket


def test_the_two_together_match_go_jumps_fnv1a_string_vector() -> None:
    # dgryski/go-jump: HashString("\u4e2d\u56fd", 10, FNV1a) == 5 (hash/fnv's New64a).
    assert jump_consistent_hash(fnv1a_64("\u4e2d\u56fd".encode()), 10) == 5


def test_the_owner_is_jump_hash_of_fnv1a_over_account_nul_region() -> None:
    for account, region, _ in WORKED:
        key = fnv1a_64(account.encode() + b"\0" + region.encode())
        assert [shard_of(account, region, n) for n in (1, 2, 3, 7)] == [
            jump_consistent_hash(key, n) for n in (1, 2, 3, 7)
        ]


def test_the_readme_example_owners() -> None:
    assert [shard_of(a, r, 3) for a, r, _ in WORKED] == [owner for _, _, owner in WORKED]


def test_the_separator_keeps_account_and_region_apart() -> None:
    # Plain concatenation would give these two the same owner by construction.
    owners = {shard_of("ab", "c-1", 1 << 30), shard_of("a", "bc-1", 1 << 30)}
    assert len(owners) == 2


@pytest.mark.parametrize("count", [1, 2, 3, 6, 10])
def test_growing_by_one_moves_only_targets_to_the_new_shard(count: int) -> None:
    # The property jump hash is chosen for (a modulo would move about (N-1)/N of them).
    targets = [(f"account-{a}", f"region-{r}") for a in range(40) for r in range(25)]
    moved = [t for t in targets if shard_of(*t, count) != shard_of(*t, count + 1)]
    assert {shard_of(*t, count + 1) for t in moved} == {count}
    expected = len(targets) / (count + 1)
    assert abs(len(moved) - expected) < 0.2 * expected, len(moved)


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_targets_spread_evenly(count: int) -> None:
    targets = [(f"account-{a}", f"region-{r}") for a in range(40) for r in range(25)]
    per_shard = Counter(shard_of(a, r, count) for a, r in targets)
    expected = len(targets) / count
    assert set(per_shard) == set(range(count))
    assert all(abs(n - expected) < 0.2 * expected for n in per_shard.values()), per_shard


@pytest.mark.parametrize("count", [1, 2, 5])
def test_every_target_has_exactly_one_owner(count: int) -> None:
    for account, region, _ in WORKED:
        owners = [i for i in range(count) if Shard(i, count).owns(account, region)]
        assert len(owners) == 1


def test_select_keeps_only_the_owned_targets_and_drops_empty_accounts() -> None:
    cfg = Config(
        accounts=(
            AccountConfig("prod", ("cn-hangzhou", "cn-shanghai", "eu-central-1")),
            AccountConfig("staging", ("cn-hangzhou",)),
        )
    )
    # From WORKED: with 3 shards, shard 2 owns prod/eu-central-1 only.
    selected = Shard(2, 3).select(cfg)
    assert [(a.name, a.regions) for a in selected.accounts] == [("prod", ("eu-central-1",))]
    assert Shard(0, 1).select(cfg) == cfg


def test_str_names_index_and_count() -> None:
    assert str(Shard(2, 3)) == "shard 2 of 3"


def test_count_parsing() -> None:
    assert parse_count("3") == 3
    for bad in ("0", "-1", "two", "1.5", ""):
        with pytest.raises(ValueError, match="at least 1"):
            parse_count(bad)


@pytest.mark.parametrize(
    ("host", "count", "want"),
    [
        ("alb-jobs-exporter-2", 3, 2),
        ("rel-alb-jobs-exporter-0", 1, 0),
        ("alb-jobs-exporter-1.alb-jobs-exporter.monitoring.svc.cluster.local", 2, 1),
        ("web-3-10", 11, 10),
    ],
)
def test_hostname_takes_the_trailing_ordinal(host: str, count: int, want: int) -> None:
    assert parse_index("hostname", count, lambda: host) == want


@pytest.mark.parametrize(
    ("host", "count", "message"),
    [
        ("alb-jobs-exporter", 3, "has no trailing -<ordinal>"),
        ("worker7", 3, "has no trailing -<ordinal>"),
        ("alb-jobs-exporter-3", 3, "ordinal 3, outside 0..2 (--shard.count 3)"),
    ],
)
def test_hostname_without_a_usable_ordinal_is_an_error(host: str, count: int, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_index("hostname", count, lambda: host)
    assert message in str(err.value) and host in str(err.value)


def test_a_numeric_index_must_be_inside_the_count() -> None:
    def no_host() -> str:
        raise AssertionError("a numeric index must not look at the host name")

    assert parse_index("2", 3, no_host) == 2
    with pytest.raises(ValueError, match=r"shard 3, outside 0..2"):
        parse_index("3", 3, no_host)
    for bad in ("-1", "one", ""):
        with pytest.raises(ValueError, match="whole number or 'hostname'"):
            parse_index(bad, 3, no_host)
