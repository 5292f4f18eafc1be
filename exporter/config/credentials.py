"""The `credentials:` block of an account: its types, inline or `*_file` secrets, and
`source` chains. Secrets are never echoed in a problem.
"""

from __future__ import annotations

import enum
import json
import os
import re
import stat
from typing import Any

from exporter import yamlstrict
from exporter.config.model import SECRET_KEYS, CredentialsConfig
from exporter.config.scalars import (
    Context,
    duration,
    endpoint_problem,
    expand,
    mapping,
    show,
    string,
)
from exporter.yamlstrict import hint

CREDENTIALS_KEYS = tuple(k for key in SECRET_KEYS for k in (key, f"{key}_file"))
_ROLE_KEYS = ("role_arn", "role_session_name", "policy", "duration", "sts_endpoint")
# The keys each `credentials.type` takes (besides `type`); any other known key is an error
# for that type. A block without `type` is access_key (sts with a security_token).
CREDENTIALS_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "access_key": CREDENTIALS_KEYS[:4],
    "sts": CREDENTIALS_KEYS,
    "ram_role_arn": (*_ROLE_KEYS, "external_id", "external_id_file", "source"),
    "oidc_role_arn": (*_ROLE_KEYS, "oidc_provider_arn", "oidc_token_file"),
    "ecs_ram_role": ("role_name",),
    "profile": ("profile",),
}
CREDENTIAL_TYPES = tuple(CREDENTIALS_TYPE_KEYS)
ALL_CREDENTIALS_KEYS = tuple(
    dict.fromkeys(("type", *(k for keys in CREDENTIALS_TYPE_KEYS.values() for k in keys)))
)
# STS DurationSeconds bounds (the upper one is the role's MaxSessionDuration at most).
STS_MIN_DURATION = 900.0
STS_MAX_DURATION = 43200.0
MAX_CREDENTIALS_NESTING = 4  # ram_role_arn `source` chains deeper than this are refused

_ROLE_ARN = re.compile(r"acs:ram::\d+:role/\S+")
_OIDC_PROVIDER_ARN = re.compile(r"acs:ram::\d+:oidc-provider/\S+")
_SESSION_NAME = re.compile(r"[A-Za-z0-9_.@-]{2,64}")


class _Invalid(enum.Enum):
    """Marks a value already reported as a problem, where None means "not given"."""

    INVALID = enum.auto()


_INVALID = _Invalid.INVALID


def credentials_block(ctx: Context, raw: object, path: str) -> CredentialsConfig | None:
    """A given `credentials` block, or None when a problem was reported."""
    block = _block(ctx, raw, path)
    return block if isinstance(block, CredentialsConfig) else None


def _block(
    ctx: Context, raw: object, path: str, depth: int = 0
) -> CredentialsConfig | _Invalid | None:
    """The credentials block, None when absent, or _INVALID (already reported)."""
    if raw is None:
        return None
    if depth > MAX_CREDENTIALS_NESTING:
        ctx.problem(path, f"sources nested more than {MAX_CREDENTIALS_NESTING} levels deep")
        return _INVALID
    data = mapping(ctx, raw, path, ALL_CREDENTIALS_KEYS)
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


def _credentials_type(ctx: Context, data: dict[str, Any], path: str) -> str | None:
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
    text = string(ctx, raw, f"{path}.type", "a credentials type")
    if text is None:
        return None
    if text.value not in CREDENTIAL_TYPES:
        ctx.problem(
            f"{path}.type",
            f"unknown credentials type {show(text)}{hint(text.value, CREDENTIAL_TYPES)}; "
            f"expected one of {', '.join(CREDENTIAL_TYPES)}",
        )
        return None
    return text.value


def _access_keys(
    ctx: Context, data: dict[str, Any], path: str, kind: str
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


def _role_fields(
    ctx: Context, data: dict[str, Any], path: str, kind: str, out: dict[str, Any], depth: int
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
    sts_duration: float | _Invalid | None = None
    if data.get("duration") is not None:
        seconds = duration(ctx, data.get("duration"), f"{path}.duration", zero_ok=False)
        if seconds is not None and not STS_MIN_DURATION <= seconds <= STS_MAX_DURATION:
            ctx.problem(f"{path}.duration", "must be from 15m to 12h (STS DurationSeconds)")
            seconds = None
        sts_duration = _INVALID if seconds is None else seconds
    out["duration"] = sts_duration
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
        source = _block(ctx, data.get("source"), f"{path}.source", depth + 1)
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


def _plain(ctx: Context, raw: object, path: str) -> str | _Invalid | None:
    """An optional non-secret string: its value, None when absent or empty, or _INVALID."""
    if raw is None:
        return None
    text = string(ctx, raw, path, "a string")
    if text is None:
        return _INVALID
    return text.value.strip() or None


def _arn(
    ctx: Context, raw: object, path: str, pattern: re.Pattern[str], kind: str
) -> str | _Invalid:
    value = _plain(ctx, raw, path)
    if value is None:
        ctx.problem(path, f"required (e.g. acs:ram::123456789012:{kind}/NAME)")
        return _INVALID
    if isinstance(value, str) and not pattern.fullmatch(value):
        ctx.problem(path, f"must look like acs:ram::<account id>:{kind}/<name>")
        return _INVALID
    return value


def _policy(ctx: Context, raw: object, path: str) -> str | _Invalid | None:
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


def _sts_endpoint(ctx: Context, raw: object, path: str) -> str | _Invalid | None:
    """A host name (https:// is implied) or an http(s) URL; http:// only for loopback."""
    value = _plain(ctx, raw, path)
    if not isinstance(value, str):
        return value
    url = value if "://" in value else f"https://{value}"
    problem = "must not contain placeholders" if "{" in url else endpoint_problem(url)
    if problem is not None:
        ctx.problem(path, problem)
        return _INVALID
    return url


def _secret(ctx: Context, raw: object, path: str) -> str | _Invalid | None:
    """An inline secret: its value, None when absent or empty, or _INVALID (already reported)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        # No `got <value>`: this is where secrets live.
        quote = " (quote it)" if isinstance(raw, int | float) else ""
        ctx.problem(path, f"must be a string, got {yamlstrict.kind(raw)}{quote}")
        return _INVALID
    text = expand(ctx, raw, path)
    if text is None:
        return _INVALID
    # Empty means unset, so `${ALIBABA_CLOUD_SECURITY_TOKEN:-}` can make the token optional.
    return text.value or None


def _secret_file(ctx: Context, raw: object, path: str) -> str | _Invalid | None:
    if raw is None:
        return None
    text = string(ctx, raw, path, "a file path")
    if text is None:
        return _INVALID
    if not text.value:
        return None
    reason = _unreadable_reason(text.value)
    if reason is not None:
        # A path is not a secret and a long one is still what the user must fix: show it
        # whole (unless it came from the environment, like every env-derived value).
        shown = show(text) if text.from_env else json.dumps(text.value, ensure_ascii=False)
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
