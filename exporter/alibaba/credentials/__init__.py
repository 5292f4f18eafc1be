"""Where an account's credentials come from, and keeping temporary ones fresh.

Explicit config (`credentials: {type: ...}`) or, without it, the default chain of Alibaba
Cloud's own tooling, first applicable source wins: environment keys → OIDC/RRSA env →
CLI profile `~/.aliyun/config.json` → credentials file `~/.alibabacloud/credentials(.ini)`
→ ECS RAM role (instance metadata) → `ALIBABA_CLOUD_CREDENTIALS_URI`. The last two need
the network to tell whether they apply, so they are tried lazily on the first `get()`.

Temporary credentials (STS AssumeRole, AssumeRoleWithOIDC, instance metadata, URI) sit
behind a `RefreshingProvider`: fetched once per account however many regions sign with
them (single-flight), refreshed ahead of expiry, backed off after failures, and reported
to an observer callable (the CLI turns that into metrics; this module never imports
prometheus_client). Error messages list what was tried and never contain secrets.
"""

from __future__ import annotations

import calendar
import configparser
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import httpx

from exporter.alibaba.signing import (
    Credential,
    canonical_query,
    format_timestamp,
    new_nonce,
    v1_signature,
)
from exporter.config import AccountConfig, CredentialsConfig, is_loopback_host
from exporter.errors import CredentialsError, FetchError

log = logging.getLogger(__name__)

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

STS_VERSION = "2015-04-01"
DEFAULT_DURATION = 3600.0  # STS DurationSeconds when the config does not say
DEFAULT_SESSION_NAME = "alb-jobs-exporter"
METADATA_URL = "http://100.100.100.200"
METADATA_TOKEN_TTL = "21600"
# Temporary credentials are refreshed when less than min(15 min, a third of their lifetime)
# is left: 15 min as the official SDKs do, a third so that short-lived ones are not
# refreshed on every request.
REFRESH_MARGIN = 15 * 60.0
# A forced refresh (the API said the token expired) is ignored this soon after a fetch: the
# other regions' requests signed with the old token fail too and must not each fetch again.
FORCED_REFRESH_INTERVAL = 2.0
STS_TIMEOUT = 10.0
METADATA_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
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
class _Options:
    """What every provider of one account shares."""

    env: Mapping[str, str]
    context: str  # "account prod": prefixes messages
    observer: CredentialObserver | None
    transport: httpx.BaseTransport | None
    clock: Callable[[], float]
    timeout: float


# --- long-lived keys ---------------------------------------------------------------------


@dataclass(frozen=True)
class _FileVersion:
    # Kubernetes rotates a mounted secret by swapping a symlink: the inode changes, and
    # mtime alone can be too coarse on some filesystems.
    mtime_ns: int
    inode: int
    size: int


class _SecretFile:
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


class StaticProvider:
    """Long-lived keys (or a fixed STS token) from the config: inline values and/or files.

    Files are re-read when they change, so a rotated Kubernetes secret is used without a
    restart. Safe to call from several refresh threads at once.
    """

    source = "static"

    def __init__(self, config: CredentialsConfig, *, context: str = "credentials") -> None:
        # `context` prefixes error messages, e.g. "account prod: credentials".
        self._context = context
        self._lock = threading.Lock()
        self._id = self._part(config.access_key_id, config.access_key_id_file, "access_key_id")
        self._secret = self._part(
            config.access_key_secret, config.access_key_secret_file, "access_key_secret"
        )
        self._token = self._part(
            config.security_token, config.security_token_file, "security_token"
        )
        if self._id is None or self._secret is None:
            raise CredentialsError(
                f"{context}: both access_key_id (or access_key_id_file) and "
                "access_key_secret (or access_key_secret_file) are required"
            )

    def _part(
        self, inline: str | None, file_path: str | None, key: str
    ) -> str | _SecretFile | None:
        if file_path:
            return _SecretFile(file_path, f"{self._context}.{key}_file")
        return inline or None

    def get(self) -> Credential:
        with self._lock:
            access_key_id = _resolve(self._id)
            secret = _resolve(self._secret)
            token = _resolve(self._token)
        if access_key_id is None or secret is None:  # ruled out by __init__
            raise CredentialsError(f"{self._context}: access key id or secret missing")
        return Credential(access_key_id, secret, token)

    def expiration(self) -> float | None:
        return None

    def invalidate(self) -> None:
        """Nothing to refresh: long-lived keys are what they are."""


def _resolve(part: str | _SecretFile | None) -> str | None:
    return part.read() if isinstance(part, _SecretFile) else part


