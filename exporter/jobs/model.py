"""The job model: one ListAsynJobs entry, one logical listing, and the label-set keys."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.alibaba.api import TERMINAL

# Label-set keys; the order matches the metric's label order in SPEC.md.
StatusKey = tuple[str, str, str, str]  # (status, resource_type, api_name, operate_type)
ErrorKey = tuple[str, str, str]  # (resource_type, api_name, error_code)
DurationKey = tuple[str, str, str]  # (status, resource_type, api_name)
ApiKey = tuple[str, str]  # (resource_type, api_name)


@dataclass(frozen=True, slots=True)
class Job:
    """One ListAsynJobs entry. Times are Unix seconds (the API sends epoch milliseconds)."""

    id: str
    api_name: str
    operate_type: str
    resource_type: str
    resource_id: str
    status: str
    error_code: str
    error_message: str
    create_time: float
    modify_time: float

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class JobQuery:
    """One logical listing; the client pages it to the end. Empty fields are not sent."""

    begin_time_ms: int | None = None
    end_time_ms: int | None = None
    job_ids: tuple[str, ...] = ()
    resource_type: str | None = None
    api_name: str | None = None
    resource_ids: tuple[str, ...] = ()
