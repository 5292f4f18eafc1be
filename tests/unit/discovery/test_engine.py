"""The discovery engine against the simulator over loopback (real signatures, real
AssumeRole): who is watched, the two-listings rule, failed listings, the snapshot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.config import Config, parse
from exporter.discovery import Discovery, member_account
from exporter.simulator import Simulator, SimulatorServer
from tests.unit.discovery.org import (
    KEPT_REGIONS,
    MEMBERS,
    MGMT_KEY,
    MGMT_SECRET,
    OFFERED,
    WATCHED,
    discovery_yaml,
    expected_targets,
    organisation,
)


class Recorder:
    def __init__(self) -> None:
        self.ok: list[tuple[str, str]] = []
        self.errors: list[tuple[str, str, str]] = []

    def succeeded(self, source: str, account: str) -> None:
        self.ok.append((source, account))

    def failed(self, source: str, account: str, code: str) -> None:
        self.errors.append((source, account, code))


@pytest.fixture
def sim() -> Iterator[tuple[Simulator, str]]:
    alb = Simulator(OFFERED, seed=20, credentials={MGMT_KEY: MGMT_SECRET})
    organisation(alb)
    with SimulatorServer(alb) as server:
        yield alb, server.url


_ENGINES: list[Discovery] = []


@pytest.fixture(autouse=True)
def _stop_engines() -> Iterator[None]:
    yield
    while _ENGINES:
        _ENGINES.pop().stop()  # closes their HTTP clients


def engine(url: str, recorder: Recorder, extra: str = "") -> Discovery:
    return kept(fast(parse(discovery_yaml(url, extra=extra), {}), recorder))


def fast(cfg: Config, recorder: Recorder) -> Discovery:
    """An engine that does not pace nor wait before its retry: the failed listings these
    tests make on purpose would otherwise halve the budget's rate round after round."""
    return Discovery(cfg, {}, recorder, rate=1000.0, retry_delay=0.0)


def after_one_round(sim: tuple[Simulator, str]) -> tuple[Simulator, Discovery]:
    """The simulator and an engine that has run its first round on it."""
    alb, url = sim
    d = engine(url, Recorder())
    d.run_once()
    return alb, d


def kept(d: Discovery) -> Discovery:
    _ENGINES.append(d)
    return d


def targets(d: Discovery) -> set[tuple[str, str]]:
    return {(a.name, r) for a in d.resolved().accounts for r in a.regions}


def test_one_round_finds_exactly_the_watched_members_regions(
    sim: tuple[Simulator, str],
) -> None:
    alb, url = sim
    rec = Recorder()
    d = engine(url, rec)
    assert not d.attempted.is_set() and targets(d) == set()
    d.run_once()
    assert d.attempted.is_set()
    assert targets(d) == expected_targets()
    assert sorted(rec.errors) == [("regions", "legacy", "AssumeRoleFailed")]
    assert sorted(rec.ok) == [
        ("regions", "payments"),
        ("regions", "shop"),
        ("resource_directory", ""),
    ]
    # The member's credentials: its role, assumed with the management account's keys.
    shop = next(a for a in d.resolved().accounts if a.name == "shop")
    assert shop.credentials is not None
    assert shop.credentials.role_arn == "acs:ram::1500000000000001:role/albjobsexporterreadonly"
    assert shop.credentials.source is not None
    assert shop.credentials.source.access_key_id == MGMT_KEY
    # DescribeRegions was asked with each member's own (assumed) keys.
    calls = [r for r in alb.requests() if r.get("action") == "DescribeRegions"]
    assert {r["account_id"] for r in calls} == {"1500000000000001", "1500000000000002"}


def test_a_member_goes_only_after_two_listings_lack_it_and_comes_at_once(
    sim: tuple[Simulator, str],
) -> None:
    alb, d = after_one_round(sim)
    alb.remove_member(MEMBERS[0]["account_id"])  # shop leaves
    alb.add_member(
        account_id="1600000000000007",
        display_name="late",
        folder="fd-prod",
        tags={"monitor": "alb"},
    )
    d.run_once()
    assert targets(d) == expected_targets((*WATCHED, "late"))  # shop: one miss only
    d.run_once()
    assert targets(d) == expected_targets(("payments", "legacy", "late"))