class EnvProvider:
    """`ALIBABA_CLOUD_ACCESS_KEY_ID`, `..._SECRET` and optional `ALIBABA_CLOUD_SECURITY_TOKEN`."""

    source = "env"

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env

    def get(self) -> Credential:
        access_key_id = self._env.get(ENV_ACCESS_KEY_ID, "")
        secret = self._env.get(ENV_ACCESS_KEY_SECRET, "")
        missing = [name for name, value in _env_pair(access_key_id, secret) if not value]
        if missing:
            raise CredentialsError(f"environment: {' and '.join(missing)} not set")
        return Credential(access_key_id, secret, self._env.get(ENV_SECURITY_TOKEN) or None)

    def expiration(self) -> float | None:
        return None

    def invalidate(self) -> None:
        """Nothing to refresh: the environment is fixed for the life of the process."""


def _env_pair(access_key_id: str, secret: str) -> tuple[tuple[str, str], tuple[str, str]]:
    return ((ENV_ACCESS_KEY_ID, access_key_id), (ENV_ACCESS_KEY_SECRET, secret))


# --- temporary credentials ---------------------------------------------------------------


class RefreshingProvider:
    """Temporary credentials from `fetch`, shared by every region of one account.

    `get()` returns the cached credential until less than min(15 min, a third of its
    lifetime) is left, then fetches anew under a lock: concurrent callers wait for that one
    fetch (single-flight). After a failed fetch the next attempt waits (exponential backoff,
    1 s doubling up to 60 s); meanwhile the old credential is used while it is still valid,
    else the last error is raised at once.
    """

    def __init__(
        self,
        source: str,
        fetch: Callable[[], Credential],
        options: _Options,
        *,
        quiet: bool = False,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
    ) -> None:
        self.source = source
        self._fetch = fetch
        self._options = options
        # A chain link being probed (ECS, URI): failing is expected, logged at debug. The
        # chain clears it once the link is chosen: from then on a failure is a fault.
        self.quiet = quiet
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._lock = threading.Lock()
        self._credential: Credential | None = None
        self._fetched_at = 0.0
        self._refresh_at = 0.0
        self._retry_at = 0.0
        self._failures = 0
        self._error: CredentialsError | None = None
        # The kind of the last failure logged at warning (its code, and whether a valid
        # credential was still at hand), so a repeat is logged at debug only.
        self._logged_kind: str | None = None

    def expiration(self) -> float | None:
        with self._lock:
            return self._credential.expiration if self._credential else None

    def invalidate(self) -> None:
        with self._lock:
            now = self._options.clock()
            if self._credential is not None and now - self._fetched_at >= FORCED_REFRESH_INTERVAL:
                self._refresh_at = now

    def get(self) -> Credential:
        with self._lock:
            now = self._options.clock()
            current = self._credential
            if current is not None and now < self._refresh_at:
                return current
            if now < self._retry_at and self._error is not None:
                if _still_valid(current, now):
                    return current  # type: ignore[return-value]  # checked by _still_valid
                raise self._error
            return self._refresh(now, current)

    def _refresh(self, now: float, current: Credential | None) -> Credential:
        context = f"{self._options.context}: {self.source}"
        try:
            fresh = self._fetch()
            expiration = fresh.expiration
            if expiration is None or expiration <= now:
                raise FetchError("the credentials received have already expired", "Expired")
        except FetchError as exc:
            self._report(exc.code, None)
            return self._failed(CredentialsError(f"{context}: {exc}"), exc.code, now, current)
        except CredentialsError as exc:  # from a source provider: already reported there
            return self._failed(exc, "source", now, current)
        self._report("OK", expiration)
        lifetime = expiration - now
        self._credential = fresh
        self._fetched_at = now
        self._refresh_at = expiration - min(REFRESH_MARGIN, lifetime / 3)
        failures = self._failures
        self._failures, self._retry_at, self._error = 0, 0.0, None
        if self._logged_kind is not None:
            self._logged_kind = None
            log.info(
                "%s: temporary credentials %s after %d failed attempt%s, valid until %s",
                context,
                "refreshed" if current is not None else "obtained",
                failures,
                "" if failures == 1 else "s",
                format_timestamp(expiration),
            )
            return fresh
        log.log(
            logging.DEBUG if current is not None else logging.INFO,
            "%s: temporary credentials %s, valid until %s",
            context,
            "refreshed" if current is not None else "obtained",
            format_timestamp(expiration),
        )
        return fresh

    def _failed(
        self, error: CredentialsError, code: str, now: float, current: Credential | None
    ) -> Credential:
        # Logged once per kind of failure at warning, then at debug while it repeats (every
        # backoff step, up to once a minute while STS is down), like a target's refresh
        # errors; the recovery is logged at info. Never at error: that level is for bugs.
        self._failures += 1
        delay = min(self._backoff_cap, self._backoff_base * 2.0 ** (self._failures - 1))
        self._retry_at = now + delay
        self._error = error
        still_valid = _still_valid(current, now)
        kind = f"{code}:{'kept' if still_valid else 'none'}"
        if self.quiet or kind == self._logged_kind:
            level = logging.DEBUG
        else:
            level, self._logged_kind = logging.WARNING, kind
        if still_valid:
            assert current is not None and current.expiration is not None
            log.log(
                level,
                "%s; still using the current credentials (valid until %s), next try in %gs",
                error,
                format_timestamp(current.expiration),
                delay,
            )
            return current
        log.log(level, "%s; next try in %gs", error, delay)
        raise error

    def _report(self, code: str, expiration: float | None) -> None:
        if self._options.observer is not None:
            self._options.observer(self.source, code, expiration)


