"""The `discovery:` block and `regions: "*"` (SPEC "Config file"), and `--check-config`
validating them offline. The invalid cases are fixtures/invalid/discovery_*.yaml and
regions_star_*, exclude_regions_*."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import cli
from exporter.config import AccountConfig, DiscoveryConfig, parse, summary

DIRECTORY = """
discovery:
  interval: 5m
  region: cn-shanghai
  resource_directory:
    credentials: {access_key_id: LTAI5tManagement0001, access_key_secret: mgmt-SUPERSECRET}
    directory_endpoint: http://127.0.0.1:9/rd/
    role_name: AlbReader
    external_id: ext-SUPERSECRET
    account_label: account_id
    folders: [rd-1/r-1/fd-prod]
    tags: {env: prod, team: net}
    exclude_accounts: ["1234", sandbox]
    exclude_regions: [cn-wulanchabu]
    signature: v1
    max_requests_per_second: 2
"""


def test_regions_star_means_every_region_minus_the_excluded() -> None:
    cfg = parse(
        'accounts:\n  - name: prod\n    regions: "*"\n    exclude_regions: [cn-beijing]\n', {}
    )
    (account,) = cfg.accounts
    assert account.all_regions and account.regions == ()
    assert account.exclude_regions == ("cn-beijing",)
    assert cfg.discovers and cfg.discovery == DiscoveryConfig()
    listed = parse("accounts:\n  - name: prod\n    regions: [cn-hangzhou]\n", {})
    assert not listed.discovers and not listed.accounts[0].all_regions


def test_a_directory_block_and_its_defaults() -> None:
    cfg = parse(DIRECTORY, {})
    assert cfg.accounts == () and cfg.discovers
    assert (cfg.discovery.interval, cfg.discovery.region) == (300.0, "cn-shanghai")
    rd = cfg.discovery.resource_directory
    assert rd is not None
    assert rd.role_name == "AlbReader" and rd.account_label == "account_id"
    assert rd.tags == (("env", "prod"), ("team", "net"))
    assert rd.exclude_accounts == ("1234", "sandbox") and rd.folders == ("rd-1/r-1/fd-prod",)
    assert rd.member == AccountConfig(
        "",
        (),
        signature="v1",
        max_requests_per_second=2.0,
        all_regions=True,
        exclude_regions=("cn-wulanchabu",),
    )
    bare = parse("discovery:\n  resource_directory: {}\n", {}).discovery
    assert bare.interval == 600.0 and bare.region == "cn-hangzhou"
    assert bare.resource_directory is not None
    assert bare.resource_directory.role_name == "AlbJobsExporterReadOnly"
    assert bare.resource_directory.member.all_regions  # regions default to "*"


def test_the_summary_describes_discovery_without_secrets() -> None:
    text = summary(parse(DIRECTORY, {}))
    assert "discovery: every 5m, DescribeRegions and STS in cn-shanghai" in text
    assert "role_name: AlbReader (acs:ram::<member>:role/albreader)" in text
    assert "tags: env=prod, team=net" in text and "external_id: set" in text
    assert "regions: * (every region ALB is offered in" in text
    assert "SUPERSECRET" not in text and "LTAI5tManagement0001" not in text


def test_check_config_validates_discovery_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The endpoints point at a closed port: a single API call would fail the check.
    path = tmp_path / "c.yaml"
    path.write_text(DIRECTORY)
    assert cli.main(["--config.file", str(path), "--check-config"], {}) == 0
    out = capsys.readouterr().out
    assert "resource_directory:" in out and "SUPERSECRET" not in out
    # Without a directory, accounts are still required.
    path.write_text("discovery:\n  interval: 1m\n")
    assert cli.main(["--config.file", str(path), "--check-config"], {}) == 2
    assert "accounts: at least one account is required" in capsys.readouterr().err


def test_new_key_errors_exit_2_with_one_line_naming_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('accounts:\n  - name: prod\n    regions: [cn-hangzhou, "*"]\n')
    assert cli.main(["--config.file", str(path), "--check-config"], {}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"{cli.PROG}: error: accounts[0].regions[1]: ")
