"""What a change of the target set keeps: the one place the rules of a reload live.

A target is built from a `TargetPlan`: its account's settings, the config's settings that
shape every target, and its account's credentials. `diff_targets(old, new)` compares two
sets of plans and says, per target, what to do with it:

- **add**: a key only in `new`;
- **keep**: the same plan: the running target stays, with its store, counters and client;
- **replace**: a different plan. `carry` holds the keys whose job store (and so their
  counters and readiness) continues in the new target, because only how the API is
  reached changed (timeouts, page size, keys), not which jobs are counted;
- **remove**: a key only in `old`.

A config reload, and discovery adding or removing targets at run time, both go through
this function (`exporter.app.App.apply_targets`). It is pure: no I/O, no clock, no
targets; what it compares is plain data, and credentials by identity (a provider object
is kept across reloads while it is built from the same settings, see `exporter.app`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from exporter import config
from exporter.jobs.target import TargetKey


@dataclass(frozen=True)
class TargetPlan:
    """What one target is built from. Two plans are equal exactly when a target built from
    the one is right for the other. `credentials` is compared by identity (any object
    whose `==` is identity: `exporter.wiring.AccountCredentials`)."""

    account: config.AccountConfig
    settings: config.Config  # the config with what no target is built from blanked out
    credentials: object


@dataclass(frozen=True)
class TargetDiff:
    """The keys of `diff_targets`, each in one of add, keep, replace, remove (in the
    order of the plans they come from); `carry` is the part of `replace` whose job store
    continues."""

    add: tuple[TargetKey, ...] = ()
    keep: tuple[TargetKey, ...] = ()
    replace: tuple[TargetKey, ...] = ()
    remove: tuple[TargetKey, ...] = ()
    carry: frozenset[TargetKey] = frozenset()

    @property
    def fresh(self) -> tuple[TargetKey, ...]:
        """Keys that get a new target: added or replaced."""
        return (*self.add, *self.replace)


def target_settings(cfg: config.Config) -> config.Config:
    """The settings every target is built from: the config without its accounts and
    without what applies outside the targets (the refresh cache TTL is the refresher's,
    the job events the App's; the metrics block is applied to stores in place)."""
    return replace(
        cfg,
        accounts=(),
        cache_ttl=0.0,
        job_events=config.JobEventsConfig(),
        metrics=config.MetricsConfig(),
    )


def plans(cfg: config.Config, credentials: Mapping[str, object]) -> dict[TargetKey, TargetPlan]:
    """A plan per (account, region) of `cfg`; `credentials` by account name."""
    settings = target_settings(cfg)
    return {
        # The account as this region's target sees it: its other regions coming and going
        # do not change what this target is built from.
        (account.name, region): TargetPlan(
            replace(account, regions=(region,)), settings, credentials[account.name]
        )
        for account in cfg.accounts
        for region in account.regions
    }


def target_keys(cfg: config.Config) -> frozenset[TargetKey]:
    return frozenset((a.name, region) for a in cfg.accounts for region in a.regions)


def same_data(old: TargetPlan, new: TargetPlan) -> bool:
    """Whether a target's job store can carry over: same jobs, same counting window.
    (Compared for one key, so account name and region already match.)"""
    return (
        old.settings.lookback == new.settings.lookback
        and old.settings.recent_failures == new.settings.recent_failures
        and old.account.filters == new.account.filters
        and old.account.endpoint == new.account.endpoint
    )


def diff_targets(
    old: Mapping[TargetKey, TargetPlan], new: Mapping[TargetKey, TargetPlan]
) -> TargetDiff:
    """What to do with each target when the plans go from `old` to `new`."""
    add, keep, changed, carry = [], [], [], set()
    for key, plan in new.items():
        before = old.get(key)
        if before is None:
            add.append(key)
        elif before == plan:
            keep.append(key)
        else:
            changed.append(key)
            if same_data(before, plan):
                carry.add(key)
    remove = tuple(key for key in old if key not in new)
    return TargetDiff(tuple(add), tuple(keep), tuple(changed), remove, frozenset(carry))