def _still_valid(credential: Credential | None, now: float) -> bool:
    return (
        credential is not None and credential.expiration is not None and credential.expiration > now
    )


# --- HTTP for STS, metadata and the credentials URI --------------------------------------


def _request(
    options: _Options,
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
    try:
        with httpx.Client(
            transport=options.transport,
            timeout=timeout,
            follow_redirects=False,
            trust_env=trust_env,
        ) as client:
            return client.request(method, url, headers=headers, content=content)
    except httpx.TimeoutException as exc:
        raise FetchError(f"{what}: no answer in time ({type(exc).__name__})", "Timeout") from None
    except httpx.RequestError as exc:
        raise FetchError(f"{what}: unreachable ({type(exc).__name__})", "TransportError") from None


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
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


def _credential_from(body: Mapping[str, Any], what: str) -> Credential:
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


def _scrub(text: str, *secrets: str | None) -> str:
    """Shorten an API message and blank out any secret it might echo."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def sts_endpoint(explicit: str | None, env: Mapping[str, str]) -> str:
    """The STS URL: explicit (config), else env, else `sts[-vpc].<region>.aliyuncs.com`."""
    if explicit:
        return explicit
    override = env.get(ENV_STS_ENDPOINT, "").strip()
    if override:
        url = override if "://" in override else f"https://{override}"
        problem = _url_problem(url)
        if problem:
            raise CredentialsError(f"environment {ENV_STS_ENDPOINT}: {problem}")
        return url
    region = env.get(ENV_STS_REGION, "").strip()
    if not region:
        return "https://sts.aliyuncs.com"
    vpc = env.get(ENV_VPC_ENDPOINT_ENABLED, "").strip().lower() == "true"
    return f"https://{'sts-vpc' if vpc else 'sts'}.{region}.aliyuncs.com"


def metadata_base_url(env: Mapping[str, str]) -> str:
    override = env.get(ENV_ECS_METADATA_ENDPOINT, "").strip().rstrip("/")
    if not override:
        return METADATA_URL
    problem = _url_problem(override, extra_http_host="100.100.100.200")
    if problem:
        raise CredentialsError(f"environment {ENV_ECS_METADATA_ENDPOINT}: {problem}")
    return override


def _url_problem(url: str, extra_http_host: str = "") -> str | None:
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


# --- STS ---------------------------------------------------------------------------------


def _sts_call(
    options: _Options,
    endpoint: str,
    action: str,
    params: Mapping[str, str],
    signer: Credential | None,
    *,
    secrets: tuple[str | None, ...] = (),
) -> Credential:
    """One STS call, parameters in a form body (never in the URL, where proxies log them).

    AssumeRole is V1-signed by `signer`; AssumeRoleWithOIDC is not signed at all.
    """
    what = f"STS {action}"
    form = {
        "Action": action,
        "Version": STS_VERSION,
        "Format": "JSON",
        "Timestamp": format_timestamp(options.clock()),
        "SignatureNonce": new_nonce(),
        **params,
    }
    if signer is not None:
        form.update(
            {
                "AccessKeyId": signer.access_key_id,
                "SignatureMethod": "HMAC-SHA1",
                "SignatureVersion": "1.0",
            }
        )
        if signer.security_token:
            form["SecurityToken"] = signer.security_token
        form["Signature"] = v1_signature("POST", form, signer.access_key_secret)
        secrets = (*secrets, signer.access_key_secret, signer.security_token)
    response = _request(
        options,
        what,
        "POST",
        endpoint,
        timeout=options.timeout,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "accept": "application/json",
        },
        content=canonical_query(form).encode("ascii"),
    )
    body = _json_object(response, what)
    code = body.get("Code")
    if response.status_code != 200 or (
        isinstance(code, str) and code and "Credentials" not in body
    ):
        code_text = code if isinstance(code, str) and code else f"HTTP{response.status_code}"
        message = body.get("Message") if isinstance(body.get("Message"), str) else ""
        request_id = body.get("RequestId") if isinstance(body.get("RequestId"), str) else ""
        detail = f"{code_text}: {_scrub(str(message), *secrets)}" if message else code_text
        raise FetchError(
            f"{what} failed: {detail} (HTTP {response.status_code}"
            + (f", RequestId {request_id})" if request_id else ")"),
            code_text[:100],
        )
    credentials = body.get("Credentials")
    if not isinstance(credentials, dict):
        raise FetchError(f"{what}: the answer has no Credentials object", "MalformedResponse")
    return _credential_from(credentials, what)


def _duration(config: CredentialsConfig | None) -> str:
    seconds = config.duration if config is not None and config.duration else DEFAULT_DURATION
    return str(int(seconds))


class _StsRole:
    """What AssumeRole and AssumeRoleWithOIDC share: the role's parameters, the endpoint,
    and errors that name the role."""

    action: ClassVar[str]  # the STS Action

    def __init__(
        self,
        options: _Options,
        role_arn: str,
        *,
        session_name: str | None,
        policy: str | None,
        duration: str,
        endpoint: str | None,
        extra: Mapping[str, str],
    ) -> None:
        self._options = options
        self.role_arn = role_arn
        self._params = {
            "RoleArn": role_arn,
            **extra,
            "RoleSessionName": session_name or DEFAULT_SESSION_NAME,
            "DurationSeconds": duration,
        }
        if policy:
            self._params["Policy"] = policy
        self._endpoint = sts_endpoint(endpoint, options.env)

    def _assume(
        self,
        params: Mapping[str, str],
        signer: Credential | None,
        secrets: tuple[str | None, ...],
    ) -> Credential:
        """One STS call with the role's parameters plus `params`; FetchError names the role."""
        try:
            return _sts_call(
                self._options,
                self._endpoint,
                self.action,
                {**self._params, **params},
                signer,
                secrets=secrets,
            )
        except FetchError as exc:
            raise FetchError(f"role {self.role_arn}: {exc}", exc.code) from None


class _AssumeRole(_StsRole):
    """STS AssumeRole, signed with the credentials of `source` (any other provider).

    The external id is a value, or a `_SecretFile` read on every fetch (re-read when the
    file changes, like the access key files).
    """

    action = "AssumeRole"

    def __init__(
        self,
        options: _Options,
        source: CredentialProvider,
        role_arn: str,
        *,
        session_name: str | None = None,
        external_id: str | _SecretFile | None = None,
        policy: str | None = None,
        duration: str = str(int(DEFAULT_DURATION)),
        endpoint: str | None = None,
    ) -> None:
        super().__init__(
            options,
            role_arn,
            session_name=session_name,
            policy=policy,
            duration=duration,
            endpoint=endpoint,
            extra={},
        )
        self._source = source
        self._external_id = external_id or None

    def __call__(self) -> Credential:
        try:
            external_id = _resolve(self._external_id)
        except CredentialsError as exc:
            raise FetchError(str(exc), "SecretFileError") from None
        signer = self._source.get()
        try:
            return self._assume(
                {"ExternalId": external_id} if external_id else {},
                signer,
                secrets=(external_id,),
            )
        except FetchError as exc:
            if exc.code == "InvalidSecurityToken.Expired":
                self._source.invalidate()  # the next attempt signs with fresh credentials
            raise


class _AssumeRoleWithOidc(_StsRole):
    """STS AssumeRoleWithOIDC (RRSA); the token file is read anew on every fetch (it rotates)."""

    action = "AssumeRoleWithOIDC"

    def __init__(
        self,
        options: _Options,
        role_arn: str,
        provider_arn: str,
        token_file: str,
        *,
        session_name: str | None = None,
        policy: str | None = None,
        duration: str = str(int(DEFAULT_DURATION)),
        endpoint: str | None = None,
    ) -> None:
        super().__init__(
            options,
            role_arn,
            session_name=session_name,
            policy=policy,
            duration=duration,
            endpoint=endpoint,
            extra={"OIDCProviderArn": provider_arn},
        )
        self._token_file = token_file

    def __call__(self) -> Credential:
        token = self._read_token()
        return self._assume({"OIDCToken": token}, None, secrets=(token,))

    def _read_token(self) -> str:
        try:
            with open(self._token_file, "rb") as fh:
                data = fh.read()
            token = data.decode("utf-8").strip()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise FetchError(
                f'cannot read the OIDC token file "{self._token_file}": {reason}', "TokenFileError"
            ) from None
        except UnicodeDecodeError:
            raise FetchError(
                f'the OIDC token file "{self._token_file}" is not UTF-8 text', "TokenFileError"
            ) from None
        if not token:
            raise FetchError(f'the OIDC token file "{self._token_file}" is empty', "TokenFileError")
        return token


# --- ECS instance metadata and the credentials URI ---------------------------------------


class _EcsRamRole:
    """The instance RAM role's credentials from the ECS metadata service.

    Token flow first (PUT /latest/api/token); if the service answers that with an error,
    plain (v1) requests follow unless ALIBABA_CLOUD_IMDSV1_DISABLED=true.
    """

    def __init__(self, options: _Options, role_name: str | None) -> None:
        self._options = options
        self._role_name = role_name or options.env.get(ENV_ECS_METADATA, "").strip() or None
        self._base = metadata_base_url(options.env)
        self._v1_disabled = options.env.get(ENV_IMDSV1_DISABLED, "").strip().lower() == "true"

    def __call__(self) -> Credential:
        what = "ECS instance metadata"
        headers: dict[str, str] = {}
        token = self._get(
            "PUT",
            "/latest/api/token",
            {"X-aliyun-ecs-metadata-token-ttl-seconds": METADATA_TOKEN_TTL},
        )
        if token.status_code == 200 and token.text.strip():
            headers["X-aliyun-ecs-metadata-token"] = token.text.strip()
        elif self._v1_disabled:
            raise FetchError(
                f"{what}: no metadata token (HTTP {token.status_code}) and "
                f"{ENV_IMDSV1_DISABLED}=true forbids requests without one",
                f"HTTP{token.status_code}",
            )
        role = self._role_name
        if role is None:
            answer = self._get("GET", "/latest/meta-data/ram/security-credentials/", headers)
            role = answer.text.strip().splitlines()[0] if answer.status_code == 200 else ""
            if answer.status_code == 404 or (answer.status_code == 200 and not role):
                raise FetchError(f"{what}: no RAM role is attached to this instance", "NoRole")
            if answer.status_code != 200:
                raise FetchError(
                    f"{what}: role name lookup failed (HTTP {answer.status_code})",
                    f"HTTP{answer.status_code}",
                )
        answer = self._get("GET", f"/latest/meta-data/ram/security-credentials/{role}", headers)
        if answer.status_code == 404:
            raise FetchError(
                f'{what}: RAM role "{role}" is not attached to this instance', "NoRole"
            )
        if answer.status_code != 200:
            raise FetchError(
                f'{what}: credentials of role "{role}" not available (HTTP {answer.status_code})',
                f"HTTP{answer.status_code}",
            )
        body = _json_object(answer, what)
        if body.get("Code") != "Success":
            code = body.get("Code")
            raise FetchError(
                f'{what}: role "{role}" answered Code {code!r}, not "Success"',
                str(code)[:100] if code else "MalformedResponse",
            )
        return _credential_from(body, what)

    def _get(self, method: str, path: str, headers: Mapping[str, str]) -> httpx.Response:
        # Link-local: never through an HTTP proxy from the environment.
        return _request(
            self._options,
            f"ECS instance metadata {self._base}",
            method,
            self._base + path,
            timeout=METADATA_TIMEOUT,
            headers=headers,
            trust_env=False,
        )


class _CredentialsUri:
    """GET `ALIBABA_CLOUD_CREDENTIALS_URI` → {Code: Success, AccessKeyId, ..., Expiration}."""

    def __init__(self, options: _Options, uri: str) -> None:
        self._options = options
        self._uri = uri

    def __call__(self) -> Credential:
        what = f"credentials URI ({ENV_CREDENTIALS_URI})"
        answer = _request(self._options, what, "GET", self._uri, timeout=self._options.timeout)
        body = _json_object(answer, what)
        if answer.status_code != 200 or body.get("Code") != "Success":
            code = body.get("Code")
            raise FetchError(
                f"{what}: HTTP {answer.status_code}, Code {code!r}",
                str(code)[:100] if isinstance(code, str) and code else f"HTTP{answer.status_code}",
            )
        return _credential_from(body, what)


# --- profiles ----------------------------------------------------------------------------


def _home_path(env: Mapping[str, str], *parts: str) -> str | None:
    home = env.get("HOME", "").strip()
    return os.path.join(home, *parts) if home else None


def _read_text(path: str, what: str) -> str | None:
    """The file's text; None when it does not exist; CredentialsError when unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise CredentialsError(f'{what} "{path}": cannot read: {reason}') from None


def _cli_profile(
    path: str, name: str | None, options: _Options, depth: int = 0
) -> CredentialProvider | str:
    """A profile of the aliyun CLI's config.json, or why not (file or profile missing)."""
    what = "CLI profile file"
    text = _read_text(path, what)
    if text is None:
        return f'CLI profile "{path}" (not found)'
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("profiles"), list):
        raise CredentialsError(f'{what} "{path}": not a JSON object with a "profiles" list')
    wanted = name or str(document.get("current") or "default")
    profiles = {
        p.get("name"): p for p in document["profiles"] if isinstance(p, dict) and p.get("name")
    }
    profile = profiles.get(wanted)
    if profile is None:
        return f'CLI profile "{path}" (no profile "{wanted}")'
    where = f'{what} "{path}" profile "{wanted}"'

    def field(key: str, required: bool = True) -> str | None:
        value = profile.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is None or value == "":
            if required:
                raise CredentialsError(f"{where}: {key} is missing")
            return None
        if not isinstance(value, str):
            raise CredentialsError(f"{where}: {key} must be a string")
        return value

    mode = profile.get("mode") or "AK"
    if mode == "AK":
        return StaticProvider(
            CredentialsConfig(
                access_key_id=field("access_key_id"), access_key_secret=field("access_key_secret")
            ),
            context=where,
        )
    if mode == "StsToken":
        return StaticProvider(
            CredentialsConfig(
                access_key_id=field("access_key_id"),
                access_key_secret=field("access_key_secret"),
                security_token=field("sts_token"),
            ),
            context=where,
        )
    duration = field("expired_seconds", required=False) or str(int(DEFAULT_DURATION))
    if mode in ("RamRoleArn", "ChainableRamRoleArn"):
        source: CredentialProvider
        if mode == "RamRoleArn":
            source = StaticProvider(
                CredentialsConfig(
                    access_key_id=field("access_key_id"),
                    access_key_secret=field("access_key_secret"),
                ),
                context=where,
            )
        elif depth >= 4:
            raise CredentialsError(f"{where}: source_profile chain is too long")
        else:
            outcome = _cli_profile(path, field("source_profile"), options, depth + 1)
            if isinstance(outcome, str):
                raise CredentialsError(f"{where}: source_profile: {outcome}")
            source = outcome
        return RefreshingProvider(
            "ram_role_arn",
            _AssumeRole(
                options,
                source,
                field("ram_role_arn") or "",
                session_name=field("ram_session_name", required=False),
                external_id=field("external_id", required=False),
                policy=field("policy", required=False),
                duration=duration,
            ),
            options,
        )
    if mode == "EcsRamRole":
        return RefreshingProvider(
            "ecs_ram_role", _EcsRamRole(options, field("ram_role_name", required=False)), options
        )
    if mode == "OIDC":
        return RefreshingProvider(
            "oidc_role_arn",
            _AssumeRoleWithOidc(
                options,
                field("ram_role_arn") or "",
                field("oidc_provider_arn") or "",
                field("oidc_token_file") or "",
                session_name=field("ram_session_name", required=False),
                duration=duration,
            ),
            options,
        )
    raise CredentialsError(f"{where}: mode {str(mode)[:40]!r} is not supported")


