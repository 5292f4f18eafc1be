"""Configuration: frozen dataclasses and a strict YAML loader that reports every problem at once.

Each problem is one line, `key.path: message`, e.g. `accounts[1].regions[0]: must be a
non-empty string`. Messages never contain secrets: nothing under `credentials` is echoed,
and neither is any value that came from an environment variable.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from exporter import yamlstrict
from exporter.alibaba.api import MAX_PAGE_SIZE, RESOURCE_TYPES
from exporter.errors import ConfigError
from exporter.yamlstrict import hint as _hint
from exporter.yamlstrict import kind as _kind
from exporter.yamlstrict import quote as _quote

DEFAULT_ENDPOINT = "https://alb.{region}.aliyuncs.com"
SIGNATURES = ("v3", "v1")

TOP_LEVEL_KEYS = (
    "lookback",
    "cache_ttl",
    "page_size",
    "request_timeout",
    "max_pages",
    "recent_failures",
    "state_file",
    "overlap",
    "full_resync_interval",
    "processing_max_age",
    "max_concurrent_refreshes",
    "accounts",
)
ACCOUNT_KEYS = (
    "name",
    "regions",
    "endpoint",
    "signature",
    "credentials",
    "filters",
    "max_requests_per_second",
)
SECRET_KEYS = ("access_key_id", "access_key_secret", "security_token")
CREDENTIALS_KEYS = tuple(k for key in SECRET_KEYS for k in (key, f"{key}_file"))
# `credentials.type` values; a block without `type` is access_key (sts with a security_token).
CREDENTIAL_TYPES = ("access_key", "sts", "ram_role_arn", "oidc_role_arn", "ecs_ram_role", "profile")
_ROLE_KEYS = ("role_arn", "role_session_name", "policy", "duration", "sts_endpoint")
# The keys each type takes (besides `type`); any other known key is an error for that type.
CREDENTIALS_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "access_key": CREDENTIALS_KEYS[:4],
    "sts": CREDENTIALS_KEYS,
    "ram_role_arn": (*_ROLE_KEYS, "external_id", "external_id_file", "source"),
    "oidc_role_arn": (*_ROLE_KEYS, "oidc_provider_arn", "oidc_token_file"),
    "ecs_ram_role": ("role_name",),
    "profile": ("profile",),
}
ALL_CREDENTIALS_KEYS = tuple(
    dict.fromkeys(("type", *(k for keys in CREDENTIALS_TYPE_KEYS.values() for k in keys)))
)
# STS DurationSeconds bounds (the upper one is the role's MaxSessionDuration at most).
STS_MIN_DURATION = 900.0
STS_MAX_DURATION = 43200.0
MAX_CREDENTIALS_NESTING = 4  # ram_role_arn `source` chains deeper than this are refused
FILTERS_KEYS = ("resource_types", "api_names", "resource_ids")


@dataclass(frozen=True)
class Filters:
    resource_types: tuple[str, ...] = ()
    api_names: tuple[str, ...] = ()
    resource_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CredentialsConfig:
    """Explicit credentials of one account. Each secret is given inline or as a `*_file` path.

    `*_file` paths are kept (not read at load time) so that rotated Kubernetes secrets are
    picked up; the loader checks that the files are readable.
    """

    access_key_id: str | None = field(default=None, repr=False)
    access_key_id_file: str | None = None
    access_key_secret: str | None = field(default=None, repr=False)
    access_key_secret_file: str | None = None
    security_token: str | None = field(default=None, repr=False)
    security_token_file: str | None = None
    # "" (a block written without `type`): access_key, or sts when a security token is set.
    type: str = ""
    role_arn: str | None = None  # ram_role_arn, oidc_role_arn
    role_session_name: str | None = None
    external_id: str | None = field(default=None, repr=False)  # ram_role_arn
    external_id_file: str | None = None  # ram_role_arn: re-read when the file changes
    policy: str | None = None  # an inline RAM policy (JSON) narrowing the role's permissions
    duration: float | None = None  # STS DurationSeconds; None: 1h
    sts_endpoint: str | None = None  # URL; None: env / sts.aliyuncs.com
    oidc_provider_arn: str | None = None  # oidc_role_arn
    oidc_token_file: str | None = None  # oidc_role_arn: re-read on every refresh
    role_name: str | None = None  # ecs_ram_role; None: asked from the instance metadata
    profile: str | None = None  # profile; None: ALIBABA_CLOUD_PROFILE, else the default
    # ram_role_arn: the identity that assumes the role; None: the default chain.
    source: CredentialsConfig | None = None

    @property
    def kind(self) -> str:
        """The effective type: `type`, or what a block without it means."""
        if self.type:
            return self.type
        return "sts" if self.security_token or self.security_token_file else "access_key"


@dataclass(frozen=True)
class AccountConfig:
    name: str
    regions: tuple[str, ...]
    endpoint: str = ""  # template; "" means DEFAULT_ENDPOINT
    signature: str = "v3"  # "v3" or "v1"
    credentials: CredentialsConfig | None = None  # None: the default chain
    filters: Filters = Filters()
    # ALB's ListAsynJobs quota is not published; it is counted per main account, region
    # and API and shared with Terraform, the console and ingress controllers. 5/s leaves
    # room for them while a refresh (one call plus what is new) takes well under a second.
    max_requests_per_second: float = 5.0

    def endpoint_for(self, region: str) -> str:
        """The base URL for one region: the template with `{region}` substituted."""
        return (self.endpoint or DEFAULT_ENDPOINT).replace("{region}", region)


@dataclass(frozen=True)
class Config:
    """The whole configuration. `accounts` may be empty here; whether that is acceptable
    (it is for `--demo`, it is not for a real deployment) is the CLI's decision."""

    lookback: float = 3600.0  # seconds
    cache_ttl: float = 30.0  # 0: every scrape refreshes
    page_size: int = 100
    request_timeout: float = 10.0
    max_pages: int = 500
    recent_failures: int = 10
    state_file: str = ""
    overlap: float = 60.0  # incremental listings reach back this far before the last one
    full_resync_interval: float = 1800.0  # a complete page-through of the window this often
    processing_max_age: float = 7 * 86400.0  # jobs Processing longer are no longer tracked
    max_concurrent_refreshes: int = 4
    accounts: tuple[AccountConfig, ...] = ()


