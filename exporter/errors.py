"""The exporter's one error tree; every module raises from here and nothing here imports us.

    ExporterError
    ├── ConfigError            bad flags / config file; carries every problem with its key path
    ├── CredentialsError       no usable credential source, unreadable secret file, STS refusal
    │   └── FetchError         fetching temporary credentials failed (its `code` is the label)
    ├── ApiError               the ALB API answered with an error body (mapped by `Code`)
    │   ├── ThrottledError     Throttling*, retryable
    │   ├── ServerError        SystemBusy, ServiceUnavailable, InternalError, 5xx: retryable
    │   ├── AuthError          signature, access key, token, permission: never retried
    │   └── RequestError       parameter and other client-side errors: never retried
    ├── TransportError         no usable answer: connection failure, malformed body
    │   ├── RequestTimeoutError  connect/read timeout (retryable)
    │   └── MalformedResponseError  a body we cannot interpret
    ├── CancelledError         a call cut short by shutdown (SIGTERM): no answer, not counted
    ├── PagingError            the page-through did not finish (max_pages, repeated NextToken)
    └── StateError             the state file is not one this version can use
        └── StateVersionError  written by a newer version (kept aside as .v<N>-<time>)

Error messages must never contain secrets: callers build them from codes, ids and
messages returned by the API, never from credentials.
"""

from __future__ import annotations


class ExporterError(Exception):
    """Base of every error the exporter raises on purpose."""


class ConfigError(ExporterError):
    """Invalid flags or configuration. `problems` are one-line "key.path: what is wrong"."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class CredentialsError(ExporterError):
    """No credentials could be obtained (nothing configured, file unreadable, STS refused)."""


class FetchError(CredentialsError):
    """Fetching temporary credentials failed; `code` is the metric label."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class ApiError(ExporterError):
    """An error answer from the ALB API, classified by its `Code` (not its HTTP status)."""

    retryable = False

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        http_status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.api_message = message
        self.http_status = http_status
        self.request_id = request_id
        # Seconds to wait before retrying, from the `x-acs-retry-after` header (ms on the wire).
        self.retry_after = retry_after
        detail = f"{code}: {message}" if message else code
        if http_status is not None:
            detail += f" (HTTP {http_status}"
            detail += f", RequestId {request_id})" if request_id else ")"
        super().__init__(detail)


class ThrottledError(ApiError):
    """Flow control (Throttling, Throttling.User, Throttling.Api, Rejected.Throttling)."""

    retryable = True


class ServerError(ApiError):
    """Transient server-side failure (SystemBusy, ServiceUnavailable, InternalError, 5xx)."""

    retryable = True


class AuthError(ApiError):
    """Credentials, signature, clock or permission problems; retrying cannot help."""


class RequestError(ApiError):
    """Any other error answer (bad parameter, unknown action, ...); not retried."""


class TransportError(ExporterError):
    """No usable API answer: connection refused/reset, or a body we cannot parse."""

    code = "TransportError"
    retryable = True


class RequestTimeoutError(TransportError):
    """The API did not answer within `request_timeout`."""

    code = "Timeout"


class MalformedResponseError(TransportError):
    """A 2xx answer that is not a ListAsynJobs answer: not JSON, not an object, neither
    `Jobs` nor `TotalCount`, or fields of the wrong type.

    A body that failed to parse may be a truncated transfer and is retried; a well-formed
    body with the wrong shape will not change on a retry, so it is not.
    """

    code = "MalformedResponse"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(f"malformed ListAsynJobs response: {message}")
        self.retryable = retryable


class PagingError(ExporterError):
    """Paging stopped before the last page: `max_pages` reached or a NextToken repeated.

    The partial result is discarded: gauges built from part of the window would lie.
    """


class CancelledError(ExporterError):
    """An API call cancelled because its client was closed (shutdown): not an answer of
    the API, so neither retried nor counted in the request metrics."""

    code = "Cancelled"


class StateError(ExporterError, ValueError):
    """The state file is not a state file this version can use."""


class StateVersionError(StateError):
    """The state file was written by a newer version of the exporter (a rollback after an
    upgrade): its counts are what the next upgrade should get back, so it is kept."""

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version