def _ini_profile(path: str, name: str, options: _Options) -> CredentialProvider | str:
    """A section of the Alibaba Cloud credentials file (INI), or why not."""
    what = "credentials file"
    text = _read_text(path, what)
    if text is None:
        return f'credentials file "{path}" (not found)'
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"), interpolation=None)
    try:
        parser.read_string(text, source=path)
    except configparser.Error as exc:
        # The parser's message quotes the offending line, which may be a secret.
        raise CredentialsError(f'{what} "{path}": not valid INI ({type(exc).__name__})') from None
    if not parser.has_section(name):
        return f'credentials file "{path}" (no profile "{name}")'
    section = parser[name]
    where = f'{what} "{path}" profile "{name}"'

    def field(key: str, required: bool = True) -> str | None:
        value = section.get(key, "").strip() or None
        if value is None and required:
            raise CredentialsError(f"{where}: {key} is missing")
        return value

    kind = field("type", required=False) or "access_key"
    if kind in ("access_key", "sts"):
        return StaticProvider(
            CredentialsConfig(
                access_key_id=field("access_key_id"),
                access_key_secret=field("access_key_secret"),
                security_token=field("security_token", required=kind == "sts"),
            ),
            context=where,
        )
    if kind == "ram_role_arn":
        source = StaticProvider(
            CredentialsConfig(
                access_key_id=field("access_key_id"), access_key_secret=field("access_key_secret")
            ),
            context=where,
        )
        return RefreshingProvider(
            "ram_role_arn",
            _AssumeRole(
                options,
                source,
                field("role_arn") or "",
                session_name=field("role_session_name", required=False),
                external_id=field("external_id", required=False),
                policy=field("policy", required=False),
            ),
            options,
        )
    if kind == "oidc_role_arn":
        return RefreshingProvider(
            "oidc_role_arn",
            _AssumeRoleWithOidc(
                options,
                field("role_arn") or "",
                field("oidc_provider_arn") or "",
                field("oidc_token_file_path") or "",
                session_name=field("role_session_name", required=False),
                policy=field("policy", required=False),
            ),
            options,
        )
    if kind == "ecs_ram_role":
        return RefreshingProvider(
            "ecs_ram_role", _EcsRamRole(options, field("role_name", required=False)), options
        )
    raise CredentialsError(f"{where}: type {kind[:40]!r} is not supported")


