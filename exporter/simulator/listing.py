"""The ListAsynJobs answer: parameters, filters, paging with opaque NextTokens bound to
their query, the paging faults, and the rendering of (possibly malformed) bodies."""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Any

from exporter.simulator.faults import Faults
from exporter.simulator.jobs import Region, SimJob, listing_order
from exporter.simulator.messages import JSON, Reject, dumps, iso
from exporter.simulator.world import SimClock, World
from exporter.wire import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PROCESSING

_MAX_RESULTS_DEFAULT = DEFAULT_PAGE_SIZE
_MAX_RESULTS_LIMIT = MAX_PAGE_SIZE
_ARRAY_RE = re.compile(r"^(JobIds|ResourceIds)\.(\d+)$")
_TENGINE_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def _in_time_range(
    job: SimJob, now_ms: int, field_name: str, begin: int | None, end: int | None
) -> bool:
    if begin is None and end is None:
        return True
    value = job.create_ms
    if field_name == "ModifyTime":
        value = job.create_ms if job.status(now_ms) == PROCESSING else job.finish_ms or value
    return (begin is None or value >= begin) and (end is None or value <= end)


class Listing:
    """Answers ListAsynJobs for a region; signs its NextTokens with a per-process key."""

    def __init__(self, world: World, time: SimClock) -> None:
        self._world = world
        self._time = time
        self._token_key = secrets.token_bytes(32)
        self._token_serial = 0

    def _int_param(self, params: Mapping[str, str], name: str) -> int | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise Reject(
                400, "InvalidParameter", f"The parameter {name} is invalid: {raw!r}."
            ) from None

    def _token(self, offset: int, fingerprint: str) -> str:
        self._token_serial += 1
        payload = f"{offset}.{fingerprint}.{self._token_serial}.".encode()
        # Padded so the base64 text always ends in "=" (and often holds "+" or "/"): a
        # client that does not percent-encode NextToken breaks at once, not by chance.
        while (len(payload) + 16) % 3 != 1:
            payload += b"."
        mac = hmac.new(self._token_key, payload, hashlib.sha256).digest()[:16]
        return base64.b64encode(payload + mac).decode()

    def _untoken(self, token: str, fingerprint: str) -> int:
        bad = Reject(400, "IllegalParam.NextToken", "The specified NextToken is invalid.")
        try:
            raw = base64.b64decode(token, validate=True)
        except ValueError:
            raise bad from None
        payload, mac = raw[:-16], raw[-16:]
        expected = hmac.new(self._token_key, payload, hashlib.sha256).digest()[:16]
        if len(raw) <= 16 or not hmac.compare_digest(mac, expected):
            raise bad
        offset, token_fingerprint, _ = payload.decode().split(".", 2)
        if token_fingerprint != fingerprint:  # issued for another query or region
            raise bad
        return int(offset)

    def answer(
        self, state: Region, params: Mapping[str, str], faults: Faults, request_id: str
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        """The answer to an authenticated ListAsynJobs of the region: (status, headers, body)."""
        max_raw = params.get("MaxResults") or str(_MAX_RESULTS_DEFAULT)
        if not max_raw.isdigit() or not 1 <= int(max_raw) <= _MAX_RESULTS_LIMIT:
            raise Reject(
                400,
                "IllegalParam.MaxResults",
                "The parameter MaxResults is illegal: it must be from 1 to 100.",
            )
        max_results = int(max_raw)
        begin = self._int_param(params, "BeginTime")
        end = self._int_param(params, "EndTime")
        arrays: dict[str, list[tuple[int, str]]] = {"JobIds": [], "ResourceIds": []}
        for name, value in params.items():
            match = _ARRAY_RE.match(name)
            if match:
                arrays[match.group(1)].append((int(match.group(2)), value))
        job_ids = {v for _, v in arrays["JobIds"]}
        resource_ids = {v for _, v in arrays["ResourceIds"]}
        resource_type = params.get("ResourceType") or None
        api_name = params.get("ApiName") or None
        fingerprint = hashlib.sha256(
            dumps(
                [
                    state.name,
                    sorted(job_ids),
                    sorted(resource_ids),
                    resource_type,
                    api_name,
                    begin,
                    end,
                ]
            )
        ).hexdigest()[:16]
        token_in = params.get("NextToken") or ""
        offset = self._untoken(token_in, fingerprint) if token_in else 0

        now_ms = self._time.now_ms()
        listing, keys = self._world.listing(state)
        # `listing[lo:hi]` are the matching jobs when only CreateTime bounds filter (the
        # exporter's window listing): the listing is newest first, so bisect finds them.
        lo = bisect.bisect_left(keys, -now_ms)
        hi = len(listing)
        by_create = faults.begin_time_field != "ModifyTime"
        if by_create and end is not None:
            lo = max(lo, bisect.bisect_left(keys, -end))
        if by_create and begin is not None:
            hi = bisect.bisect_right(keys, -begin)
        if job_ids or resource_ids or resource_type or api_name or not by_create:
            # Other filters: checked job by job; a JobIds filter picks its few jobs by id.
            candidates = (
                sorted((state.jobs[i] for i in job_ids if i in state.jobs), key=listing_order)
                if job_ids
                else listing[lo:hi]
            )
            listing = [
                j
                for j in candidates
                if j.create_ms <= now_ms
                and (not job_ids or j.id in job_ids)
                and (not resource_ids or j.resource_id in resource_ids)
                and (resource_type is None or j.resource_type == resource_type)
                and (api_name is None or j.api_name == api_name)
                and _in_time_range(j, now_ms, faults.begin_time_field, begin, end)
            ]
            lo, hi = 0, len(listing)
        total = max(0, hi - lo)
        start = offset
        overlap = faults.duplicate_across_pages or faults.status_flip_between_pages
        if overlap and offset > 0 and max_results > 1:
            # Offset paging while jobs arrive shifts the list: the previous page's last job
            # shows up again. The page still holds at most MaxResults jobs and moves on.
            start = offset - 1
        # Only the page is rendered: a job's status depends on the simulated time.
        page = [j.view(now_ms) for j in listing[lo + start : lo + min(start + max_results, total)]]
        next_offset = start + max_results
        more = next_offset < total
        if faults.status_flip_between_pages and more and max_results > 1 and page:
            last = page[-1]
            if last["Status"] != PROCESSING:
                # The job finished "between pages": stale here, its true state on the next.
                last.pop("ErrorCode", None)
                last.pop("ErrorMessage", None)
                last["Status"] = PROCESSING
                last["ModifyTime"] = last["CreateTime"]
        next_token = self._token(next_offset, fingerprint) if more else ""
        if faults.endless_next_token:
            next_token = self._token(min(next_offset, total), fingerprint)
        if faults.repeat_next_token and token_in:
            next_token = token_in
        body: dict[str, Any] = {
            "RequestId": request_id,
            "TotalCount": total,
            "MaxResults": max_results,
            "NextToken": next_token,
            "Jobs": page,
        }
        return render(body, faults.malformed)


def render(body: dict[str, Any], malformed: str) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    """The answer as sent: the body as JSON, or what the `malformed` knob makes of it."""
    json_type = (("Content-Type", JSON),)
    if malformed == "html502":
        # What a proxy or SLB in front of the API sends when the backend is gone.
        return 502, (("Content-Type", "text/html"),), _TENGINE_502
    if malformed == "not_json":
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?><ListAsynJobsResponse><RequestId>'
            f"{body['RequestId']}</RequestId></ListAsynJobsResponse>"
        )
        return 200, (("Content-Type", "text/xml;charset=utf-8"),), xml.encode()
    if malformed == "no_jobs":
        # A 2xx JSON answer that is not a ListAsynJobs answer (a proxy's, another API's).
        body = {"RequestId": body["RequestId"]}
    elif malformed == "jobs_null":
        body["Jobs"] = None
    elif malformed == "missing_fields":
        del body["TotalCount"]
        for job in body["Jobs"]:
            job.pop("Status", None)
            job.pop("CreateTime", None)
    elif malformed == "wrong_types":
        body["TotalCount"] = str(body["TotalCount"])
        for job in body["Jobs"]:
            job["CreateTime"] = iso(job["CreateTime"])
            job["ModifyTime"] = iso(job["ModifyTime"])
    elif malformed == "extra_fields":
        # Not an error: fields a newer API version might add; clients must ignore them.
        body["ExtraInfo"] = {"Region": "simulated", "Hint": None}
        for job in body["Jobs"]:
            job["ResourceName"] = f"name-of-{job['ResourceId']}"
            job["Progress"] = 100 if job["Status"] != PROCESSING else 50
    data = dumps(body)
    if malformed == "truncated":
        data = data[: len(data) // 2]
    return 200, json_type, data
