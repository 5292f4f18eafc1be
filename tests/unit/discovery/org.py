"""The organisation the discovery tests share: six members (one in an excluded folder, one
PromoteVerifying, one whose role cannot be assumed, one tagged out, two watched), five
offered regions with one excluded, and the config that watches it through a simulator."""

from __future__ import annotations

from typing import Any

from exporter.simulator import Simulator

MGMT_KEY = "LTAI5tManagementKey0001"
MGMT_SECRET = "mgmt-Secret-Value-9f8e7d"
OFFERED = ("cn-hangzhou", "cn-shanghai", "cn-beijing", "eu-central-1", "ap-southeast-1")
EXCLUDED_REGION = "ap-southeast-1"
KEPT_REGIONS = tuple(r for r in OFFERED if r != EXCLUDED_REGION)
ROLE = "AlbJobsExporterReadOnly"


def member(i: int, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "account_id": f"15{i:014d}",
        "display_name": name,
        "folder": "fd-prod",
        "tags": {"monitor": "alb"},
        **extra,
    }


MEMBERS = [
    member(1, "shop"),
    member(2, "payments", folder="fd-prod/fd-payments"),
    member(3, "sandbox", folder="fd-sandbox"),  # outside the folders watched
    member(4, "newcomer", status="PromoteVerifying"),  # not usable yet
    member(5, "legacy", role=False),  # the exporter's role was never deployed there
    member(6, "untagged", tags={"monitor": "no"}),  # tagged out
]
WATCHED = ("shop", "payments", "legacy")
UP = ("shop", "payments")  # the legacy member's targets exist but are up 0


def organisation(sim: Simulator) -> None:
    sim.set_directory(members=MEMBERS, management_keys=[MGMT_KEY], offered=list(OFFERED))


def discovery_yaml(url: str, interval: str = "1h", extra: str = "") -> str:
    return f"""
discovery:
  interval: {interval}
  region: cn-hangzhou
  resource_directory:
    credentials: {{access_key_id: {MGMT_KEY}, access_key_secret: {MGMT_SECRET}}}
    directory_endpoint: {url}/rd/
    sts_endpoint: {url}/sts/
    role_name: {ROLE}
    folders: [fd-prod]
    tags: {{monitor: alb}}
    exclude_regions: [{EXCLUDED_REGION}]
    endpoint: "{url}/{{region}}/"
    max_requests_per_second: 1000
{extra}"""


def expected_targets(labels: tuple[str, ...] = WATCHED) -> set[tuple[str, str]]:
    return {(label, region) for label in labels for region in KEPT_REGIONS}
