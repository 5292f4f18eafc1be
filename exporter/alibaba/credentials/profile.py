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
from exporter.alibaba.credentials.build import build
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

    def keys(token: str | None = None) -> CredentialsConfig:
        return CredentialsConfig(
            access_key_id=field("access_key_id"),
            access_key_secret=field("access_key_secret"),
            security_token=token and field(token),
        )

    mode = profile.get("mode") or "AK"
    if mode in ("AK", "StsToken"):
        return build(keys("sts_token" if mode == "StsToken" else None), options, where)
    seconds = _seconds(field("expired_seconds", required=False), where)
    if mode in ("RamRoleArn", "ChainableRamRoleArn"):
        source: CredentialProvider
        if mode == "RamRoleArn":
            source = build(keys(), options, where)
        elif depth >= 4:
            raise CredentialsError(f"{where}: source_profile chain is too long")
        else:
            outcome = cli_profile(path, field("source_profile"), options, depth + 1)
            if isinstance(outcome, str):
                raise CredentialsError(f"{where}: source_profile: {outcome}")
            source = outcome
        role = CredentialsConfig(
            type="ram_role_arn",
            role_arn=field("ram_role_arn"),
            role_session_name=field("ram_session_name", required=False),
            external_id=field("external_id", required=False),
            policy=field("policy", required=False),
            duration=seconds,
        )
        return build(role, options, where, lambda: source)
    if mode == "EcsRamRole":
        ecs = CredentialsConfig(
            type="ecs_ram_role", role_name=field("ram_role_name", required=False)
        )
        return build(ecs, options, where)
    if mode == "OIDC":
        oidc = CredentialsConfig(
            type="oidc_role_arn",
            role_arn=field("ram_role_arn"),
            oidc_provider_arn=field("oidc_provider_arn"),
            oidc_token_file=field("oidc_token_file"),
            role_session_name=field("ram_session_name", required=False),
            duration=seconds,
        )
        return build(oidc, options, where)
    raise CredentialsError(f"{where}: mode {str(mode)[:40]!r} is not supported")


def _seconds(text: str | None, where: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise CredentialsError(f"{where}: expired_seconds must be a number of seconds") from None


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
        config = CredentialsConfig(
            access_key_id=field("access_key_id"),
            access_key_secret=field("access_key_secret"),
            security_token=field("security_token", required=kind == "sts"),
        )
        return build(config, options, where)
    if kind == "ram_role_arn":
        keys = CredentialsConfig(
            access_key_id=field("access_key_id"), access_key_secret=field("access_key_secret")
        )
        source = build(keys, options, where)
        role = CredentialsConfig(
            type=kind,
            role_arn=field("role_arn"),
            role_session_name=field("role_session_name", required=False),
            external_id=field("external_id", required=False),
            policy=field("policy", required=False),
        )
        return build(role, options, where, lambda: source)
    if kind == "oidc_role_arn":
        oidc = CredentialsConfig(
            type=kind,
            role_arn=field("role_arn"),
            oidc_provider_arn=field("oidc_provider_arn"),
            oidc_token_file=field("oidc_token_file_path"),
            role_session_name=field("role_session_name", required=False),
            policy=field("policy", required=False),
        )
        return build(oidc, options, where)
    if kind == "ecs_ram_role":
        ecs = CredentialsConfig(type=kind, role_name=field("role_name", required=False))
        return build(ecs, options, where)
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