# --- entry points ----------------------------------------------------------------------


def parse(text: str, env: Mapping[str, str], source: str = "<config>") -> Config:
    """Parse YAML `text`; `source` names it in document-level errors (usually the file path).

    `env` supplies `${VAR}` expansions (injected so tests never touch os.environ).
    Raises ConfigError carrying every problem found.
    """
    raw, duplicates = yamlstrict.load(text, source)
    ctx = _Context(env)
    ctx.problems.extend(duplicates)
    if raw is None:
        ctx.problem(source, "the document is empty; expected a mapping with 'accounts'")
    elif not isinstance(raw, dict):
        ctx.problem(source, f"the top level must be a mapping, got {_kind(raw)}")
    config = _config(ctx, raw) if isinstance(raw, dict) else None
    if ctx.problems or config is None:
        raise ConfigError(ctx.problems)
    return config


def load(path: str, env: Mapping[str, str]) -> Config:
    """Read and parse the config file at `path` (errors in the document are named by `path`)."""
    try:
        # utf-8-sig: editors on Windows like to prepend a BOM, which is not YAML content.
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f'config.file: cannot read "{path}": {exc.strerror or exc}') from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f'config.file: cannot read "{path}": not UTF-8 text (byte {exc.start})'
        ) from None
    return parse(text, env, source=path)


def summary(config: Config) -> str:
    """A multi-line, secret-free description of `config` for `--check-config`."""
    lines = [
        f"lookback: {format_duration(config.lookback)}",
        f"cache_ttl: {format_duration(config.cache_ttl)}"
        + (" (no cache)" if config.cache_ttl == 0 else ""),
        f"page_size: {config.page_size}",
        f"request_timeout: {format_duration(config.request_timeout)}",
        f"max_pages: {config.max_pages}",
        f"recent_failures: {config.recent_failures}",
        f"state_file: {config.state_file or '(none)'}",
        f"overlap: {format_duration(config.overlap)}",
        f"full_resync_interval: {format_duration(config.full_resync_interval)}",
        f"processing_max_age: {format_duration(config.processing_max_age)}",
        f"max_concurrent_refreshes: {config.max_concurrent_refreshes}",
    ]
    if not config.accounts:
        lines.append("accounts: none")
    else:
        lines.append(f"accounts: {len(config.accounts)}")
    for account in config.accounts:
        endpoint = account.endpoint or f"{DEFAULT_ENDPOINT} (default)"
        lines += [
            f"  - name: {account.name}",
            f"    regions: {', '.join(account.regions)}",
            f"    endpoint: {endpoint}",
            f"    signature: {account.signature}",
            f"    credentials: {_credentials_summary(account.credentials)}",
            f"    filters: {_filters_summary(account.filters)}",
            f"    max_requests_per_second: {account.max_requests_per_second:g}",
        ]
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """`3600.0` -> `1h`, `5400.0` -> `1h30m`, `1.5` -> `1.5s`: the inverse of the config syntax."""
    if seconds <= 0 or seconds != int(seconds):
        return f"{seconds:g}s"
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def mask_access_key_id(access_key_id: str) -> str:
    """`LTAI5tExample1234` -> `LTAI****1234`; short ids are masked entirely."""
    if len(access_key_id) < 12:
        return "****"
    return f"{access_key_id[:4]}****{access_key_id[-4:]}"


# --- validation ------------------------------------------------------------------------

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = ("w", "d", "h", "m", "s", "ms")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_INTEGER = re.compile(r"\d+")
_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_DURATION_HINT = "(use 30s, 15m, 1h, 1d or seconds)"


