"""The scalar values of the `discovery:` block: its interval and region, the directory's
endpoint URLs, role name, account label and tags. The block's key tables are the loader's."""

from __future__ import annotations

import re

from exporter import yamlstrict
from exporter.config.model import ACCOUNT_LABELS
from exporter.config.scalars import (
    Context,
    duration,
    endpoint_problem,
    format_duration,
    show,
    string,
)
from exporter.yamlstrict import hint, kind

_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# RAM role names: 1-64 letters, digits, '.' and '-'.
_ROLE_NAME = re.compile(r"[A-Za-z0-9.-]{1,64}")
MIN_DISCOVERY_INTERVAL = 5.0


def interval(ctx: Context, raw: object, path: str) -> float | None:
    seconds = duration(ctx, raw, path, zero_ok=False)
    if seconds is not None and seconds < MIN_DISCOVERY_INTERVAL:
        ctx.problem(
            path,
            f"must be at least {format_duration(MIN_DISCOVERY_INTERVAL)}, got"
            f" {format_duration(seconds)}",
        )
        return None
    return seconds


def one_region(ctx: Context, raw: object, path: str) -> str | None:
    text = string(ctx, raw, path, "a region id")
    if text is None:
        return None
    if not _REGION.fullmatch(text.value):
        ctx.problem(path, f"invalid region id {show(text)} (e.g. cn-hangzhou)")
        return None
    return text.value


def url(ctx: Context, raw: object, path: str) -> str | None:
    """A host name (https:// is implied) or an http(s) URL; http:// only for loopback."""
    text = string(ctx, raw, path, "a URL or host name")
    if text is None or not text.value:
        return None if text is None else ""
    url = text.value if "://" in text.value else f"https://{text.value}"
    problem = "must not contain placeholders" if "{" in url else endpoint_problem(url)
    if problem is not None:
        ctx.problem(path, problem)
        return None
    return url


def role_name(ctx: Context, raw: object, path: str) -> str | None:
    text = string(ctx, raw, path, "a RAM role name")
    if text is None:
        return None
    if not _ROLE_NAME.fullmatch(text.value):
        ctx.problem(
            path,
            f"invalid RAM role name {show(text)} (1-64 letters, digits, '.' and '-'; the"
            " role, not its ARN: acs:ram::<member>:role/<role_name> is built from it)",
        )
        return None
    return text.value


def account_label(ctx: Context, raw: object, path: str) -> str | None:
    text = string(ctx, raw, path, "display_name or account_id")
    if text is None:
        return None
    if text.value not in ACCOUNT_LABELS:
        ctx.problem(
            path,
            f"must be display_name or account_id, got {show(text)}"
            f"{hint(text.value, ACCOUNT_LABELS)}",
        )
        return None
    return text.value


def tags(ctx: Context, raw: object, path: str) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(raw, dict):
        ctx.problem(path, f"must be a mapping of tag keys to values, got {kind(raw)}")
        return None
    pairs = []
    for key, value in raw.items():
        key_path = yamlstrict.join(path, str(key))
        if not isinstance(key, str) or not key:
            ctx.problem(path, f"tag keys must be non-empty strings, got {kind(key)}")
            return None
        text = string(ctx, value, key_path, "a string (the tag value)")
        if text is None:
            return None
        pairs.append((key, text.value))
    return tuple(pairs)
