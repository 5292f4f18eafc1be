"""Configuration: frozen dataclasses and a strict YAML loader that reports every problem at once.

Each problem is one line, `key.path: message`, e.g. `accounts[1].regions[0]: must be a
non-empty string`. Messages never contain secrets: nothing under `credentials` is echoed,
and neither is any value that came from an environment variable.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import json
import math
import os
import re
import stat
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from exporter.errors import ConfigError

DEFAULT_ENDPOINT = "https://alb.{region}.aliyuncs.com"
RESOURCE_TYPES = ("loadbalancer", "listener", "rule", "acl", "securitypolicy", "servergroup")
SIGNATURES = ("v3", "v1")

TOP_LEVEL_KEYS = (
    "lookback",
    "cache_ttl",
    "page_size",
    "request_timeout",
    "max_pages",
    "recent_failures",
    "state_file",
    "accounts",
)
ACCOUNT_KEYS = ("name", "regions", "endpoint", "signature", "credentials", "filters")
SECRET_KEYS = ("access_key_id", "access_key_secret", "security_token")
CREDENTIALS_KEYS = tuple(k for key in SECRET_KEYS for k in (key, f"{key}_file"))
FILTERS_KEYS = ("resource_types", "api_names", "resource_ids")
MAX_PAGE_SIZE = 100  # ListAsynJobs MaxResults upper bound


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


@dataclass(frozen=True)
class AccountConfig:
    name: str
    regions: tuple[str, ...]
    endpoint: str = ""  # template; "" means DEFAULT_ENDPOINT
    signature: str = "v3"  # "v3" or "v1"
    credentials: CredentialsConfig | None = None  # None: the default chain
    filters: Filters = Filters()

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
    accounts: tuple[AccountConfig, ...] = ()


# --- entry points ----------------------------------------------------------------------


def parse(text: str, env: Mapping[str, str], source: str = "<config>") -> Config:
    """Parse YAML `text`; `source` names it in document-level errors (usually the file path).

    `env` supplies `${VAR}` expansions (injected so tests never touch os.environ).
    Raises ConfigError carrying every problem found.
    """
    try:
        # The reader rejects control characters already in the constructor.
        loader = _StrictLoader(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(source, text, exc)) from None
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(source, text, exc)) from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML document is nested too deeply") from None
    finally:
        loader.dispose()
    ctx = _Context(env)
    for key, line, column in loader.duplicate_keys:
        ctx.problem(source, f"duplicate key {_quote(key)} at line {line} column {column}")
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


# --- YAML ------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys, which plain YAML silently overwrites."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_keys: list[tuple[str, int, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            # `<<` merges may legitimately repeat keys; only literal repeats are typos.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    mark = key_node.start_mark
                    self.duplicate_keys.append((key_node.value, mark.line + 1, mark.column + 1))
                seen.add(ident)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # Scalars that match a YAML type but cannot be built (an int beyond Python's digit
        # limit, 2024-13-45) raise plain ValueError; give them a position like other errors.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError):
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot convert this {_tag_name(node.tag)} value", node.start_mark
            ) from None


def _tag_name(tag: str) -> str:
    return tag.rsplit(":", 1)[-1]


def _yaml_problem(source: str, text: str, exc: yaml.YAMLError) -> str:
    # str(exc) quotes the offending source line, which may hold a secret: build our own text.
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        return _one_line(f"{source}: YAML syntax error{where}: {what}")
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        return _one_line(
            f"{source}: YAML syntax error at line {line} column {column}: "
            f"{exc.reason} (#x{char:04x})"
        )
    return f"{source}: YAML syntax error"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- validation ------------------------------------------------------------------------

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = ("w", "d", "h", "m", "s", "ms")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_INTEGER = re.compile(r"\d+")
_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DURATION_HINT = "(use 30s, 15m, 1h, 1d or seconds)"
_SHOWN_MAX = 64


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
    accounts = _accounts(ctx, data.get("accounts"), "accounts")
    if (
        lookback is None
        or cache_ttl is None
        or page_size is None
        or request_timeout is None
        or max_pages is None
        or recent_failures is None
        or state_file is None
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
    if (
        name is None
        or regions is None
        or endpoint is None
        or signature is None
        or credentials is _INVALID
        or filters is None
    ):
        return None
    return AccountConfig(
        name=name,
        regions=regions,
        endpoint=endpoint,
        signature=signature,
        credentials=credentials,
        filters=filters,
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
    if parts.scheme == "http" and not _is_loopback(host):
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


def _is_loopback(host: str) -> bool:
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


def _credentials(ctx: _Context, raw: object, path: str) -> CredentialsConfig | _Invalid | None:
    """The credentials block, None when absent, or _INVALID (already reported)."""
    if raw is None:
        return None
    data = _mapping(ctx, raw, path, CREDENTIALS_KEYS)
    if data is None:
        return _INVALID
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
        if key != "security_token" and inline is None and file_path is None:
            if data.get(key) is None:
                message = f"required (or {key}_file) when 'credentials' is given"
            else:
                message = "must not be empty when 'credentials' is given"
            ctx.problem(f"{path}.{key}", message)
            ok = False
            continue
        values[key] = inline
        values[f"{key}_file"] = file_path
    if not ok:
        return _INVALID
    return CredentialsConfig(
        access_key_id=values["access_key_id"],
        access_key_id_file=values["access_key_id_file"],
        access_key_secret=values["access_key_secret"],
        access_key_secret_file=values["access_key_secret_file"],
        security_token=values["security_token"],
        security_token_file=values["security_token_file"],
    )


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
        ctx.problem(path, f"cannot read {_show(text)}: {reason}")
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
    if not isinstance(raw, dict):
        ctx.problem(path or "<top level>", f"must be a mapping, got {_kind(raw)}")
        return None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, str) and key in known:
            out[key] = value
            continue
        hint = _hint(key, known) if isinstance(key, str) else ""
        ctx.problem(_join(path, key), f"unknown key{hint}")
    return out


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


def _kind(value: object) -> str:
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _quote(value: str) -> str:
    if len(value) > _SHOWN_MAX:
        return f"(a {len(value)}-character value, not shown)"
    return json.dumps(value, ensure_ascii=False)


def _show(text: _Text) -> str:
    if text.from_env:
        return "(value from the environment, not shown)"
    return _quote(text.value)


def _hint(word: str, choices: tuple[str, ...]) -> str:
    lowered = {choice.lower(): choice for choice in choices}
    if word.lower() in lowered:
        return f" (did you mean {lowered[word.lower()]}?)"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _join(path: str, key: object) -> str:
    text = str(key)
    if _PLAIN_KEY.fullmatch(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{_quote(text)}]"


def _credentials_summary(credentials: CredentialsConfig | None) -> str:
    if credentials is None:
        return "default chain"
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
    return f"config ({', '.join(parts)})"


def _filters_summary(filters: Filters) -> str:
    if filters == Filters():
        return "none (all jobs)"
    parts = []
    for key in FILTERS_KEYS:
        values = getattr(filters, key)
        if values:
            parts.append(f"{key}={','.join(values)}")
    return "; ".join(parts)
