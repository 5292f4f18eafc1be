"""Named profiles: the aliyun CLI's `~/.aliyun/config.json` and the SDKs' credentials file
`~/.alibabacloud/credentials(.ini)`."""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Mapping

from exporter.alibaba.credentials.base import (
    ENV_CREDENTIALS_FILE,
    ENV_PROFILE,
    CredentialProvider,
    Options,
)
from exporter.alibaba.credentials.metadata import EcsRamRole
from exporter.alibaba.credentials.refreshing import RefreshingProvider
from exporter.alibaba.credentials.static import StaticProvider
from exporter.alibaba.credentials.sts import DEFAULT_DURATION, AssumeRole, AssumeRoleWithOidc
from exporter.config import CredentialsConfig
from exporter.errors import CredentialsError


def home_path(env: Mapping[str, str], *parts: str) -> str | None:
    """A path under $HOME; None when HOME is not set."""
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


def cli_profile(
    path: str, name: str | None, options: Options, depth: int = 0
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
            outcome = cli_profile(path, field("source_profile"), options, depth + 1)
            if isinstance(outcome, str):
                raise CredentialsError(f"{where}: source_profile: {outcome}")
            source = outcome
        return RefreshingProvider(
            "ram_role_arn",
            AssumeRole(
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
            "ecs_ram_role", EcsRamRole(options, field("ram_role_name", required=False)), options
        )
    if mode == "OIDC":
        return RefreshingProvider(
            "oidc_role_arn",
            AssumeRoleWithOidc(
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


def ini_profile(path: str, name: str, options: Options) -> CredentialProvider | str:
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
            AssumeRole(
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
            AssumeRoleWithOidc(
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
            "ecs_ram_role", EcsRamRole(options, field("role_name", required=False)), options
        )
    raise CredentialsError(f"{where}: type {kind[:40]!r} is not supported")


def ini_paths(env: Mapping[str, str]) -> list[str]:
    """The credentials files to look in, in order."""
    explicit = env.get(ENV_CREDENTIALS_FILE, "").strip()
    if explicit:
        return [explicit]
    # The Python SDK reads credentials.ini, the Go SDK and ack-ram-tool credentials.
    candidates = [
        home_path(env, ".alibabacloud", "credentials.ini"),
        home_path(env, ".alibabacloud", "credentials"),
    ]
    return [p for p in candidates if p]


def profile_provider(name: str | None, options: Options) -> CredentialProvider | list[str]:
    """`type: profile`: the named profile from the CLI config, else the credentials file."""
    env = options.env
    tried: list[str] = []
    cli_path = home_path(env, ".aliyun", "config.json")
    if cli_path:
        outcome = cli_profile(cli_path, name or env.get(ENV_PROFILE) or None, options)
        if not isinstance(outcome, str):
            return outcome
        tried.append(outcome)
    for path in ini_paths(env):
        outcome = ini_profile(path, name or env.get(ENV_PROFILE) or "default", options)
        if not isinstance(outcome, str):
            return outcome
        tried.append(outcome)
        if env.get(ENV_CREDENTIALS_FILE, "").strip():
            raise CredentialsError(f"{ENV_CREDENTIALS_FILE}: {outcome}")
    return tried or ["profiles (HOME not set)"]
