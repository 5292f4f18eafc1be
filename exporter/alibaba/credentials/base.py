"""What every credential source shares: the provider protocol, the environment it reads,
secret files re-read on change, and the HTTP fetch used by STS, metadata and the URI."""

from __future__ import annotations

import calendar
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from exporter.alibaba.cancel import Cancel
from exporter.alibaba.signing import Credential
from exporter.alibaba.tls import shared_context
from exporter.config import is_loopback_host
from exporter.errors import CredentialsError, FetchError

# One logger for the whole package: its name is in every log line, and operators filter on it.
log = logging.getLogger("exporter.alibaba.credentials")

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_ROLE_ARN = "ALIBABA_CLOUD_ROLE_ARN"
ENV_OIDC_PROVIDER_ARN = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"
ENV_OIDC_TOKEN_FILE = "ALIBABA_CLOUD_OIDC_TOKEN_FILE"
ENV_ROLE_SESSION_NAME = "ALIBABA_CLOUD_ROLE_SESSION_NAME"
ENV_PROFILE = "ALIBABA_CLOUD_PROFILE"
ENV_CLI_PROFILE_DISABLED = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED"
ENV_CREDENTIALS_FILE = "ALIBABA_CLOUD_CREDENTIALS_FILE"
ENV_ECS_METADATA = "ALIBABA_CLOUD_ECS_METADATA"  # the RAM role name
ENV_ECS_METADATA_DISABLED = "ALIBABA_CLOUD_ECS_METADATA_DISABLED"
ENV_IMDSV1_DISABLED = "ALIBABA_CLOUD_IMDSV1_DISABLED"
ENV_CREDENTIALS_URI = "ALIBABA_CLOUD_CREDENTIALS_URI"
ENV_STS_REGION = "ALIBABA_CLOUD_STS_REGION"
ENV_VPC_ENDPOINT_ENABLED = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"
# Ours, not Alibaba's: point STS and the instance metadata service elsewhere (tests, proxies).
ENV_STS_ENDPOINT = "ALIBABA_CLOUD_STS_ENDPOINT"
ENV_ECS_METADATA_ENDPOINT = "ALIBABA_CLOUD_ECS_METADATA_ENDPOINT"

_MESSAGE_LIMIT = 200

# (source, code, expiration): called after every fetch of temporary credentials; code is
# "OK" (expiration set), an STS/metadata error code, "Timeout", "TransportError", ...
CredentialObserver = Callable[[str, str, float | None], None]


class CredentialProvider(Protocol):
    """Hands out the credential to sign with; called before every request, so it is cheap."""

    @property
    def source(self) -> str:
        """Short, stable label for metrics: "static", "env", "oidc_role_arn", ..."""
        ...

    def get(self) -> Credential:
        """The current credential; raises CredentialsError when none can be obtained."""
        ...

    def expiration(self) -> float | None:
        """Unix time at which the current credential expires; None for long-lived keys."""
        ...

    def invalidate(self) -> None:
        """The API rejected the credential as expired: fetch a new one on the next `get()`."""
        ...


@dataclass(frozen=True)
class Options:
    """What every provider of one account shares."""

    env: Mapping[str, str]
    context: str  # "account prod": prefixes messages
    observer: CredentialObserver | None
    transport: httpx.BaseTransport | None
    clock: Callable[[], float]
    timeout: float
    # Cancels the fetches in flight at shutdown (a silent STS must not hold SIGTERM).
    cancel: Cancel | None = None


# --- secret files ------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileVersion:
    # Kubernetes rotates a mounted secret by swapping a symlink: the inode changes, and
    # mtime alone can be too coarse on some filesystems.
    mtime_ns: int
    inode: int
    size: int


