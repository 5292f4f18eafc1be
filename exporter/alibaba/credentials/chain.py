"""Which provider an account gets: its `credentials` block, else the default chain, a
table of sources in the order of Alibaba Cloud's own SDKs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from exporter.alibaba.cancel import Cancel
from exporter.alibaba.credentials.base import (
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    ENV_CLI_PROFILE_DISABLED,
    ENV_CREDENTIALS_FILE,
    ENV_CREDENTIALS_URI,
    ENV_ECS_METADATA_DISABLED,
    ENV_OIDC_PROVIDER_ARN,
    ENV_OIDC_TOKEN_FILE,
    ENV_PROFILE,
    ENV_ROLE_ARN,
    ENV_ROLE_SESSION_NAME,
    CredentialObserver,
    CredentialProvider,
    Options,
    log,
    url_problem,
)
from exporter.alibaba.credentials.build import BUILDERS, build
from exporter.alibaba.credentials.env import EnvProvider, env_pair
from exporter.alibaba.credentials.metadata import EcsRamRole
from exporter.alibaba.credentials.profile import (
    cli_profile,
    home_path,
    ini_paths,
    ini_profile,
    profile_provider,
)
from exporter.alibaba.credentials.refreshing import RefreshingProvider
from exporter.alibaba.credentials.sts import (
    STS_TIMEOUT,
    AssumeRoleWithOidc,
    Role,
)
from exporter.alibaba.credentials.uri import CredentialsUri
from exporter.alibaba.signing import Credential
from exporter.config import AccountConfig, CredentialsConfig
from exporter.errors import CredentialsError

# --- the default chain -------------------------------------------------------------------

# A source's verdict without the network: the provider to use, or what was tried and why
# it does not apply. Raises CredentialsError for a source that is there but broken.
Finder = Callable[[Options], CredentialProvider | list[str]]


@dataclass(frozen=True)
class Source:
    """One link of the default chain."""

    name: str  # a lazy source's name is in the "tried" list and the "using credentials" log
    find: Finder
    # Only the network can tell whether it applies: `find` builds a quiet RefreshingProvider
    # that is tried on the first `get()`, after the lazy sources before it.
    lazy: bool = False


def _environment_keys(options: Options) -> CredentialProvider | list[str]:
    env = options.env
    pair = env_pair(env.get(ENV_ACCESS_KEY_ID, ""), env.get(ENV_ACCESS_KEY_SECRET, ""))
    missing = [name for name, value in pair if not value]
    if not missing:
        return EnvProvider(env)
    detail = "not set" if len(missing) == 2 else f"{missing[0]} not set"
    return [f"environment {ENV_ACCESS_KEY_ID}/{ENV_ACCESS_KEY_SECRET} ({detail})"]


def _oidc_environment(options: Options) -> CredentialProvider | list[str]:
    env = options.env
    oidc = [ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE]
    unset = [name for name in oidc if not env.get(name, "").strip()]
    if not unset:
        return RefreshingProvider(
            "oidc_role_arn",
            AssumeRoleWithOidc(
                options,
                Role(
                    env[ENV_ROLE_ARN].strip(),
                    session_name=env.get(ENV_ROLE_SESSION_NAME, "").strip() or None,
                ),
                env[ENV_OIDC_PROVIDER_ARN].strip(),
                env[ENV_OIDC_TOKEN_FILE].strip(),
            ),
            options,
        )
    detail = "not set" if len(unset) == 3 else f"{', '.join(unset)} not set"
    return [f"OIDC {'/'.join(oidc)} ({detail})"]


def _cli_profile_file(options: Options) -> CredentialProvider | list[str]:
    env = options.env
    cli_path = home_path(env, ".aliyun", "config.json")
    if env.get(ENV_CLI_PROFILE_DISABLED, "").strip().lower() == "true":
        return [f"CLI profile (disabled by {ENV_CLI_PROFILE_DISABLED})"]
    if cli_path is None:
        return ["CLI profile (HOME not set)"]
    outcome = cli_profile(cli_path, env.get(ENV_PROFILE) or None, options)
    return [outcome] if isinstance(outcome, str) else outcome


def _credentials_file(options: Options) -> CredentialProvider | list[str]:
    env = options.env
    paths = ini_paths(env)
    if not paths:
        return ["credentials file (HOME not set)"]
    tried: list[str] = []
    for path in paths:
        outcome = ini_profile(path, env.get(ENV_PROFILE) or "default", options)
        if not isinstance(outcome, str):
            return outcome
        if env.get(ENV_CREDENTIALS_FILE, "").strip():
            # Named explicitly: a missing file is a mistake, not a reason to look further.
            raise CredentialsError(f"{options.context}: {ENV_CREDENTIALS_FILE}: {outcome}")
        tried.append(outcome)
    return tried


def _ecs_instance_metadata(options: Options) -> CredentialProvider | list[str]:
    if options.env.get(ENV_ECS_METADATA_DISABLED, "").strip().lower() == "true":
        return [f"ECS instance metadata (disabled by {ENV_ECS_METADATA_DISABLED})"]
    ecs = EcsRamRole(options, None)
    return RefreshingProvider("ecs_ram_role", ecs, options, quiet=True)


def _credentials_uri(options: Options) -> CredentialProvider | list[str]:
    uri = options.env.get(ENV_CREDENTIALS_URI, "").strip()
    if not uri:
        return [f"{ENV_CREDENTIALS_URI} (not set)"]
    problem = url_problem(uri, extra_http_host=urlsplit(uri).hostname or "")
    if problem:
        raise CredentialsError(f"{options.context}: {ENV_CREDENTIALS_URI}: {problem}")
    fetch = CredentialsUri(options, uri)
    return RefreshingProvider("credentials_uri", fetch, options, quiet=True)


# The official SDKs' order; the first source that applies wins. The lazy ones come last:
# they are only tried once every other source has been ruled out.
SOURCES: tuple[Source, ...] = (
    Source("environment keys", _environment_keys),
    Source("OIDC (RRSA)", _oidc_environment),
    Source("CLI profile", _cli_profile_file),
    Source("credentials file", _credentials_file),
    Source("ECS instance metadata", _ecs_instance_metadata, lazy=True),
    Source(ENV_CREDENTIALS_URI, _credentials_uri, lazy=True),
)


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


@dataclass
class _Walk:
    """The chain walked without the network: the first source that applies (name and
    provider), else the lazy links left to try at run time; what was ruled out, and why."""

    found: tuple[str, CredentialProvider] | None
    links: list[tuple[str, RefreshingProvider]]
    tried: list[str]


def _walk(options: Options) -> _Walk:
    tried: list[str] = ["config 'credentials' (not set)"]
    links: list[tuple[str, RefreshingProvider]] = []
    for source in SOURCES:
        outcome = source.find(options)
        if isinstance(outcome, list):
            tried.extend(outcome)
        elif source.lazy and isinstance(outcome, RefreshingProvider):
            links.append((source.name, outcome))
        else:
            return _Walk((source.name, outcome), links, tried)
    return _Walk(None, links, tried)


def _default_chain(options: Options) -> CredentialProvider:
    walk = _walk(options)
    if walk.found is not None:
        return walk.found[1]
    if not walk.links:
        raise CredentialsError(
            f"{options.context}: no credentials found; tried: {', '.join(walk.tried)}"
        )
    return _LazyChain(options.context, walk.tried, walk.links)


@dataclass(frozen=True)
class Plan:
    """Which credentials an account would use, for `--check-config`: found without any
    network call, so a source only the network can confirm is `unconfirmed`."""

    source: str
    unconfirmed: bool = False
    tried: tuple[str, ...] = ()


def plan_for(account: AccountConfig, env: Mapping[str, str]) -> Plan:
    """What `provider_for(account, env)` would use, in words; raises CredentialsError as
    it does (no source at all, or a broken one)."""
    provider_for(account, env)
    if account.credentials is not None:
        return Plan(f"config 'credentials' (type {account.credentials.kind})")
    options = Options(env, f"account {account.name}", None, None, time.time, STS_TIMEOUT)
    walk = _walk(options)
    if walk.found is not None:
        return Plan(f"{walk.found[0]} (default chain)", tried=tuple(walk.tried))
    lazy = " or ".join(name for name, _ in walk.links)
    return Plan(f"{lazy} (default chain)", unconfirmed=True, tried=tuple(walk.tried))


# --- explicit config ---------------------------------------------------------------------


def _explicit(config: CredentialsConfig, options: Options, key_path: str) -> CredentialProvider:
    kind = config.kind
    if kind == "profile":
        outcome = profile_provider(config.profile, options)
        if isinstance(outcome, list):
            raise CredentialsError(
                f"{options.context}: {key_path}: profile not found; tried: {', '.join(outcome)}"
            )
        return outcome
    if kind not in BUILDERS:
        raise CredentialsError(f"{options.context}: {key_path}: unknown type {kind!r}")
    nested = config.source

    def source() -> CredentialProvider:
        if nested is not None:
            return _explicit(nested, options, f"{key_path}.source")
        return _default_chain(options)

    return build(config, options, f"{options.context}: {key_path}", source, key_path)


def provider_for(
    account: AccountConfig,
    env: Mapping[str, str],
    *,
    observer: CredentialObserver | None = None,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.time,
    timeout: float = STS_TIMEOUT,
    cancel: Cancel | None = None,
) -> CredentialProvider:
    """The credentials of `account`: its `credentials` block, else the default chain.

    Builds providers without network I/O; temporary credentials are fetched on the first
    `get()`. Raises CredentialsError (naming the account, listing what was tried) when no
    source applies. `observer(source, code, expiration)` hears about every fetch;
    `cancel.cancel()` ends the fetches in flight (shutdown).
    """
    options = Options(
        env=env,
        context=f"account {account.name}",
        observer=observer,
        transport=transport,
        clock=clock,
        timeout=timeout,
        cancel=cancel,
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