def _ini_paths(env: Mapping[str, str]) -> list[str]:
    explicit = env.get(ENV_CREDENTIALS_FILE, "").strip()
    if explicit:
        return [explicit]
    # The Python SDK reads credentials.ini, the Go SDK and ack-ram-tool credentials.
    candidates = [
        _home_path(env, ".alibabacloud", "credentials.ini"),
        _home_path(env, ".alibabacloud", "credentials"),
    ]
    return [p for p in candidates if p]


def _profile_provider(name: str | None, options: _Options) -> CredentialProvider | list[str]:
    """`type: profile`: the named profile from the CLI config, else the credentials file."""
    env = options.env
    tried: list[str] = []
    cli_path = _home_path(env, ".aliyun", "config.json")
    if cli_path:
        outcome = _cli_profile(cli_path, name or env.get(ENV_PROFILE) or None, options)
        if not isinstance(outcome, str):
            return outcome
        tried.append(outcome)
    for path in _ini_paths(env):
        outcome = _ini_profile(path, name or env.get(ENV_PROFILE) or "default", options)
        if not isinstance(outcome, str):
            return outcome
        tried.append(outcome)
        if env.get(ENV_CREDENTIALS_FILE, "").strip():
            raise CredentialsError(f"{ENV_CREDENTIALS_FILE}: {outcome}")
    return tried or ["profiles (HOME not set)"]


