"""Temporary credentials from `ALIBABA_CLOUD_CREDENTIALS_URI`, the last link of the chain."""

from __future__ import annotations

from exporter.alibaba.credentials.base import (
    ENV_CREDENTIALS_URI,
    Options,
    credential_from,
    http_request,
    json_object,
)
from exporter.alibaba.signing import Credential
from exporter.errors import FetchError


class CredentialsUri:
    """GET `ALIBABA_CLOUD_CREDENTIALS_URI` → {Code: Success, AccessKeyId, ..., Expiration}."""

    def __init__(self, options: Options, uri: str) -> None:
        self._options = options
        self._uri = uri

    def __call__(self) -> Credential:
        what = f"credentials URI ({ENV_CREDENTIALS_URI})"
        answer = http_request(self._options, what, "GET", self._uri, timeout=self._options.timeout)
        body = json_object(answer, what)
        if answer.status_code != 200 or body.get("Code") != "Success":
            code = body.get("Code")
            raise FetchError(
                f"{what}: HTTP {answer.status_code}, Code {code!r}",
                str(code)[:100] if isinstance(code, str) and code else f"HTTP{answer.status_code}",
            )
        return credential_from(body, what)
