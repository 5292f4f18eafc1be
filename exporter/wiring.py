"""The parts `App` wires targets from, and the rules a reload diffs configs by.

Split from `exporter.app` so that the wiring reads as one class; nothing but `exporter.app`
imports this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, ParamSpec

from exporter import config
from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.credentials import CredentialProvider
from exporter.errors import CredentialsError
from exporter.jobs.model import Job, JobQuery
from exporter.jobs.target import Target, TargetKey
from exporter.metrics.samples import ExpositionOptions

_P = ParamSpec("_P")


class Generation:
    """A count of changes to what the exporter exposes, for the render cache (`WebHooks.
    generation`). Bumped after a change is published: by every finished refresh (the
    targets' snapshots, statuses and the request metrics it observed), by every change of
    the self-metrics and by reloads. A family whose values change any other way must bump
    it too, or scrapes would be served a render made before the change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def bump(self) -> None:
        with self._lock:
            self._value += 1

    def __call__(self) -> int:
        return self._value


class Unavailable:
    """Job source of an account whose credentials cannot be found: every refresh fails
    with the same actionable message, so only that account's targets go `up 0`."""

    def __init__(self, error: CredentialsError) -> None:
        self._error = error

    def list_jobs(self, query: JobQuery) -> list[Job]:
        raise self._error


class Gate(Generic[_P]):
    """Passes observations on until closed: by a reload that removes their target (request
    observations) or replaces their account's credential provider (credential fetches),
    so a request or fetch still in flight then cannot bring its forgotten series back."""

    def __init__(self, observe: Callable[_P, None]) -> None:
        self._observe = observe
        self._lock = threading.Lock()
        self._open = True

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> None:
        with self._lock:
            if self._open:
                self._observe(*args, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._open = False


@dataclass(eq=False)
class AccountCredentials:
    """An account's credential provider (or why it has none) and what it was built from;
    kept across reloads while that is unchanged, so a reload does not fetch anew."""

    provider: CredentialProvider | CredentialsError
    built_from: tuple[config.CredentialsConfig | None, float]
    gate: Gate[[str, str, float | None]]


@dataclass(eq=False)
class Wired:
    target: Target
    account: config.AccountConfig
    credentials: AccountCredentials
    client: ListAsynJobsClient | None
    gate: Gate[[str, float]] | None = None


# --- what a reload keeps ---


def target_keys(cfg: config.Config) -> frozenset[TargetKey]:
    return frozenset((a.name, region) for a in cfg.accounts for region in a.regions)


def same_globals(a: config.Config, b: config.Config) -> bool:
    """Whether a target built under `a` is still right under `b` (accounts aside; the job
    events are the App's, not the targets'; the metrics block is applied in place)."""
    return _globals(a) == _globals(b)


def _globals(c: config.Config) -> config.Config:
    # The metrics block is applied to the targets in place by reload (no rebuild needed).
    return replace(
        c,
        accounts=(),
        cache_ttl=0.0,
        job_events=config.JobEventsConfig(),
        metrics=config.MetricsConfig(),
        discovery=config.DiscoveryConfig(),  # how targets are found is not their data
    )


def exposition_options(metrics: config.MetricsConfig) -> ExpositionOptions:
    return ExpositionOptions(metrics.duration_labels, metrics.disabled())


def same_data(
    a: config.Config,
    account_a: config.AccountConfig,
    b: config.Config,
    account_b: config.AccountConfig,
) -> bool:
    """Whether a target's job store can carry over: same jobs, same counting window.

    (Called for one region key, so name and region already match.)
    """
    return (
        a.lookback == b.lookback
        and a.recent_failures == b.recent_failures
        and account_a.filters == account_b.filters
        and account_a.endpoint == account_b.endpoint
    )
