"""Jobs for unit tests: one function with the fields a test does not care about filled in."""

from __future__ import annotations

from exporter.jobs.model import Job
from exporter.wire import FAILED


def job(
    job_id: str,
    status: str,
    create: float,
    modify: float | None = None,
    *,
    api_name: str = "CreateListener",
    resource_type: str = "listener",
    resource_id: str = "lsn-1",
    error_code: str = "Conflict.Lock",  # used only when the job failed
    message: str = "",
) -> Job:
    """A job of `api_name` on `resource_type`; ModifyTime defaults to CreateTime."""
    return Job(
        id=job_id,
        api_name=api_name,
        operate_type="Create",
        resource_type=resource_type,
        resource_id=resource_id,
        status=status,
        error_code=error_code if status == FAILED else "",
        error_message=message if status == FAILED else "",
        create_time=create,
        modify_time=create if modify is None else modify,
    )