# --- the lazily tried end of the default chain -------------------------------------------


class _LazyChain:
    """The chain links that need the network to know whether they apply (ECS, URI).

    The first that yields credentials is used from then on, as the official SDKs do. Until
    then each `get()` tries them in order (each backs off after a failure, so a scrape does
    not wait for an unreachable metadata service every time).
    """

    def __init__(
        self, context: str, tried: list[str], links: list[tuple[str, RefreshingProvider]]
    ) -> None:
        self._context = context
        self._tried = tried
        self._links = links
        self._lock = threading.Lock()
        self._chosen: RefreshingProvider | None = None

    @property
    def source(self) -> str:
        chosen = self._chosen
        return chosen.source if chosen is not None else "default_chain"

    def expiration(self) -> float | None:
        chosen = self._chosen
        return chosen.expiration() if chosen is not None else None

    def invalidate(self) -> None:
        chosen = self._chosen
        if chosen is not None:
            chosen.invalidate()

    def get(self) -> Credential:
        chosen = self._chosen
        if chosen is not None:
            return chosen.get()
        with self._lock:
            if self._chosen is not None:
                return self._chosen.get()
            reasons: list[str] = []
            for label, link in self._links:
                try:
                    credential = link.get()
                except CredentialsError as exc:
                    reasons.append(f"{label} ({_without_context(str(exc), self._context)})")
                    continue
                self._chosen = link
                link.quiet = False
                log.info("%s: using credentials from %s", self._context, label)
                return credential
        raise CredentialsError(
            f"{self._context}: no credentials found; tried: {', '.join(self._tried + reasons)}"
        )


