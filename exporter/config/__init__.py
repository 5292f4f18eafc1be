"""Configuration: frozen dataclasses and a strict YAML loader that reports every problem at once.

Each problem is one line, `key.path: message`, e.g. `accounts[1].regions[0]: must be a
non-empty string`. Messages never contain secrets: nothing under `credentials` is echoed,
and neither is any value that came from an environment variable.

model (the dataclasses and their defaults), loader (parse, load and the key tables),
scalars (values, `${VAR}`, URLs), credentials (the `credentials:` block), describe (summary),
shard (which replica owns a target).
"""

from exporter.config.credentials import (
    ALL_CREDENTIALS_KEYS,
    CREDENTIAL_TYPES,
    CREDENTIALS_KEYS,
    CREDENTIALS_TYPE_KEYS,
    MAX_CREDENTIALS_NESTING,
    STS_MAX_DURATION,
    STS_MIN_DURATION,
)
from exporter.config.describe import mask_access_key_id, summary
from exporter.config.loader import ACCOUNT_KEYS, FILTERS_KEYS, TOP_LEVEL_KEYS, load, parse
from exporter.config.model import (
    DEFAULT_DURATION_BUCKETS,
    DEFAULT_DURATION_LABELS,
    DEFAULT_ENDPOINT,
    DURATION_LABELS,
    JOB_FAMILIES,
    NO_ACCOUNTS,
    SECRET_KEYS,
    SIGNATURES,
    AccountConfig,
    Config,
    CredentialsConfig,
    Filters,
    JobEventsConfig,
    MetricsConfig,
)
from exporter.config.scalars import format_duration, is_loopback_host
from exporter.config.shard import UNSHARDED, Shard, shard_of

__all__ = [
    "ACCOUNT_KEYS",
    "ALL_CREDENTIALS_KEYS",
    "CREDENTIALS_KEYS",
    "CREDENTIALS_TYPE_KEYS",
    "CREDENTIAL_TYPES",
    "DEFAULT_DURATION_BUCKETS",
    "DEFAULT_DURATION_LABELS",
    "DEFAULT_ENDPOINT",
    "DURATION_LABELS",
    "FILTERS_KEYS",
    "JOB_FAMILIES",
    "MAX_CREDENTIALS_NESTING",
    "NO_ACCOUNTS",
    "SECRET_KEYS",
    "SIGNATURES",
    "STS_MAX_DURATION",
    "STS_MIN_DURATION",
    "TOP_LEVEL_KEYS",
    "UNSHARDED",
    "AccountConfig",
    "Config",
    "CredentialsConfig",
    "Filters",
    "JobEventsConfig",
    "MetricsConfig",
    "Shard",
    "format_duration",
    "is_loopback_host",
    "load",
    "mask_access_key_id",
    "parse",
    "shard_of",
    "summary",
]
