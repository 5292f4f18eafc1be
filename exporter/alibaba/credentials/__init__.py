"""Where an account's credentials come from, and keeping temporary ones fresh.

Explicit config (`credentials: {type: ...}`) or, without it, the default chain of Alibaba
Cloud's own tooling, first applicable source wins: environment keys → OIDC/RRSA env →
CLI profile `~/.aliyun/config.json` → credentials file `~/.alibabacloud/credentials(.ini)`
→ ECS RAM role (instance metadata) → `ALIBABA_CLOUD_CREDENTIALS_URI`. The last two need
the network to tell whether they apply, so they are tried lazily on the first `get()`.

Temporary credentials (STS AssumeRole, AssumeRoleWithOIDC, instance metadata, URI) sit
behind a `RefreshingProvider`: fetched once per account however many regions sign with
them (single-flight), refreshed ahead of expiry, backed off after failures, and reported
to an observer callable (the CLI turns that into metrics; this package never imports
prometheus_client). Error messages list what was tried and never contain secrets.

One module per source (static, env, profile, sts, metadata, uri), `refreshing` for the
temporary ones, `chain` for the choice; `base` holds what they share.
"""

from exporter.alibaba.credentials.base import CredentialObserver, CredentialProvider
from exporter.alibaba.credentials.chain import SOURCES, Plan, Source, plan_for, provider_for
from exporter.alibaba.credentials.env import EnvProvider
from exporter.alibaba.credentials.metadata import metadata_base_url
from exporter.alibaba.credentials.refreshing import RefreshingProvider
from exporter.alibaba.credentials.static import StaticProvider
from exporter.alibaba.credentials.sts import sts_endpoint

__all__ = [
    "SOURCES",
    "CredentialObserver",
    "CredentialProvider",
    "EnvProvider",
    "Plan",
    "RefreshingProvider",
    "Source",
    "StaticProvider",
    "metadata_base_url",
    "plan_for",
    "provider_for",
    "sts_endpoint",
]
