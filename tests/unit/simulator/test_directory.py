"""The organisation stand-in: ListAccounts on /rd/, DescribeRegions on the ALB endpoints,
AssumeRole into members, each signature-checked, and their fault knobs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from exporter.simulator import STS_API_VERSION, Simulator, SimulatorServer
from exporter.wire import (
    DESCRIBE_REGIONS,
    LIST_ACCOUNTS,
    MEMBER_STATUSES,
    RD_API_VERSION,
    member_role_arn,
)
from tests.unit.simulator.helpers import KEY, REGIONS, api_error, call, control, ok

MEMBERS = [
    {
        "account_id": f"10000000000000{i:02d}",
        "display_name": f"member-{i}",
        "folder": "fd-prod" if i % 2 else "fd-prod/fd-sandbox",
        "status": MEMBER_STATUSES[i % len(MEMBER_STATUSES)],
        "tags": {"team": f"t{i % 3}"},
    }
    for i in range(9)
]


def error(response: httpx.Response, status: int, code: str) -> None:
    """An error answer of Resource Directory or STS (api_error checks ALB's HostId)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Code"] == code and body["RequestId"] in body["Recommend"], body


@pytest.fixture
def org(sim: Simulator) -> Simulator:
    sim.set_directory(members=MEMBERS)
    return sim


def list_accounts(server: SimulatorServer, params: dict[str, str], **kw: Any) -> httpx.Response:
    return call(f"{server.url}/rd", params, action=LIST_ACCOUNTS, version=RD_API_VERSION, **kw)


def describe_regions(server: SimulatorServer, **kw: Any) -> httpx.Response:
    return call(server, {}, region="cn-hangzhou", action=DESCRIBE_REGIONS, **kw)


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_list_accounts_pages_through_every_member_with_paths_statuses_and_tags(
    org: Simulator, server: SimulatorServer, scheme: str
) -> None:
    seen: list[dict[str, Any]] = []
    token = ""
    pages = 0
    while True:
        params = {"MaxResults": "4", "IncludeTags": "true"}
        if token:
            params["NextToken"] = token
        page = ok(list_accounts(server, params, scheme=scheme))
        assert page["TotalCount"] == len(MEMBERS)
        seen += page["Accounts"]["Account"]
        token = page["NextToken"]
        pages += 1
        if not token:
            break
    assert pages == 3
    assert [a["AccountId"] for a in seen] == [m["account_id"] for m in MEMBERS]
    assert {a["Status"] for a in seen} == set(MEMBER_STATUSES)
    first = seen[1]
    assert first["ResourceDirectoryPath"].endswith(f"/fd-prod/{first['AccountId']}")
    assert first["FolderId"] == "fd-prod" and first["DisplayName"] == "member-1"
    assert first["Tags"]["Tag"] == [{"Key": "team", "Value": "t1"}]
    # Tags only when asked for, as the API does.
    plain = ok(list_accounts(server, {"MaxResults": "1"}))
    assert "Tags" not in plain["Accounts"]["Account"][0]


def test_list_accounts_is_signature_checked_and_versioned(
    org: Simulator, server: SimulatorServer
) -> None:
    error(list_accounts(server, {}, secret="wrong"), 400, "SignatureDoesNotMatch")
    bad = call(f"{server.url}/rd", {}, action=LIST_ACCOUNTS, version="2020-06-16")
    error(bad, 404, "InvalidVersion")
    error(call(f"{server.url}/rd", {}), 404, "InvalidAction.NotFound")  # ListAsynJobs
    error(list_accounts(server, {"MaxResults": "101"}), 400, "InvalidParameter.MaxResults")


def test_only_the_management_account_may_list(org: Simulator, server: SimulatorServer) -> None:
    org.set_directory(management_keys=["LTAI5tSomeoneElse"])
    error(list_accounts(server, {}), 403, "Forbidden.NotManagementAccount")
    org.set_directory(management_keys=[KEY])
    ok(list_accounts(server, {}))


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [("throttle", 400, "Throttling.User"), ("5xx", 503, "ServiceUnavailable")],
)
def test_discovery_faults_answer_errors(
    org: Simulator, server: SimulatorServer, mode: str, status: int, code: str
) -> None:
    org.set_directory(faults={"list_accounts": mode})
    error(list_accounts(server, {}), status, code)
    ok(describe_regions(server))  # the other discovery call is unaffected
    org.set_directory(faults={"list_accounts": "", "describe_regions": mode})
    api_error(describe_regions(server), status, code)
    ok(list_accounts(server, {}))


