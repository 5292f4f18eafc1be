"""The Resource Directory stand-in (ListAccounts on `/rd/`), ALB DescribeRegions, and which
member roles AssumeRole may enter: an organisation of member accounts in folders, with tags,
in every status, and fault knobs for the discovery calls.

A member's `role` says whether the exporter's role exists in it: AssumeRole into a member
without it answers 404 `EntityNotExist.Role`, as STS does. Keys issued by AssumeRole
remember the member they belong to (`Keys.owners`), so the ALB request log can say which
member listed what.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from exporter.simulator.messages import Reject, dumps
from exporter.wire import MEMBER_STATUSES, RD_MAX_RESULTS

RD_ID = "rd-3Eq1Sim"
ROOT_FOLDER = "r-Sim0Root"
# Modes of the `list_accounts` and `describe_regions` fault knobs.
DISCOVERY_FAULTS = ("", "throttle", "5xx", "malformed", "timeout", "deny")
TIMEOUT_HANG = 60.0  # seconds a `timeout` answer is held back (cut when the fault clears)
_ARN_RE = re.compile(r"^acs:ram::(\d+):role/(\S+)$")
# `--demo`'s organisation: two members found by discovery, one the exporter's role was
# never deployed in (its targets are up 0), one still being promoted (not watched).
DEMO_MEMBERS: list[dict[str, Any]] = [
    {"account_id": "1900000000000001", "display_name": "org-shop", "folder": "fd-prod"},
    {"account_id": "1900000000000002", "display_name": "org-payments", "folder": "fd-prod"},
    {"account_id": "1900000000000003", "display_name": "org-legacy", "role": False},
    {"account_id": "1900000000000004", "display_name": "org-new", "status": "PromoteVerifying"},
]


@dataclass(frozen=True)
class Member:
    """One member account of the directory."""

    account_id: str
    display_name: str
    folder: str = ""  # folder ids below the root, "/"-separated ("" = the root)
    status: str = "CreateSuccess"
    tags: Mapping[str, str] = field(default_factory=dict)
    role: bool = True  # the exporter's role exists in it (AssumeRole succeeds)
    account_type: str = "ResourceAccount"

    @staticmethod
    def parse(data: Mapping[str, Any]) -> Member:
        unknown = set(data) - {f for f in Member.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown member keys {sorted(unknown)}")
        member = Member(**{**data, "tags": dict(data.get("tags") or {})})
        if not member.account_id.isdigit():
            raise ValueError(f"account_id must be digits, not {member.account_id!r}")
        if member.status not in MEMBER_STATUSES:
            raise ValueError(f"status: one of {', '.join(MEMBER_STATUSES)}")
        return member

    @property
    def path(self) -> str:
        middle = f"{self.folder.strip('/')}/" if self.folder.strip("/") else ""
        return f"{RD_ID}/{ROOT_FOLDER}/{middle}{self.account_id}"

    def answer(self, include_tags: bool) -> dict[str, Any]:
        folder_id = self.folder.strip("/").rsplit("/", 1)[-1] or ROOT_FOLDER
        account: dict[str, Any] = {
            "AccountId": self.account_id,
            "AccountName": f"{self.display_name.lower()}@sim.example",
            "DisplayName": self.display_name,
            "FolderId": folder_id,
            "ResourceDirectoryId": RD_ID,
            "ResourceDirectoryPath": self.path,
            "JoinMethod": "created" if self.status == "CreateSuccess" else "invited",
            "JoinTime": "2025-01-01T00:00:00.000Z",
            "ModifyTime": "2025-01-01T00:00:00.000Z",
            "Type": self.account_type,
            "Status": self.status,
        }
        if include_tags:
            account["Tags"] = {"Tag": [{"Key": k, "Value": v} for k, v in self.tags.items()]}
        return account


class Directory:
    """The organisation, its knobs and the counts of the discovery calls. Its callers hold
    the simulator's lock."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        # AccessKeyIds allowed to call ListAccounts (the management account); empty: any
        # long-lived key.
        self.management_keys: set[str] = set()
        self.offered: list[str] | None = None  # DescribeRegions' answer; None: the world's
        self.faults: dict[str, str] = {"list_accounts": "", "describe_regions": ""}
        self.calls: dict[str, int] = {"ListAccounts": 0, "DescribeRegions": 0}
        self._cleared = threading.Event()

    def cleared(self) -> threading.Event:
        return self._cleared

    def settings(self) -> dict[str, Any]:
        return {
            "members": [asdict(m) for m in self.members.values()],
            "management_keys": sorted(self.management_keys),
            "offered": self.offered,
            "faults": dict(self.faults),
            "calls": dict(self.calls),
        }

    def set(self, data: Mapping[str, Any]) -> None:
        """Replace what `data` names: members (a list), management_keys, offered, faults."""
        unknown = set(data) - {"members", "management_keys", "offered", "faults"}
        if unknown:
            raise ValueError(f"unknown directory settings {sorted(unknown)}")
        if "members" in data:
            members = [Member.parse(m) for m in data["members"]]
            self.members = {m.account_id: m for m in members}
        if "management_keys" in data:
            self.management_keys = {str(k) for k in data["management_keys"] or ()}
        if "offered" in data:
            offered = data["offered"]
            self.offered = None if offered is None else [str(r) for r in offered]
        if "faults" in data:
            faults = dict(data["faults"] or {})
            for name, mode in faults.items():
                if name not in self.faults:
                    raise ValueError(f"unknown discovery fault {name!r}")
                if (mode or "") not in DISCOVERY_FAULTS:
                    raise ValueError(f"{name}: one of {', '.join(DISCOVERY_FAULTS)}")
            self.faults.update({k: v or "" for k, v in faults.items()})
            if not any(self.faults.values()):
                self._cleared.set()
                self._cleared = threading.Event()

    def add(self, data: Mapping[str, Any]) -> Member:
        member = Member.parse(data)
        self.members[member.account_id] = member
        return member

    def update(self, account_id: str, **changes: Any) -> Member:
        member = self.members[account_id]
        self.members[account_id] = Member.parse({**asdict(member), **changes})
        return self.members[account_id]

    def remove(self, account_id: str) -> None:
        del self.members[account_id]

    # --- AssumeRole --------------------------------------------------------------------

    def role_refused(self, role_arn: str) -> bool:
        """AssumeRole into a known member whose role does not exist."""
        match = _ARN_RE.match(role_arn)
        member = self.members.get(match.group(1)) if match else None
        return member is not None and not member.role

    @staticmethod
    def account_of(role_arn: str) -> str | None:
        match = _ARN_RE.match(role_arn)
        return match.group(1) if match else None

    # --- answers -----------------------------------------------------------------------

    def fault(self, name: str) -> float:
        """Raise the fault set for `name`; the seconds to hold the answer back (timeout)."""
        mode = self.faults[name]
        if mode == "throttle":
            raise Reject(400, "Throttling.User", "Request was denied due to user flow control.")
        if mode == "5xx":
            raise Reject(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            )
        if mode == "deny":
            raise Reject(403, "NoPermission", "You are not authorized to do this action.")
        return TIMEOUT_HANG if mode == "timeout" else 0.0

    def list_accounts(
        self, params: Mapping[str, str], caller: str, request_id: str
    ) -> tuple[bytes, float]:
        """ListAccounts' answer to an authenticated caller: (body, seconds to hold it)."""
        self.calls["ListAccounts"] += 1
        if self.management_keys and caller not in self.management_keys:
            raise Reject(
                403,
                "Forbidden.NotManagementAccount",
                "The operation is only available to the management account of the resource "
                "directory or a delegated administrator.",
            )
        hold = self.fault("list_accounts")
        raw = params.get("MaxResults") or "10"
        if not raw.isdigit() or not 1 <= int(raw) <= RD_MAX_RESULTS:
            raise Reject(400, "InvalidParameter.MaxResults", "The MaxResults is invalid.")
        size = int(raw)
        start = _offset(params.get("NextToken", ""))
        members = sorted(self.members.values(), key=lambda m: m.account_id)
        page = members[start : start + size]
        end = start + len(page)
        next_token = _token(end) if end < len(members) else ""
        include_tags = params.get("IncludeTags", "").lower() == "true"
        body: dict[str, Any] = {
            "RequestId": request_id,
            "TotalCount": len(members),
            "NextToken": next_token,
            "PageNumber": start // size + 1,
            "PageSize": size,
            "Accounts": {"Account": [m.answer(include_tags) for m in page]},
        }
        if self.faults["list_accounts"] == "malformed":
            return b'{"RequestId":"' + request_id.encode() + b'","Accounts":', hold
        return dumps(body), hold

    def describe_regions(self, world_regions: list[str], request_id: str) -> tuple[bytes, float]:
        """DescribeRegions' answer: the flat `Regions[]` of where ALB is offered."""
        self.calls["DescribeRegions"] += 1
        hold = self.fault("describe_regions")
        regions = world_regions if self.offered is None else self.offered
        body = {
            "RequestId": request_id,
            "Regions": [
                {
                    "RegionId": r,
                    "LocalName": r,
                    "RegionEndpoint": f"alb.{r}.aliyuncs.com",
                }
                for r in regions
            ],
        }
        if self.faults["describe_regions"] == "malformed":
            return json.dumps({"RequestId": request_id, "Regions": "n/a"}).encode(), hold
        return dumps(body), hold


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{RD_ID}:{offset}".encode()).decode()


def _offset(token: str) -> int:
    if not token:
        return 0
    try:
        rd, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if rd == RD_ID and offset.isdigit():
            return int(offset)
    except ValueError:
        pass
    raise Reject(400, "InvalidParameter.NextToken", "The NextToken is invalid.")


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


__all__ = ["DISCOVERY_FAULTS", "Directory", "Member", "new_request_id"]