class SecretFile:
    """One secret file, re-read only when it changes."""

    def __init__(self, path: str, key_path: str) -> None:
        self.path = path
        self.key_path = key_path
        self._version: _FileVersion | None = None
        self._value = ""

    def read(self) -> str:
        """The stripped contents; the caller holds the provider's lock."""
        try:
            info = os.stat(self.path)
            version = _FileVersion(info.st_mtime_ns, info.st_ino, info.st_size)
            if version == self._version:
                return self._value
            with open(self.path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise CredentialsError(
                f'{self.key_path}: cannot read "{self.path}": {exc.strerror or type(exc).__name__}'
            ) from None
        try:
            # Secrets are written with `echo` or by editors: a trailing newline is not part of it.
            value = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CredentialsError(f'{self.key_path}: "{self.path}" is not UTF-8 text') from None
        if not value:
            raise CredentialsError(f'{self.key_path}: "{self.path}" is empty')
        self._version, self._value = version, value
        return value


def resolve(part: str | SecretFile | None) -> str | None:
    """A config value that is either inline or a secret file."""
    return part.read() if isinstance(part, SecretFile) else part


# --- HTTP for STS, metadata and the credentials URI --------------------------------------


def http_request(
    options: Options,
    what: str,
    method: str,
    url: str,
    *,
    timeout: float | httpx.Timeout,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    trust_env: bool = True,
) -> httpx.Response:
    # A fresh client per fetch: fetches are minutes apart, and nothing is left to close.
    # Exception texts are not echoed: they may contain the URL, and for AssumeRole a body.
    cancel = options.cancel or Cancel()
    if cancel.cancelled:
        raise FetchError(f"{what}: cancelled, the exporter is stopping", "Cancelled")
    try:
        with httpx.Client(
            transport=options.transport,
            # Without the shared context each fetch would load the CA bundle anew.
            verify=shared_context() if trust_env else True,
            timeout=timeout,
            follow_redirects=False,
            trust_env=trust_env,
        ) as client:
            return client.request(
                method, url, headers=headers, content=content, extensions=cancel.extensions
            )
    except httpx.HTTPError as exc:
        if cancel.cancelled:
            raise FetchError(f"{what}: cancelled, the exporter is stopping", "Cancelled") from None
        if isinstance(exc, httpx.TimeoutException):
            kind = type(exc).__name__
            raise FetchError(f"{what}: no answer in time ({kind})", "Timeout") from None
        if isinstance(exc, httpx.RequestError):
            kind = type(exc).__name__
            raise FetchError(f"{what}: unreachable ({kind})", "TransportError") from None
        raise


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise FetchError(
            f"{what}: HTTP {response.status_code} with a body that is not a JSON object",
            "MalformedResponse",
        )
    return body


def _parse_expiration(value: object, what: str) -> float:
    if isinstance(value, str):
        try:
            return float(calendar.timegm(time.strptime(value.strip(), "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            pass
    raise FetchError(
        f"{what}: Expiration is not a UTC time like 2024-01-01T00:00:00Z", "MalformedResponse"
    )


def credential_from(body: Mapping[str, Any], what: str) -> Credential:
    """AccessKeyId / AccessKeySecret / SecurityToken / Expiration, as STS and IMDS send them."""
    values = [body.get(k) for k in ("AccessKeyId", "AccessKeySecret", "SecurityToken")]
    if not all(isinstance(v, str) and v for v in values):
        raise FetchError(
            f"{what}: the answer lacks AccessKeyId, AccessKeySecret or SecurityToken",
            "MalformedResponse",
        )
    access_key_id, secret, token = (str(v) for v in values)
    expiration = _parse_expiration(body.get("Expiration"), what)
    return Credential(access_key_id, secret, token, expiration)


def scrub(text: str, *secrets: str | None) -> str:
    """Shorten an API message and blank out any secret it might echo."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def url_problem(url: str, extra_http_host: str = "") -> str | None:
    """What is wrong with an endpoint from the environment, or None."""
    # Never echo the URL: a bad one may carry user:password@.
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an https:// URL or a host name"
    if "@" in parts.netloc or parts.query or parts.fragment:
        return "must not contain credentials, a query or a fragment"
    if parts.scheme == "http" and not (is_loopback_host(host) or host == extra_http_host):
        return "http:// is only allowed for loopback hosts; use https://"
    return None
