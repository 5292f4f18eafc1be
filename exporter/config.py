"""Configuration: frozen dataclasses and a strict YAML loader.

STUB: the dataclasses below are the agreed interface; `load()` / `parse()` are being
implemented (see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_ENDPOINT = "https://alb.{region}.aliyuncs.com"
RESOURCE_TYPES = ("loadbalancer", "listener", "rule", "acl", "securitypolicy", "servergroup")


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
    lookback: float = 3600.0  # seconds
    cache_ttl: float = 30.0
    page_size: int = 100
    request_timeout: float = 10.0
    max_pages: int = 500
    recent_failures: int = 10
    state_file: str = ""
    accounts: tuple[AccountConfig, ...] = ()


def parse(text: str, env: Mapping[str, str], source: str = "<config>") -> Config:
    raise NotImplementedError


def load(path: str, env: Mapping[str, str]) -> Config:
    raise NotImplementedError