def _without_context(message: str, context: str) -> str:
    prefix = f"{context}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


# --- building providers ------------------------------------------------------------------


def _explicit(config: CredentialsConfig, options: _Options, key_path: str) -> CredentialProvider:
    kind = config.kind
    if kind in ("access_key", "sts"):
        return StaticProvider(config, context=f"{options.context}: {key_path}")
    if kind == "ram_role_arn":
        source = (
            _explicit(config.source, options, f"{key_path}.source")
            if config.source is not None
            else _default_chain(options)
        )
        return RefreshingProvider(
            "ram_role_arn",
            _AssumeRole(
                options,
                source,
                config.role_arn or "",
                session_name=config.role_session_name,
                external_id=(
                    _SecretFile(config.external_id_file, f"{key_path}.external_id_file")
                    if config.external_id_file
                    else config.external_id
                ),
                policy=config.policy,
                duration=_duration(config),
                endpoint=config.sts_endpoint,
            ),
            options,
        )
    if kind == "oidc_role_arn":
        return RefreshingProvider(
            "oidc_role_arn",
            _AssumeRoleWithOidc(
                options,
                config.role_arn or "",
                config.oidc_provider_arn or "",
                config.oidc_token_file or "",
                session_name=config.role_session_name,
                policy=config.policy,
                duration=_duration(config),
                endpoint=config.sts_endpoint,
            ),
            options,
        )
    if kind == "ecs_ram_role":
        return RefreshingProvider("ecs_ram_role", _EcsRamRole(options, config.role_name), options)
    if kind == "profile":
        outcome = _profile_provider(config.profile, options)
        if isinstance(outcome, list):
            raise CredentialsError(
                f"{options.context}: {key_path}: profile not found; tried: {', '.join(outcome)}"
            )
        return outcome
    raise CredentialsError(f"{options.context}: {key_path}: unknown type {kind!r}")


