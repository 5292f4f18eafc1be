"""Discovery's rules, pure: which members are watched and under what label, and when a
target that a listing lacks really goes (SPEC "Discovery rules").

No I/O and no clock: the engine feeds listings in and reads targets out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.alibaba.discovery import Member
from exporter.config import ResourceDirectoryConfig
from exporter.wire import USABLE_MEMBER_STATUSES

log = logging.getLogger("exporter")

#: A listing must lack a target this many times in a row before the target goes: one
#: listing that misses a member (an eventually consistent directory, a member mid-move
#: between folders) must not reset its counters.
MISSES_TO_REMOVE = 2


def label_of(member: Member, account_label: str) -> str:
    """The `account` label: the DisplayName (or the AccountId when it has none)."""
    if account_label == "account_id" or not member.display_name:
        return member.account_id
    return member.display_name


def in_folders(member: Member, folders: Iterable[str]) -> bool:
    """Inside one of `folders`: a ResourceDirectoryPath prefix (`rd-…/r-…/fd-…`), or a
    folder id (`fd-…`) anywhere on the member's path. No folders: every member."""
    folders = tuple(folders)
    if not folders:
        return True
    segments = member.path.split("/")
    for folder in folders:
        folder = folder.strip("/")
        if "/" in folder:
            if member.path == folder or member.path.startswith(f"{folder}/"):
                return True
        elif folder in segments[:-1]:
            return True
    return False


def watched(
    members: Iterable[Member], rd: ResourceDirectoryConfig, listed_names: Iterable[str]
) -> dict[str, Member]:
    """The members to watch, by label: usable status, inside `folders`, carrying every tag
    of `tags`, not in `exclude_accounts`, and not named like a listed account (the listed
    one wins, with a warning)."""
    listed = set(listed_names)
    excluded = set(rd.exclude_accounts)
    wanted_tags = dict(rd.tags)
    out: dict[str, Member] = {}
    for member in sorted(members, key=lambda m: m.account_id):
        if member.status not in USABLE_MEMBER_STATUSES:
            continue
        if member.account_id in excluded or member.display_name in excluded:
            continue
        if not in_folders(member, rd.folders):
            continue
        tags = dict(member.tags)
        if any(tags.get(k) != v for k, v in wanted_tags.items()):
            continue
        label = label_of(member, rd.account_label)
        if label in listed:
            log.warning(
                "discovery: member %s is labelled %r like a listed account; the listed one"
                " wins and the member is skipped",
                member.account_id,
                label,
            )
            continue
        if label in out:
            # Two members with one display name would share every series: the AccountId
            # keeps them apart.
            log.warning(
                "discovery: members %s and %s share the display name %r; %s is labelled by"
                " its AccountId",
                out[label].account_id,
                member.account_id,
                label,
                member.account_id,
            )
            label = member.account_id
        out[label] = member
    return out


@dataclass
class Known:
    """The targets discovery knows, and how many successive successful listings lacked
    each. A failed listing is never fed in, so it changes nothing."""

    misses: dict[tuple[str, str], int] = field(default_factory=dict)

    def targets(self) -> set[tuple[str, str]]:
        return set(self.misses)

    def listed(
        self, scope: Iterable[tuple[str, str]], found: Iterable[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """One successful listing covering the known targets in `scope` found `found`:
        found targets are (again) known, the rest of the scope count one miss, and those
        at MISSES_TO_REMOVE go. Returns the targets that went."""
        found = set(found)
        for key in found:
            self.misses[key] = 0
        gone = set()
        for key in set(scope) - found:
            if key not in self.misses:
                continue
            self.misses[key] += 1
            if self.misses[key] >= MISSES_TO_REMOVE:
                del self.misses[key]
                gone.add(key)
        return gone

    def export(self) -> list[list[object]]:
        return [[a, r, n] for (a, r), n in sorted(self.misses.items())]

    @staticmethod
    def restore(rows: object) -> Known:
        known = Known()
        if isinstance(rows, list):
            for row in rows:
                if (
                    isinstance(row, list)
                    and len(row) == 3
                    and isinstance(row[0], str)
                    and isinstance(row[1], str)
                    and isinstance(row[2], int)
                ):
                    known.misses[(row[0], row[1])] = row[2]
        return known


def regions_of(known: Iterable[tuple[str, str]], account: str) -> tuple[str, ...]:
    return tuple(sorted(r for a, r in known if a == account))


def fallback_regions(
    offered: Iterable[str], exclude: Iterable[str], default: str
) -> tuple[str, ...]:
    """A member whose regions cannot be listed yet (its role refused, say) still gets
    targets, so its failure shows as `up 0`: the regions ALB was last seen offered in
    (DescribeRegions answers the same list to every account), else discovery's region."""
    excluded = set(exclude)
    regions = tuple(r for r in offered if r not in excluded)
    return regions or (default,)


def by_label(members: Mapping[str, Member]) -> dict[str, str]:
    return {label: m.account_id for label, m in members.items()}
