"""Scalar values of the config: `${VAR}` expansion, strings, numbers, durations and URLs.

Each parser reports its problems as `key.path: message` and returns None when it did; a
value that came from an environment variable is never echoed.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from exporter import yamlstrict
from exporter.yamlstrict import kind, quote

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = ("w", "d", "h", "m", "s", "ms")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_INTEGER = re.compile(r"\d+")
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_DURATION_HINT = "(use 30s, 15m, 1h, 1d or seconds)"


@dataclass(frozen=True)
class Text:
    """A string value after `${VAR}` expansion; `from_env` values are never echoed."""

    value: str
    from_env: bool


@dataclass
class Context:
    """One parse: the environment for `${VAR}` and the problems found so far, in order."""

    env: Mapping[str, str]
    problems: list[str] = field(default_factory=list)
    # Account name -> the path of the account that has it: names must be unique.
    account_names: dict[str, str] = field(default_factory=dict)

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")


def show(text: Text) -> str:
    if text.from_env:
        return "(value from the environment, not shown)"
    return quote(text.value)


def mapping(ctx: Context, raw: object, path: str, known: tuple[str, ...]) -> dict[str, Any] | None:
    """The known keys of a mapping; unknown ones are reported with a spelling hint."""
    return yamlstrict.mapping(raw, path, known, ctx.problem)


def string(ctx: Context, raw: object, path: str, expected: str) -> Text | None:
    if not isinstance(raw, str):
        ctx.problem(path, f"must be {expected}, got {kind(raw)}")
        return None
    return expand(ctx, raw, path)


def any_string(ctx: Context, raw: object, path: str) -> str | None:
    text = string(ctx, raw, path, "a string")
    return None if text is None else text.value


def string_list(ctx: Context, raw: object, path: str) -> list[tuple[int, Text]] | None:
    """(index, value) of a list of non-empty, distinct strings; None if any was invalid."""
    if not isinstance(raw, list):
        ctx.problem(path, f"must be a list of strings, got {kind(raw)}")
        return None
    items: list[tuple[int, Text]] = []
    seen: dict[str, int] = {}
    ok = True
    for index, item in enumerate(raw):
        item_path = f"{path}[{index}]"
        if not isinstance(item, str):
            ctx.problem(item_path, f"must be a non-empty string, got {kind(item)}")
            ok = False
            continue
        text = expand(ctx, item, item_path)
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


# --- numbers and durations -------------------------------------------------------------


def duration(ctx: Context, raw: object, path: str, *, zero_ok: bool) -> float | None:
    """Seconds from `30s`, `15m`, `1h`, `1d`, `1h30m`, `500ms`, `1w` or a plain number."""
    seconds: float | None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        ctx.problem(path, f"must be a duration {_DURATION_HINT}, got {kind(raw)}")
        return None
    if isinstance(raw, str):
        text = expand(ctx, raw, path)
        if text is None:
            return None
        seconds = parse_duration(text.value.strip())
        if seconds is None:
            ctx.problem(path, f"invalid duration {show(text)} {_DURATION_HINT}")
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


def parse_duration(text: str) -> float | None:
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


def positive_number(ctx: Context, raw: object, path: str) -> float | None:
    """A finite number > 0 (an int, a float, or a string of one from `${VAR}`)."""
    value: float | None = None
    shown: str
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value, shown = float(raw), f"{raw:g}" if isinstance(raw, float) else str(raw)
    elif isinstance(raw, str):
        text = expand(ctx, raw, path)
        if text is None:
            return None
        shown = show(text)
        if _NUMBER.fullmatch(text.value.strip()) and len(text.value.strip()) <= 18:
            value = float(text.value)
    else:
        shown = kind(raw)
    if value is None or not math.isfinite(value) or value <= 0:
        ctx.problem(path, f"must be a number greater than 0, got {shown}")
        return None
    return value


def integer(ctx: Context, raw: object, path: str, low: int, high: int | None) -> int | None:
    expected = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    shown: str
    if isinstance(raw, int) and not isinstance(raw, bool):
        value, shown = raw, str(raw)
    elif isinstance(raw, str):
        # Environment variables can only produce strings: `page_size: ${PAGE_SIZE:-100}`.
        text = expand(ctx, raw, path)
        if text is None:
            return None
        # The length cap keeps int() clear of Python's limit on digits it will convert.
        if not _INTEGER.fullmatch(text.value.strip()) or len(text.value.strip()) > 18:
            ctx.problem(path, f"must be {expected}, got {show(text)}")
            return None
        value, shown = int(text.value), show(text)
    elif isinstance(raw, float):
        ctx.problem(path, f"must be {expected}, got {raw:g}")
        return None
    else:
        ctx.problem(path, f"must be {expected}, got {kind(raw)}")
        return None
    if value < low or (high is not None and value > high):
        ctx.problem(path, f"must be {expected}, got {shown}")
        return None
    return value


# --- URLs ------------------------------------------------------------------------------


def endpoint_problem(template: str) -> str | None:
    """What is wrong with an endpoint URL (`{region}` allowed), or None."""
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
    problem = _scheme_problem(template, parts, "https:// (or http:// for a loopback host)")
    if problem is not None:
        return problem
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


def link_problem(template: str, placeholder: str) -> str | None:
    """What is wrong with a link template for a browser (http or https to any host, where
    `placeholder` stands for a value), or None."""
    # Never quote the URL itself (as for endpoints: it may carry a token).
    if any(ch.isspace() for ch in template):
        return "must not contain whitespace"
    if placeholder not in template:
        return f"must contain {placeholder} (where the job id goes)"
    rest = template.replace(placeholder, "")
    if "{" in rest or "}" in rest:
        return f"unsupported placeholder (only {placeholder}; write a literal brace as %7B or %7D)"
    try:
        parts = urlsplit(template.replace(placeholder, "x"))
        parts.port  # noqa: B018  (property access validates the port)
    except ValueError:
        return "is not a valid URL"
    problem = _scheme_problem(template, parts, "https:// or http://")
    if problem is not None:
        return problem
    if not parts.hostname or not _valid_host(parts.hostname, parts.netloc):
        return "must include a valid host"
    return None


def _scheme_problem(template: str, parts: SplitResult, allowed: str) -> str | None:
    """What every URL is checked for once split: an http(s) scheme spelled out in full
    (`allowed` says which, in the message) and no user:password@."""
    if parts.scheme not in ("http", "https") or not template.lower().startswith(
        f"{parts.scheme}://"
    ):
        return f"must start with {allowed}"
    if "@" in parts.netloc:
        return "must not contain credentials (user:password@)"
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


# --- ${VAR} expansion ------------------------------------------------------------------


def expand(ctx: Context, raw: str, path: str) -> Text | None:
    """Expand `${VAR}`, `${VAR:-default}` and `$$`; a lone `$` stays literal.

    Done on parsed scalars, never on the YAML text, so a variable's value cannot inject
    YAML structure. Problems name the variable, never its value.
    """
    if not _encodable(raw):
        # "\ud800" escapes in YAML yield lone surrogates, which break UTF-8 output later.
        ctx.problem(path, "must be valid Unicode text (a \\u escape is a lone surrogate)")
        return None
    if "$" not in raw:
        return Text(raw, from_env=False)
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
            value = default  # written in the config file, so not an environment value
        elif value is not None:
            from_env = True
        if value is None:
            ctx.problem(
                path,
                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)",
            )
            ok = False
            continue
        out.append(value)
    return Text("".join(out), from_env) if ok else None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
