"""The job model: one ListAsynJobs entry, one logical listing, and the label-set keys."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.wire import TERMINAL

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


# API strings are shown as label values and in events; a hostile or buggy API must not
# bloat either.
MAX_TEXT_LENGTH = 256
_ELLIPSIS = "…"


def cap_text(value: str) -> str:
    """An API string made safe to show: as a label value, in a job event, on the landing page.

    Values longer than MAX_TEXT_LENGTH characters are cut to that length, the
    last character replaced by "…". Lone surrogates (JSON can carry them) would make
    the UTF-8 exposition fail, so they become U+FFFD.
    """
    if not value.isascii():
        value = _valid_unicode(value)
    if len(value) <= MAX_TEXT_LENGTH:
        return value
    return value[: MAX_TEXT_LENGTH - 1] + _ELLIPSIS


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Round trip through UTF-16: valid surrogate pairs join, lone ones become U+FFFD.
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value