def _default_chain(options: _Options) -> CredentialProvider:
    env = options.env
    tried: list[str] = ["config 'credentials' (not set)"]
    # 1. environment keys
    pair = _env_pair(env.get(ENV_ACCESS_KEY_ID, ""), env.get(ENV_ACCESS_KEY_SECRET, ""))
    missing = [name for name, value in pair if not value]
    if not missing:
        return EnvProvider(env)
    detail = "not set" if len(missing) == 2 else f"{missing[0]} not set"
    tried.append(f"environment {ENV_ACCESS_KEY_ID}/{ENV_ACCESS_KEY_SECRET} ({detail})")
    # 2. OIDC / RRSA
    oidc = [ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE]
    unset = [name for name in oidc if not env.get(name, "").strip()]
    if not unset:
        return RefreshingProvider(
            "oidc_role_arn",
            _AssumeRoleWithOidc(
                options,
                env[ENV_ROLE_ARN].strip(),
                env[ENV_OIDC_PROVIDER_ARN].strip(),
                env[ENV_OIDC_TOKEN_FILE].strip(),
                session_name=env.get(ENV_ROLE_SESSION_NAME, "").strip() or None,
            ),
            options,
        )
    detail = "not set" if len(unset) == 3 else f"{', '.join(unset)} not set"
    tried.append(f"OIDC {'/'.join(oidc)} ({detail})")
    # 3. aliyun CLI profile
    cli_path = _home_path(env, ".aliyun", "config.json")
    if env.get(ENV_CLI_PROFILE_DISABLED, "").strip().lower() == "true":
        tried.append(f"CLI profile (disabled by {ENV_CLI_PROFILE_DISABLED})")
    elif cli_path is None:
        tried.append("CLI profile (HOME not set)")
    else:
        outcome = _cli_profile(cli_path, env.get(ENV_PROFILE) or None, options)
        if not isinstance(outcome, str):
            return outcome
        tried.append(outcome)
    # 4. credentials file
    paths = _ini_paths(env)
    if not paths:
        tried.append("credentials file (HOME not set)")
    for path in paths:
        outcome = _ini_profile(path, env.get(ENV_PROFILE) or "default", options)
        if not isinstance(outcome, str):
            return outcome
        if env.get(ENV_CREDENTIALS_FILE, "").strip():
            # Named explicitly: a missing file is a mistake, not a reason to look further.
            raise CredentialsError(f"{options.context}: {ENV_CREDENTIALS_FILE}: {outcome}")
        tried.append(outcome)
    # 5. ECS RAM role, 6. credentials URI: only the network can tell.
    links: list[tuple[str, RefreshingProvider]] = []
    if env.get(ENV_ECS_METADATA_DISABLED, "").strip().lower() == "true":
        tried.append(f"ECS instance metadata (disabled by {ENV_ECS_METADATA_DISABLED})")
    else:
        ecs = _EcsRamRole(options, None)
        links.append(
            ("ECS instance metadata", RefreshingProvider("ecs_ram_role", ecs, options, quiet=True))
        )
    uri = env.get(ENV_CREDENTIALS_URI, "").strip()
    if not uri:
        tried.append(f"{ENV_CREDENTIALS_URI} (not set)")
    else:
        problem = _url_problem(uri, extra_http_host=urlsplit(uri).hostname or "")
        if problem:
            raise CredentialsError(f"{options.context}: {ENV_CREDENTIALS_URI}: {problem}")
        fetch = _CredentialsUri(options, uri)
        links.append(
            (ENV_CREDENTIALS_URI, RefreshingProvider("credentials_uri", fetch, options, quiet=True))
        )
    if not links:
        raise CredentialsError(
            f"{options.context}: no credentials found; tried: {', '.join(tried)}"
        )
    return _LazyChain(options.context, tried, links)


def provider_for(
    account: AccountConfig,
    env: Mapping[str, str],
    *,
    observer: CredentialObserver | None = None,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.time,
    timeout: float = STS_TIMEOUT,
) -> CredentialProvider:
    """The credentials of `account`: its `credentials` block, else the default chain.

    Builds providers without network I/O; temporary credentials are fetched on the first
    `get()`. Raises CredentialsError (naming the account, listing what was tried) when no
    source applies. `observer(source, code, expiration)` hears about every fetch.
    """
    options = _Options(
        env=env,
        context=f"account {account.name}",
        observer=observer,
        transport=transport,
        clock=clock,
        timeout=timeout,
    )
    if account.credentials is not None:
        return _explicit(account.credentials, options, "credentials")
    try:
        return _default_chain(options)
    except CredentialsError as exc:
        message = str(exc)
        if not message.startswith(options.context):
            message = f"{options.context}: {message}"
        raise CredentialsError(message) from None
