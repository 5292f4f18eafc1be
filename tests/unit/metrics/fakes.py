"""Fakes shared by the exporter.metrics tests: a target view over a real JobStore, a job maker."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.jobs.model import Job
from exporter.jobs.snapshot import StoreSnapshot
from exporter.jobs.store import JobStore
from exporter.jobs.target import TargetStatus
from exporter.metrics.collector import JobFamilies, TargetView
from exporter.metrics.samples import ExpositionOptions

T0 = 1_700_000_000.0


@dataclass
class FakeView:
    account: str
    region: str
    store: JobStore = field(default_factory=lambda: JobStore(3600, 10, duration_buckets=(60.0,)))
    state: TargetStatus = field(default_factory=TargetStatus)

    def snapshot(self) -> StoreSnapshot:
        return self.store.snapshot()

    def status(self) -> TargetStatus:
        return self.state


def mkjob(
    job_id: str,
    status: str,
    rt: str,
    api: str,
    op: str,
    resource_id: str,
    create: float,
    modify: float,
    code: str = "",
) -> Job:
    return Job(job_id, api, op, rt, resource_id, status, code, "", create, modify)


def published(views: Iterable[TargetView], options: ExpositionOptions | None = None) -> JobFamilies:
    """The job families of `views`, each written as it is now (a changed view is seen
    once published again, as the App publishes a target after each refresh)."""
    families = JobFamilies(options)
    families.set_targets(views)
    return families