def test_a_region_withdrawn_goes_after_two_listings(sim: tuple[Simulator, str]) -> None:
    alb, d = after_one_round(sim)
    alb.set_directory(offered=[r for r in OFFERED if r != "cn-beijing"])
    d.run_once()
    assert ("shop", "cn-beijing") in targets(d)
    d.run_once()
    assert ("shop", "cn-beijing") not in targets(d) and ("shop", "cn-hangzhou") in targets(d)


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("5xx", "ServiceUnavailable"),
        ("throttle", "Throttling.User"),
        ("malformed", "MalformedResponse"),
        ("deny", "NoPermission"),
    ],
)
def test_a_failed_listing_changes_nothing(sim: tuple[Simulator, str], mode: str, code: str) -> None:
    alb, url = sim
    rec = Recorder()
    d = engine(url, rec)
    d.run_once()
    before = targets(d)
    alb.set_directory(members=[], faults={"list_accounts": mode, "describe_regions": mode})
    for _ in range(3):  # however many times: no listing succeeded, nothing goes
        d.run_once()
    assert targets(d) == before
    assert ("resource_directory", "", code) in rec.errors
    assert ("regions", "shop", code) in rec.errors


def test_a_timeout_is_a_failed_listing(sim: tuple[Simulator, str]) -> None:
    alb, url = sim
    rec = Recorder()
    d = engine(url, rec)
    d.run_once()
    before = targets(d)
    # A short timeout only for the round that times out: the first must not, however busy
    # the machine.
    d.configure(parse(discovery_yaml(url) + "request_timeout: 250ms\n", {}))
    alb.set_directory(members=[], faults={"list_accounts": "timeout"})
    d.run_once()
    assert targets(d) == before
    assert ("resource_directory", "", "Timeout") in rec.errors
    alb.set_directory(faults={"list_accounts": ""})


def test_the_snapshot_serves_every_known_target_while_the_directory_is_down(
    sim: tuple[Simulator, str],
) -> None:
    alb, d = after_one_round(sim)
    url = sim[1]
    saved = d.snapshot()
    alb.set_directory(faults={"list_accounts": "5xx", "describe_regions": "5xx"})
    again = engine(url, Recorder())
    assert again.restore(saved) and again.attempted.is_set()
    assert targets(again) == expected_targets()  # before any listing
    again.run_once()
    assert targets(again) == expected_targets()
    assert not Discovery(parse(discovery_yaml(url), {}), {}, Recorder()).restore({"version": 9})


def test_listed_star_accounts_use_their_own_keys_and_exclusions(
    sim: tuple[Simulator, str],
) -> None:
    _, url = sim
    text = f"""
accounts:
  - name: prod
    regions: "*"
    exclude_regions: [cn-beijing, eu-central-1]
    endpoint: "{url}/{{region}}/"
    credentials: {{access_key_id: {MGMT_KEY}, access_key_secret: {MGMT_SECRET}}}
  - name: fixed
    regions: [cn-shanghai]
    endpoint: "{url}/{{region}}/"
"""
    d = kept(Discovery(parse(text, {}), {}, Recorder()))
    d.run_once()
    resolved = {a.name: a.regions for a in d.resolved().accounts}
    assert resolved == {
        "prod": ("ap-southeast-1", "cn-hangzhou", "cn-shanghai"),
        "fixed": ("cn-shanghai",),
    }
    assert d.discovered() == {("prod", r) for r in resolved["prod"]}


def test_member_account_is_the_directory_keys_with_the_role() -> None:
    cfg = parse(discovery_yaml("http://127.0.0.1:9"), {})
    rd = cfg.discovery.resource_directory
    assert rd is not None
    account = member_account(rd, "shop", "1500000000000001", KEPT_REGIONS)
    assert account.max_requests_per_second == 1000 and account.regions == KEPT_REGIONS
    assert account.credentials is not None and account.credentials.type == "ram_role_arn"
    assert account.credentials.sts_endpoint == "http://127.0.0.1:9/sts/"


def test_list_accounts_pages_to_the_end_and_describe_regions_is_flat(
    sim: tuple[Simulator, str],
) -> None:
    from exporter.alibaba.discovery import RpcCaller, describe_regions, list_accounts
    from exporter.alibaba.signing import Credential, make_signer
    from exporter.wire import API_VERSION, LIST_ACCOUNTS, RD_API_VERSION

    alb, url = sim
    key = Credential(MGMT_KEY, MGMT_SECRET, None)
    rd = RpcCaller(
        f"{url}/rd/",
        make_signer("v1", lambda: key, action=LIST_ACCOUNTS, version=RD_API_VERSION),
        action=LIST_ACCOUNTS,
    )
    regions = RpcCaller(
        f"{url}/cn-hangzhou/",
        make_signer("v3", lambda: key, action="DescribeRegions", version=API_VERSION),
        action="DescribeRegions",
    )
    try:
        members = list_accounts(rd, page_size=2)
        assert [m.account_id for m in members] == [m["account_id"] for m in MEMBERS]
        assert members[1].path.endswith("/fd-prod/fd-payments/1500000000000002")
        assert dict(members[0].tags) == {"monitor": "alb"}
        assert len(alb.directory_requests()) == 3  # six members, two a page
        assert describe_regions(regions) == OFFERED
    finally:
        rd.close()
        regions.close()