class _Invalid(enum.Enum):
    """Marks a value already reported as a problem, where None means "not given"."""

    INVALID = enum.auto()


_INVALID = _Invalid.INVALID


@dataclass(frozen=True)
class _Text:
    """A string value after `${VAR}` expansion; `from_env` values are never echoed."""

    value: str
    from_env: bool


class _Context:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")


def _config(ctx: _Context, raw: dict[Any, Any]) -> Config | None:
    data = _mapping(ctx, raw, "", TOP_LEVEL_KEYS)
    if data is None:
        return None
    defaults = Config()
    lookback = _duration(ctx, data.get("lookback"), "lookback", defaults.lookback, zero_ok=False)
    cache_ttl = _duration(ctx, data.get("cache_ttl"), "cache_ttl", defaults.cache_ttl, zero_ok=True)
    page_size = _integer(
        ctx, data.get("page_size"), "page_size", defaults.page_size, 1, MAX_PAGE_SIZE
    )
    request_timeout = _duration(
        ctx, data.get("request_timeout"), "request_timeout", defaults.request_timeout, zero_ok=False
    )
    max_pages = _integer(ctx, data.get("max_pages"), "max_pages", defaults.max_pages, 1, None)
    recent_failures = _integer(
        ctx, data.get("recent_failures"), "recent_failures", defaults.recent_failures, 0, None
    )
    state_file = _optional_string(ctx, data.get("state_file"), "state_file")
    overlap = _duration(ctx, data.get("overlap"), "overlap", defaults.overlap, zero_ok=False)
    full_resync_interval = _duration(
        ctx,
        data.get("full_resync_interval"),
        "full_resync_interval",
        defaults.full_resync_interval,
        zero_ok=False,
    )
    processing_max_age = _duration(
        ctx,
        data.get("processing_max_age"),
        "processing_max_age",
        defaults.processing_max_age,
        zero_ok=False,
    )
    max_concurrent_refreshes = _integer(
        ctx,
        data.get("max_concurrent_refreshes"),
        "max_concurrent_refreshes",
        defaults.max_concurrent_refreshes,
        1,
        256,
    )
    accounts = _accounts(ctx, data.get("accounts"), "accounts")
    if (
        lookback is None
        or cache_ttl is None
        or page_size is None
        or request_timeout is None
        or max_pages is None
        or recent_failures is None
        or state_file is None
        or overlap is None
        or full_resync_interval is None
        or processing_max_age is None
        or max_concurrent_refreshes is None
        or accounts is None
    ):
        return None
    return Config(
        lookback=lookback,
        cache_ttl=cache_ttl,
        page_size=page_size,
        request_timeout=request_timeout,
        max_pages=max_pages,
        recent_failures=recent_failures,
        state_file=state_file,
        overlap=overlap,
        full_resync_interval=full_resync_interval,
        processing_max_age=processing_max_age,
        max_concurrent_refreshes=max_concurrent_refreshes,
        accounts=accounts,
    )