def test_malformed_and_timeout_faults(org: Simulator, server: SimulatorServer) -> None:
    org.set_directory(faults={"list_accounts": "malformed", "describe_regions": "malformed"})
    r = list_accounts(server, {})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    assert describe_regions(server).json()["Regions"] == "n/a"
    org.set_directory(faults={"list_accounts": "timeout", "describe_regions": ""})
    with pytest.raises(httpx.TimeoutException):
        list_accounts(server, {}, timeout=0.3)


def test_describe_regions_lists_the_offered_regions_flat_and_is_not_a_listing(
    org: Simulator, server: SimulatorServer
) -> None:
    answer = ok(describe_regions(server, scheme="v1"))
    assert [r["RegionId"] for r in answer["Regions"]] == list(REGIONS)
    assert answer["Regions"][0]["RegionEndpoint"] == "alb.cn-hangzhou.aliyuncs.com"
    assert org.request_count() == 0  # ListAsynJobs requests only
    org.set_directory(offered=["cn-beijing", "eu-central-1"])
    answer = ok(describe_regions(server))
    assert [r["RegionId"] for r in answer["Regions"]] == ["cn-beijing", "eu-central-1"]
    api_error(describe_regions(server, secret="wrong"), 400, "SignatureDoesNotMatch")
    assert org.directory()["calls"]["DescribeRegions"] == 2  # the refused one is not answered


def assume(server: SimulatorServer, account_id: str) -> httpx.Response:
    params = {"RoleArn": member_role_arn(account_id, "AlbJobsExporterReadOnly")}
    params["RoleSessionName"] = "alb-jobs-exporter"
    return call(
        f"{server.url}/sts", params, scheme="v1", action="AssumeRole", version=STS_API_VERSION
    )


def test_assume_role_into_members_and_a_member_without_the_role(
    org: Simulator, server: SimulatorServer
) -> None:
    good, missing = MEMBERS[0]["account_id"], MEMBERS[3]["account_id"]
    org.update_member(missing, role=False)
    error(assume(server, missing), 404, "EntityNotExist.Role")
    answer = assume(server, good)
    assert answer.status_code == 200, answer.text
    creds = answer.json()["Credentials"]
    listed = call(
        server,
        {},
        region="cn-shanghai",
        key=creds["AccessKeyId"],
        secret=creds["AccessKeySecret"],
        token=creds["SecurityToken"],
    )
    ok(listed)
    (request,) = org.requests("cn-shanghai")
    assert request["account_id"] == good  # the log says which member listed


def test_members_come_and_go_through_the_control_api(
    org: Simulator, server: SimulatorServer
) -> None:
    new = {"account_id": "2000000000000001", "display_name": "late", "tags": {"a": "b"}}
    control(server, "POST", "/_sim/directory/members", new)
    control(server, "DELETE", f"/_sim/directory/members?id={MEMBERS[0]['account_id']}")
    control(
        server,
        "PATCH",
        "/_sim/directory/members",
        {"account_id": MEMBERS[1]["account_id"], "status": "PromoteVerifying"},
    )
    ids = [
        a["AccountId"]
        for a in ok(list_accounts(server, {"MaxResults": "100"}))["Accounts"]["Account"]
    ]
    assert "2000000000000001" in ids and MEMBERS[0]["account_id"] not in ids
    state = control(server, "GET", "/_sim/directory")
    assert state["calls"]["ListAccounts"] == 1 and state["requests"][0]["code"] == "OK"
    with pytest.raises(AssertionError):
        control(server, "POST", "/_sim/directory", {"faults": {"list_accounts": "bogus"}})
