"""The rules of what a change of the target set keeps (exporter.reconcile), as data in and
data out: no App, no simulator. The App's reload path is tested end to end in
tests/unit/test_app.py and tests/e2e/test_reload.py."""

from __future__ import annotations

from dataclasses import replace

from exporter import config
from exporter.reconcile import TargetDiff, TargetPlan, diff_targets, plans

PROD = config.AccountConfig("prod", ("cn-hangzhou", "cn-shanghai"))
STAGING = config.AccountConfig("staging", ("eu-central-1",))
BASE = config.Config(accounts=(PROD, STAGING))


class Creds:
    """A credential source: compared by identity, as `AccountCredentials` is."""


KEYS = {"prod": Creds(), "staging": Creds()}


def diff(
    old: config.Config, new: config.Config, creds: dict[str, object] | None = None
) -> TargetDiff:
    return diff_targets(plans(old, KEYS), plans(new, creds or KEYS))


def test_the_same_config_keeps_every_target() -> None:
    assert diff(BASE, BASE) == TargetDiff(
        keep=(("prod", "cn-hangzhou"), ("prod", "cn-shanghai"), ("staging", "eu-central-1"))
    )


def test_a_region_added_and_one_removed() -> None:
    prod = replace(PROD, regions=("cn-hangzhou", "cn-beijing"))
    d = diff(BASE, replace(BASE, accounts=(prod, STAGING)))
    assert d.add == (("prod", "cn-beijing"),)
    assert d.remove == (("prod", "cn-shanghai"),)
    assert d.keep == (("prod", "cn-hangzhou"), ("staging", "eu-central-1"))
    assert d.replace == () and d.fresh == (("prod", "cn-beijing"),)


def test_an_account_removed_removes_all_its_regions() -> None:
    d = diff(BASE, replace(BASE, accounts=(STAGING,)))
    assert d.remove == (("prod", "cn-hangzhou"), ("prod", "cn-shanghai"))
    assert d.keep == (("staging", "eu-central-1"),)


def test_settings_outside_the_targets_keep_them() -> None:
    # The refresh TTL is the refresher's, the job events the App's, the metrics block is
    # applied to the stores in place: none of them rebuilds a target.
    new = replace(
        BASE,
        cache_ttl=0.0,
        job_events=config.JobEventsConfig(output="stdout"),
        metrics=config.MetricsConfig(duration_labels=("status",)),
    )
    assert diff(BASE, new).keep == diff(BASE, BASE).keep


def test_how_the_api_is_reached_replaces_and_carries_the_store() -> None:
    for new in (
        replace(BASE, page_size=50),
        replace(BASE, request_timeout=3.0),
        replace(BASE, overlap=120.0),
        replace(BASE, accounts=(replace(PROD, signature="v1"), STAGING)),
        replace(BASE, accounts=(replace(PROD, max_requests_per_second=1.0), STAGING)),
    ):
        d = diff(BASE, new)
        changed = set(d.replace)
        assert changed and d.carry == changed, new
        assert not d.add and not d.remove


def test_new_credentials_replace_and_carry_the_store() -> None:
    d = diff(BASE, BASE, {"prod": Creds(), "staging": KEYS["staging"]})
    assert d.replace == (("prod", "cn-hangzhou"), ("prod", "cn-shanghai"))
    assert d.carry == frozenset(d.replace)
    assert d.keep == (("staging", "eu-central-1"),)


def test_what_the_jobs_are_replaces_with_a_new_store() -> None:
    for new in (
        replace(BASE, lookback=7200.0),
        replace(BASE, recent_failures=3),
        replace(BASE, accounts=(replace(PROD, endpoint="http://x/{region}/"), STAGING)),
        replace(
            BASE,
            accounts=(
                replace(PROD, filters=config.Filters(api_names=("CreateListener",))),
                STAGING,
            ),
        ),
    ):
        d = diff(BASE, new)
        assert d.replace and d.carry == frozenset(), new


def test_plans_compare_credentials_by_identity_not_by_value() -> None:
    a, b = Creds(), Creds()
    assert TargetPlan(PROD, BASE, a) == TargetPlan(PROD, BASE, a)
    assert TargetPlan(PROD, BASE, a) != TargetPlan(PROD, BASE, b)