def _accounts(ctx: _Context, raw: object, path: str) -> tuple[AccountConfig, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        ctx.problem(path, f"must be a list of accounts, got {_kind(raw)}")
        return None
    accounts: list[AccountConfig] = []
    seen_names: dict[str, str] = {}
    for index, item in enumerate(raw):
        account = _account(ctx, item, f"{path}[{index}]", seen_names)
        if account is not None:
            accounts.append(account)
    return tuple(accounts) if len(accounts) == len(raw) else None


def _account(
    ctx: _Context, raw: object, path: str, seen_names: dict[str, str]
) -> AccountConfig | None:
    """One account; `seen_names` maps the names of earlier accounts to their paths."""
    data = _mapping(ctx, raw, path, ACCOUNT_KEYS)
    if data is None:
        return None
    name = _name(ctx, data.get("name"), f"{path}.name")
    if name is not None and name in seen_names:
        ctx.problem(
            f"{path}.name", f"duplicate account name {_quote(name)} (also {seen_names[name]})"
        )
        name = None
    elif name is not None:
        seen_names[name] = path
    regions = _regions(ctx, data.get("regions"), f"{path}.regions")
    endpoint = _endpoint(ctx, data.get("endpoint"), f"{path}.endpoint")
    signature = _signature(ctx, data.get("signature"), f"{path}.signature")
    credentials = _credentials(ctx, data.get("credentials"), f"{path}.credentials")
    filters = _filters(ctx, data.get("filters"), f"{path}.filters")
    rate = _positive_number(
        ctx,
        data.get("max_requests_per_second"),
        f"{path}.max_requests_per_second",
        AccountConfig.max_requests_per_second,
    )
    if (
        name is None
        or regions is None
        or endpoint is None
        or signature is None
        or credentials is _INVALID
        or filters is None
        or rate is None
    ):
        return None
    return AccountConfig(
        name=name,
        regions=regions,
        endpoint=endpoint,
        signature=signature,
        credentials=credentials,
        filters=filters,
        max_requests_per_second=rate,
    )


def _name(ctx: _Context, raw: object, path: str) -> str | None:
    if raw is None:
        ctx.problem(path, "required")
        return None
    text = _string(ctx, raw, path, "a non-empty string")
    if text is None:
        return None
    if not text.value:
        ctx.problem(path, "must be a non-empty string")
        return None
    return text.value


def _regions(ctx: _Context, raw: object, path: str) -> tuple[str, ...] | None:
    if raw is None:
        ctx.problem(path, "required (a list of region ids, e.g. [cn-hangzhou])")
        return None
    items = _string_list(ctx, raw, path)
    if items is None:
        return None
    if not items:
        ctx.problem(path, "must list at least one region")
        return None
    ok = True
    for index, text in items:
        # The region is substituted into the endpoint's host name.
        if not _REGION.fullmatch(text.value):
            ctx.problem(
                f"{path}[{index}]",
                f"invalid region id {_show(text)} "
                "(lowercase letters, digits and '-', e.g. cn-hangzhou)",
            )
            ok = False
    return tuple(text.value for _, text in items) if ok else None


def _endpoint(ctx: _Context, raw: object, path: str) -> str | None:
    if raw is None:
        return ""
    text = _string(ctx, raw, path, "a URL template")
    if text is None:
        return None
    template = text.value
    if not template:
        return ""
    problem = _endpoint_problem(template)
    if problem is not None:
        ctx.problem(path, problem)
        return None
    return template


def _endpoint_problem(template: str) -> str | None:
    # Never quote the URL itself: a bad one may carry user:password@ or a signed query.
    if any(ch.isspace() for ch in template):
        return "must not contain whitespace"
    rest = template.replace("{region}", "")
    if "{" in rest or "}" in rest:
        return "unsupported placeholder (only {region} may be used)"
    try:
        parts = urlsplit(template.replace("{region}", "cn-hangzhou"))
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not template.lower().startswith(
        f"{parts.scheme}://"
    ):
        return "must start with https:// (or http:// for a loopback host)"
    if "@" in parts.netloc:
        return "must not contain credentials (user:password@)"
    if parts.query or "?" in template:
        return "must not contain a query string"
    if parts.fragment or "#" in template:
        return "must not contain a fragment"
    host = parts.hostname or ""
    if not host:
        return "must include a host"
    try:
        parts.port  # noqa: B018  (property access validates the port)
    except ValueError:
        return "has an invalid port"
    if not _valid_host(host, parts.netloc):
        return "has an invalid host"
    if parts.scheme == "http" and not is_loopback_host(host):
        return (
            "http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost); use https://"
        )
    return None


def _valid_host(host: str, netloc: str) -> bool:
    if netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return _HOSTNAME.fullmatch(host) is not None


def is_loopback_host(host: str) -> bool:
    """Whether plain http:// to `host` stays on this machine: 127.0.0.0/8, ::1, localhost.

    The one rule for every URL the exporter is given (endpoints, STS, metadata, URI). `host`
    is a URL's hostname as urlsplit gives it: lower-case, IPv6 without brackets.
    """
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _signature(ctx: _Context, raw: object, path: str) -> str | None:
    if raw is None:
        return "v3"
    text = _string(ctx, raw, path, '"v3" or "v1"')
    if text is None:
        return None
    if text.value not in SIGNATURES:
        ctx.problem(path, f'must be "v3" or "v1", got {_show(text)}')
        return None
    return text.value


def _credentials(
    ctx: _Context, raw: object, path: str, depth: int = 0
) -> CredentialsConfig | _Invalid | None:
    """The credentials block, None when absent, or _INVALID (already reported)."""
    if raw is None:
        return None
    if depth > MAX_CREDENTIALS_NESTING:
        ctx.problem(path, f"sources nested more than {MAX_CREDENTIALS_NESTING} levels deep")
        return _INVALID
    data = _mapping(ctx, raw, path, ALL_CREDENTIALS_KEYS)
    if data is None:
        return _INVALID
    kind = _credentials_type(ctx, data, path)
    if kind is None:
        return _INVALID
    if kind == "":
        keys = _access_keys(ctx, data, path, "")
        return _INVALID if keys is None else keys
    ok = True
    for key in data:
        if key != "type" and key not in CREDENTIALS_TYPE_KEYS[kind]:
            ctx.problem(f"{path}.{key}", f"not used with type {kind}")
            ok = False
    if kind in ("access_key", "sts"):
        keys = _access_keys(ctx, data, path, kind)
        return _INVALID if keys is None or not ok else keys
    fields: dict[str, Any] = {}
    if kind in ("ram_role_arn", "oidc_role_arn"):
        _role_fields(ctx, data, path, kind, fields, depth)
    elif kind == "ecs_ram_role":
        fields["role_name"] = _plain(ctx, data.get("role_name"), f"{path}.role_name")
    else:
        fields["profile"] = _plain(ctx, data.get("profile"), f"{path}.profile")
    if not ok or any(value is _INVALID for value in fields.values()):
        return _INVALID
    return CredentialsConfig(type=kind, **fields)


def _credentials_type(ctx: _Context, data: dict[str, Any], path: str) -> str | None:
    """The `type` given, "" for a block without one (access keys), None if invalid."""
    raw = data.get("type")
    if raw is None:
        others = sorted(set(data) - set(CREDENTIALS_KEYS))
        if others:
            ctx.problem(
                f"{path}.type",
                f"required with {others[0]} (one of {', '.join(CREDENTIAL_TYPES)})",
            )
            return None
        return ""
    text = _string(ctx, raw, f"{path}.type", "a credentials type")
    if text is None:
        return None
    if text.value not in CREDENTIAL_TYPES:
        ctx.problem(
            f"{path}.type",
            f"unknown credentials type {_show(text)}{_hint(text.value, CREDENTIAL_TYPES)}; "
            f"expected one of {', '.join(CREDENTIAL_TYPES)}",
        )
        return None
    return text.value


def _access_keys(
    ctx: _Context, data: dict[str, Any], path: str, kind: str
) -> CredentialsConfig | None:
    """access_key_id / access_key_secret / security_token (each inline or `*_file`)."""
    token_required = kind == "sts"
    values: dict[str, str | None] = {}
    ok = True
    for key in SECRET_KEYS:
        if data.get(key) is not None and data.get(f"{key}_file") is not None:
            ctx.problem(f"{path}.{key}", f"cannot be combined with {key}_file (use one of them)")
            ok = False
            continue
        inline = _secret(ctx, data.get(key), f"{path}.{key}")
        file_path = _secret_file(ctx, data.get(f"{key}_file"), f"{path}.{key}_file")
        if inline is _INVALID or file_path is _INVALID:
            ok = False
            continue
        required = key != "security_token" or token_required
        if required and inline is None and file_path is None:
            if key == "security_token":
                message = f"required (or {key}_file) with type sts"
            elif data.get(key) is None:
                message = f"required (or {key}_file) when 'credentials' is given"
            else:
                message = "must not be empty when 'credentials' is given"
            ctx.problem(f"{path}.{key}", message)
            ok = False
            continue
        values[key] = inline
        values[f"{key}_file"] = file_path
    if not ok:
        return None
    return CredentialsConfig(
        access_key_id=values["access_key_id"],
        access_key_id_file=values["access_key_id_file"],
        access_key_secret=values["access_key_secret"],
        access_key_secret_file=values["access_key_secret_file"],
        security_token=values.get("security_token"),
        security_token_file=values.get("security_token_file"),
        type=kind,
    )


_ROLE_ARN = re.compile(r"acs:ram::\d+:role/\S+")
_OIDC_PROVIDER_ARN = re.compile(r"acs:ram::\d+:oidc-provider/\S+")
_SESSION_NAME = re.compile(r"[A-Za-z0-9_.@-]{2,64}")


def _role_fields(
    ctx: _Context, data: dict[str, Any], path: str, kind: str, out: dict[str, Any], depth: int
) -> None:
    """Fill `out` with the STS role keys of ram_role_arn / oidc_role_arn (_INVALID if bad)."""
    out["role_arn"] = _arn(ctx, data.get("role_arn"), f"{path}.role_arn", _ROLE_ARN, "role")
    session = _plain(ctx, data.get("role_session_name"), f"{path}.role_session_name")
    if isinstance(session, str) and not _SESSION_NAME.fullmatch(session):
        ctx.problem(
            f"{path}.role_session_name",
            "must be 2 to 64 letters, digits or the characters . @ - _",
        )
        session = _INVALID
    out["role_session_name"] = session
    out["policy"] = _policy(ctx, data.get("policy"), f"{path}.policy")
    duration: float | _Invalid | None = None
    if data.get("duration") is not None:
        seconds = _duration(ctx, data.get("duration"), f"{path}.duration", 0.0, zero_ok=False)
        if seconds is not None and not STS_MIN_DURATION <= seconds <= STS_MAX_DURATION:
            ctx.problem(f"{path}.duration", "must be from 15m to 12h (STS DurationSeconds)")
            seconds = None
        duration = _INVALID if seconds is None else seconds
    out["duration"] = duration
    out["sts_endpoint"] = _sts_endpoint(ctx, data.get("sts_endpoint"), f"{path}.sts_endpoint")
    if kind == "ram_role_arn":
        if data.get("external_id") is not None and data.get("external_id_file") is not None:
            ctx.problem(
                f"{path}.external_id",
                "cannot be combined with external_id_file (use one of them)",
            )
            out["external_id"] = _INVALID
        else:
            out["external_id"] = _secret(ctx, data.get("external_id"), f"{path}.external_id")
            out["external_id_file"] = _secret_file(
                ctx, data.get("external_id_file"), f"{path}.external_id_file"
            )
        source = _credentials(ctx, data.get("source"), f"{path}.source", depth + 1)
        out["source"] = source
    else:
        out["oidc_provider_arn"] = _arn(
            ctx,
            data.get("oidc_provider_arn"),
            f"{path}.oidc_provider_arn",
            _OIDC_PROVIDER_ARN,
            "oidc-provider",
        )
        token_file = _plain(ctx, data.get("oidc_token_file"), f"{path}.oidc_token_file")
        if token_file is None:
            ctx.problem(f"{path}.oidc_token_file", "required with type oidc_role_arn")
            token_file = _INVALID
        out["oidc_token_file"] = token_file


def _plain(ctx: _Context, raw: object, path: str) -> str | _Invalid | None:
    """An optional non-secret string: its value, None when absent or empty, or _INVALID."""
    if raw is None:
        return None
    text = _string(ctx, raw, path, "a string")
    if text is None:
        return _INVALID
    return text.value.strip() or None


def _arn(
    ctx: _Context, raw: object, path: str, pattern: re.Pattern[str], kind: str
) -> str | _Invalid:
    value = _plain(ctx, raw, path)
    if value is None:
        ctx.problem(path, f"required (e.g. acs:ram::123456789012:{kind}/NAME)")
        return _INVALID
    if isinstance(value, str) and not pattern.fullmatch(value):
        ctx.problem(path, f"must look like acs:ram::<account id>:{kind}/<name>")
        return _INVALID
    return value


def _policy(ctx: _Context, raw: object, path: str) -> str | _Invalid | None:
    value = _plain(ctx, raw, path)
    if not isinstance(value, str):
        return value
    try:
        document = json.loads(value)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        ctx.problem(path, "must be a RAM policy document: a JSON object in a string")
        return _INVALID
    return value


def _sts_endpoint(ctx: _Context, raw: object, path: str) -> str | _Invalid | None:
    """A host name (https:// is implied) or an http(s) URL; http:// only for loopback."""
    value = _plain(ctx, raw, path)
    if not isinstance(value, str):
        return value
    url = value if "://" in value else f"https://{value}"
    problem = "must not contain placeholders" if "{" in url else _endpoint_problem(url)
    if problem is not None:
        ctx.problem(path, problem)
        return _INVALID
    return url


def _secret(ctx: _Context, raw: object, path: str) -> str | _Invalid | None:
    """An inline secret: its value, None when absent or empty, or _INVALID (already reported)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        # No `got <value>`: this is where secrets live.
        quote = " (quote it)" if isinstance(raw, int | float) else ""
        ctx.problem(path, f"must be a string, got {_kind(raw)}{quote}")
        return _INVALID
    text = _expand(ctx, raw, path)
    if text is None:
        return _INVALID
    # Empty means unset, so `${ALIBABA_CLOUD_SECURITY_TOKEN:-}` can make the token optional.
    return text.value or None


def _secret_file(ctx: _Context, raw: object, path: str) -> str | _Invalid | None:
    if raw is None:
        return None
    text = _string(ctx, raw, path, "a file path")
    if text is None:
        return _INVALID
    if not text.value:
        return None
    reason = _unreadable_reason(text.value)
    if reason is not None:
        # A path is not a secret and a long one is still what the user must fix: show it
        # whole (unless it came from the environment, like every env-derived value).
        shown = _show(text) if text.from_env else json.dumps(text.value, ensure_ascii=False)
        ctx.problem(path, f"cannot read {shown}: {reason}")
        return _INVALID
    return text.value


def _unreadable_reason(file_path: str) -> str | None:
    # Open without reading: the value is read at use time so that rotation is picked up.
    try:
        info = os.stat(file_path)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        with open(file_path, "rb"):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    except ValueError:  # an embedded NUL byte
        return "invalid path"
    return None


def _filters(ctx: _Context, raw: object, path: str) -> Filters | None:
    if raw is None:
        return Filters()
    data = _mapping(ctx, raw, path, FILTERS_KEYS)
    if data is None:
        return None
    lists: dict[str, tuple[str, ...] | None] = {}
    for key in FILTERS_KEYS:
        value = data.get(key)
        items = [] if value is None else _string_list(ctx, value, f"{path}.{key}")
        if items is not None and key == "resource_types":
            items = _known_resource_types(ctx, items, f"{path}.{key}")
        lists[key] = None if items is None else tuple(text.value for _, text in items)
    resource_types, api_names = lists["resource_types"], lists["api_names"]
    resource_ids = lists["resource_ids"]
    if resource_types is None or api_names is None or resource_ids is None:
        return None
    return Filters(resource_types=resource_types, api_names=api_names, resource_ids=resource_ids)


def _known_resource_types(
    ctx: _Context, items: list[tuple[int, _Text]], path: str
) -> list[tuple[int, _Text]] | None:
    ok = True
    for index, text in items:
        if text.value not in RESOURCE_TYPES:
            ctx.problem(
                f"{path}[{index}]",
                f"unknown resource type {_show(text)}{_hint(text.value, RESOURCE_TYPES)}; "
                f"expected one of {', '.join(RESOURCE_TYPES)}",
            )
            ok = False
    return items if ok else None


# --- scalar helpers --------------------------------------------------------------------


def _mapping(
    ctx: _Context, raw: object, path: str, known: tuple[str, ...]
) -> dict[str, Any] | None:
    """The known keys of a mapping; unknown ones are reported with a spelling hint."""
    return yamlstrict.mapping(raw, path, known, ctx.problem)


def _string(ctx: _Context, raw: object, path: str, expected: str) -> _Text | None:
    if not isinstance(raw, str):
        ctx.problem(path, f"must be {expected}, got {_kind(raw)}")
        return None
    return _expand(ctx, raw, path)


def _optional_string(ctx: _Context, raw: object, path: str) -> str | None:
    if raw is None:
        return ""
    text = _string(ctx, raw, path, "a string")
    return None if text is None else text.value


def _string_list(ctx: _Context, raw: object, path: str) -> list[tuple[int, _Text]] | None:
    """(index, value) of a list of non-empty, distinct strings; None if any was invalid."""
    if not isinstance(raw, list):
        ctx.problem(path, f"must be a list of strings, got {_kind(raw)}")
        return None
    items: list[tuple[int, _Text]] = []
    seen: dict[str, int] = {}
    ok = True
    for index, item in enumerate(raw):
        item_path = f"{path}[{index}]"
        if not isinstance(item, str):
            ctx.problem(item_path, f"must be a non-empty string, got {_kind(item)}")
            ok = False
            continue
        text = _expand(ctx, item, item_path)
        if text is None:
            ok = False
            continue
        if not text.value:
            ctx.problem(item_path, "must be a non-empty string")
            ok = False
            continue
        if text.value in seen:
            ctx.problem(item_path, f"duplicate of {path}[{seen[text.value]}]")
            ok = False
            continue
        seen[text.value] = index
        items.append((index, text))
    return items if ok else None


def _duration(
    ctx: _Context, raw: object, path: str, default: float, *, zero_ok: bool
) -> float | None:
    """Seconds from `30s`, `15m`, `1h`, `1d`, `1h30m`, `500ms`, `1w` or a plain number."""
    if raw is None:
        return default
    seconds: float | None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        ctx.problem(path, f"must be a duration {_DURATION_HINT}, got {_kind(raw)}")
        return None
    if isinstance(raw, str):
        text = _expand(ctx, raw, path)
        if text is None:
            return None
        seconds = _parse_duration(text.value.strip())
        if seconds is None:
            ctx.problem(path, f"invalid duration {_show(text)} {_DURATION_HINT}")
            return None
    else:
        try:
            seconds = float(raw)
        except OverflowError:
            ctx.problem(path, "is too large")
            return None
    if not math.isfinite(seconds):
        ctx.problem(path, "must be a finite duration")
        return None
    if zero_ok and seconds < 0:
        ctx.problem(path, "must not be negative (0 disables the cache)")
        return None
    if not zero_ok and seconds <= 0:
        ctx.problem(path, "must be greater than 0")
        return None
    return seconds


def _parse_duration(text: str) -> float | None:
    if _NUMBER.fullmatch(text):
        return float(text)
    position, total, last_rank = 0, 0.0, -1
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        rank = _UNIT_ORDER.index(match.group(2))
        # Units largest first and each at most once, as in Prometheus (`1h30m`, not `30m1h`).
        if rank <= last_rank:
            return None
        last_rank = rank
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(text) and position > 0 else None


def _positive_number(ctx: _Context, raw: object, path: str, default: float) -> float | None:
    """A finite number > 0 (an int, a float, or a string of one from `${VAR}`)."""
    if raw is None:
        return default
    value: float | None = None
    shown: str
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value, shown = float(raw), f"{raw:g}" if isinstance(raw, float) else str(raw)
    elif isinstance(raw, str):
        text = _expand(ctx, raw, path)
        if text is None:
            return None
        shown = _show(text)
        if _NUMBER.fullmatch(text.value.strip()) and len(text.value.strip()) <= 18:
            value = float(text.value)
    else:
        shown = _kind(raw)
    if value is None or not math.isfinite(value) or value <= 0:
        ctx.problem(path, f"must be a number greater than 0, got {shown}")
        return None
    return value


def _integer(
    ctx: _Context, raw: object, path: str, default: int, low: int, high: int | None
) -> int | None:
    if raw is None:
        return default
    expected = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    shown: str
    if isinstance(raw, int) and not isinstance(raw, bool):
        value, shown = raw, str(raw)
    elif isinstance(raw, str):
        # Environment variables can only produce strings: `page_size: ${PAGE_SIZE:-100}`.
        text = _expand(ctx, raw, path)
        if text is None:
            return None
        # The length cap keeps int() clear of Python's limit on digits it will convert.
        if not _INTEGER.fullmatch(text.value.strip()) or len(text.value.strip()) > 18:
            ctx.problem(path, f"must be {expected}, got {_show(text)}")
            return None
        value, shown = int(text.value), _show(text)
    elif isinstance(raw, float):
        ctx.problem(path, f"must be {expected}, got {raw:g}")
        return None
    else:
        ctx.problem(path, f"must be {expected}, got {_kind(raw)}")
        return None
    if value < low or (high is not None and value > high):
        ctx.problem(path, f"must be {expected}, got {shown}")
        return None
    return value


def _expand(ctx: _Context, raw: str, path: str) -> _Text | None:
    """Expand `${VAR}`, `${VAR:-default}` and `$$`; a lone `$` stays literal.

    Done on parsed scalars, never on the YAML text, so a variable's value cannot inject
    YAML structure. Problems name the variable, never its value.
    """
    if not _encodable(raw):
        # "\ud800" escapes in YAML yield lone surrogates, which break UTF-8 output later.
        ctx.problem(path, "must be valid Unicode text (a \\u escape is a lone surrogate)")
        return None
    if "$" not in raw:
        return _Text(raw, from_env=False)
    out: list[str] = []
    from_env = False
    ok = True
    position = 0
    while True:
        dollar = raw.find("$", position)
        if dollar < 0:
            out.append(raw[position:])
            break
        out.append(raw[position:dollar])
        following = raw[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            position = dollar + 2
            continue
        if following != "{":
            out.append("$")
            position = dollar + 1
            continue
        close = raw.find("}", dollar + 2)
        if close < 0:
            ctx.problem(path, 'unterminated "${" (write "$$" for a literal "$")')
            return None
        name, separator, default = raw[dollar + 2 : close].partition(":-")
        position = close + 1
        if not _VAR_NAME.fullmatch(name):
            ctx.problem(
                path,
                "invalid variable reference: use ${NAME} or ${NAME:-default} "
                '(write "$$" for a literal "$")',
            )
            ok = False
            continue
        value = ctx.env.get(name)
        if separator and not value:
            value = default
        if value is None:
            ctx.problem(
                path,
                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)",
            )
            ok = False
            continue
        from_env = True
        out.append(value)
    return _Text("".join(out), from_env) if ok else None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- message helpers -------------------------------------------------------------------


def _show(text: _Text) -> str:
    if text.from_env:
        return "(value from the environment, not shown)"
    return _quote(text.value)


def _credentials_summary(credentials: CredentialsConfig | None) -> str:
    if credentials is None:
        return "default chain"
    if credentials.type:
        return _typed_credentials_summary(credentials)
    return f"config ({', '.join(_access_key_parts(credentials))})"


def _typed_credentials_summary(c: CredentialsConfig) -> str:
    parts: list[str] = []
    if c.type in ("access_key", "sts"):
        parts = _access_key_parts(c)
    elif c.type in ("ram_role_arn", "oidc_role_arn"):
        parts.append(f"role_arn={c.role_arn}")
        if c.oidc_provider_arn:
            parts.append(f"oidc_provider_arn={c.oidc_provider_arn}")
        if c.oidc_token_file:
            parts.append(f"oidc_token_file={c.oidc_token_file}")
        if c.role_session_name:
            parts.append(f"role_session_name={c.role_session_name}")
        if c.external_id_file:
            parts.append(f"external_id from file {c.external_id_file}")
        parts += [f"{key} set" for key in ("external_id", "policy") if getattr(c, key)]
        if c.duration is not None:
            parts.append(f"duration={format_duration(c.duration)}")
        if c.sts_endpoint:
            parts.append(f"sts_endpoint={c.sts_endpoint}")
        if c.type == "ram_role_arn":
            parts.append(f"source: {_credentials_summary(c.source)}")
    elif c.type == "ecs_ram_role":
        parts.append(f"role_name={c.role_name}" if c.role_name else "role from instance metadata")
    else:
        parts.append(f"profile={c.profile}" if c.profile else "profile from environment/default")
    return f"{c.type} ({', '.join(parts)})"


def _access_key_parts(credentials: CredentialsConfig) -> list[str]:
    parts = []
    for key in SECRET_KEYS:
        inline = getattr(credentials, key)
        file_path = getattr(credentials, f"{key}_file")
        if file_path is not None:
            parts.append(f"{key} from file {file_path}")
        elif inline is None:
            parts.append(f"{key} not set")
        elif key == "access_key_id":
            parts.append(f"access_key_id={mask_access_key_id(inline)}")
        else:
            parts.append(f"{key} inline (redacted)")
    return parts


def _filters_summary(filters: Filters) -> str:
    if filters == Filters():
        return "none (all jobs)"
    parts = []
    for key in FILTERS_KEYS:
        values = getattr(filters, key)
        if values:
            parts.append(f"{key}={','.join(values)}")
    return "; ".join(parts)
