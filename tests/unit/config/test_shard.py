"""The shard hash and the `--shard.*` values (exporter/config/shard.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.config import AccountConfig, Config
from exporter.config.shard import Shard, parse_count, parse_index, shard_of

# Worked examples, computed with coreutils and not with the function under test:
#   printf '%s\0%s' prod cn-hangzhou | sha256sum | cut -c1-8   ->  43091b09
# The owner is that prefix as a big-endian number, mod the shard count.
WORKED = [
    ("prod", "cn-hangzhou", "43091b09"),
    ("prod", "cn-shanghai", "d48b7d2c"),
    ("prod", "eu-central-1", "d002e103"),
    ("staging", "cn-hangzhou", "692c502e"),
    ("staging", "eu-central-1", "ed87f9a6"),
]


@pytest.mark.parametrize(("account", "region", "prefix"), WORKED)
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_the_owner_is_the_sha256_prefix_mod_the_count(
    account: str, region: str, prefix: str, count: int
) -> None:
    assert shard_of(account, region, count) == int(prefix, 16) % count


def test_the_readme_example_owners() -> None:
    # The numbers README "Sharding" quotes for three shards.
    assert [shard_of(a, r, 3) for a, r, _ in WORKED] == [1, 1, 0, 2, 1]


def test_the_separator_keeps_account_and_region_apart() -> None:
    # Plain concatenation would give these two the same owner by construction.
    owners = {shard_of("ab", "c-1", 1 << 30), shard_of("a", "bc-1", 1 << 30)}
    assert len(owners) == 2


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
    # From WORKED: with 3 shards, shard 0 owns prod/eu-central-1 only.
    selected = Shard(0, 3).select(cfg)
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
