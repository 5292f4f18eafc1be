"""ListAsynJobs over httpx: paging, retries, error mapping. Knows nothing of Prometheus.

STUB: the interface below is agreed; the implementation is in progress
(see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.jobs import Job, JobQuery

ACTION = "ListAsynJobs"
API_VERSION = "2020-06-16"
MAX_IDS_PER_CALL = 20  # JobIds.N / ResourceIds.N per call: the API's limit is unconfirmed


# Called once per HTTP attempt with (code, seconds): code is "OK", the API error Code,
# "Timeout" or "TransportError". The composition root turns it into metrics.
RequestObserver = Callable[[str, float], None]


class ListAsynJobsClient:
    def list_jobs(self, query: JobQuery) -> list[Job]:
        raise NotImplementedError
