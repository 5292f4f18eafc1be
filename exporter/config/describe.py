"""The `--check-config` summary of a Config: every setting, and no secret.

Secrets show as "inline (redacted)" or by the file they are read from; an access key id
is masked to its first and last four characters.
"""

from __future__ import annotations

from dataclasses import fields
from urllib.parse import urlsplit

from exporter.config.model import (
    DEFAULT_ENDPOINT,
    SECRET_KEYS,
    AccountConfig,
    Config,
    CredentialsConfig,
    DiscoveryConfig,
    Filters,
    MetricsConfig,
)
from exporter.config.scalars import format_duration
from exporter.config.shard import UNSHARDED, Shard
from exporter.wire import RD_ENDPOINT


def summary(config: Config, shard: Shard = UNSHARDED) -> str:
    """A multi-line, secret-free description of `config` for `--check-config`; with more
    than one shard it says which targets `shard` owns (and who owns the others)."""
    lines = [
        f"lookback: {format_duration(config.lookback)}",
        f"cache_ttl: {format_duration(config.cache_ttl)}"
        + (" (no cache)" if config.cache_ttl == 0 else ""),
        f"page_size: {config.page_size}",
        f"request_timeout: {format_duration(config.request_timeout)}",
        f"max_pages: {config.max_pages}",
        f"recent_failures: {config.recent_failures}",
        f"state_file: {config.state_file or '(none)'}",
        f"overlap: {format_duration(config.overlap)}",
        f"full_resync_interval: {format_duration(config.full_resync_interval)}",
        f"processing_max_age: {format_duration(config.processing_max_age)}",
        f"max_concurrent_refreshes: {config.max_concurrent_refreshes}",
        f"metrics: {_metrics_summary(config.metrics)}",
        f"job_events: {_job_events_summary(config)}",
        *_discovery_summary(config.discovery, config.discovers),
    ]
    if shard.count > 1:
        total = sum(len(a.regions) for a in config.accounts)
        owned = sum(len(a.regions) for a in shard.select(config).accounts)
        lines.append(f"shard: {shard.index} of {shard.count}, owns {owned} of {total} targets")
    if not config.accounts:
        lines.append("accounts: none")
    else:
        lines.append(f"accounts: {len(config.accounts)}")
    for account in config.accounts:
        lines += [f"  - name: {account.name}", *_account_lines(account, shard, "    ")]
    return "\n".join(lines)


def _account_lines(
    account: AccountConfig, shard: Shard, indent: str, credentials: bool = True
) -> list[str]:
    endpoint = account.endpoint or f"{DEFAULT_ENDPOINT} (default)"
    if account.all_regions:
        regions = "* (every region ALB is offered in, read with DescribeRegions)"
    else:
        regions = _regions_summary(account.name, account.regions, shard)
    return [
        f"{indent}regions: {regions}",
        f"{indent}exclude_regions: {', '.join(account.exclude_regions) or 'none'}",
        f"{indent}endpoint: {endpoint}",
        f"{indent}signature: {account.signature}",
        *([f"{indent}credentials: {_credentials_summary(account.credentials)}"] * credentials),
        f"{indent}filters: {_filters_summary(account.filters)}",
        f"{indent}max_requests_per_second: {account.max_requests_per_second:g}",
    ]


def _discovery_summary(discovery: DiscoveryConfig, used: bool) -> list[str]:
    if not used:
        return ["discovery: off (every target is listed by hand)"]
    lines = [
        f"discovery: every {format_duration(discovery.interval)}, DescribeRegions and STS in"
        f" {discovery.region} (checked offline: no API call is made here)"
    ]
    rd = discovery.resource_directory
    if rd is None:
        return [*lines, "  resource_directory: none"]
    tags = ", ".join(f"{k}={v}" for k, v in rd.tags)
    lines += [
        "  resource_directory:",
        f"    credentials: {_credentials_summary(rd.credentials)}",
        f"    directory_endpoint: {rd.directory_endpoint or f'{RD_ENDPOINT} (default)'}",
        f"    role_name: {rd.role_name} (acs:ram::<member>:role/{rd.role_name.lower()})",
        f"    external_id: {'set' if rd.external_id else 'none'}",
        f"    sts_endpoint: {rd.sts_endpoint or 'default'}",
        f"    account_label: {rd.account_label}",
        f"    folders: {', '.join(rd.folders) or 'every folder'}",
        f"    tags: {tags or 'any'}",
        f"    exclude_accounts: {', '.join(rd.exclude_accounts) or 'none'}",
        *_account_lines(rd.member, UNSHARDED, "    ", credentials=False),
    ]
    return lines


def _regions_summary(account: str, regions: tuple[str, ...], shard: Shard) -> str:
    if shard.count == 1:
        return ", ".join(regions)
    owners = ((region, shard.owner(account, region)) for region in regions)
    return ", ".join(
        f"{region} (shard {owner}{', this one' if owner == shard.index else ''})"
        for region, owner in owners
    )


def _job_events_summary(config: Config) -> str:
    events = config.job_events
    text = (
        f"{events.output} ({', '.join(events.statuses)}; queue of {events.queue_size} lines)"
        if events.output
        else "off"
    )
    if events.link:
        # The host only: the rest of a link may carry a token.
        text += f"; failures link to {urlsplit(events.link).hostname}"
    return text


def _metrics_summary(metrics: MetricsConfig) -> str:
    default = MetricsConfig()

    def mark(key: str) -> str:
        return " (default)" if getattr(metrics, key) == getattr(default, key) else ""

    buckets = ",".join(format_duration(b) for b in metrics.duration_buckets)
    labels = ",".join(metrics.duration_labels)
    return "; ".join(
        [
            f"duration_buckets={buckets or 'none (no histogram)'}{mark('duration_buckets')}",
            f"duration_labels={labels or 'none (account and region only)'}"
            + mark("duration_labels"),
            f"disable={','.join(metrics.disable) or 'none'}",
        ]
    )


def mask_access_key_id(access_key_id: str) -> str:
    """`LTAI5tExample1234` -> `LTAI****1234`; short ids are masked entirely."""
    if len(access_key_id) < 12:
        return "****"
    return f"{access_key_id[:4]}****{access_key_id[-4:]}"


def _credentials_summary(credentials: CredentialsConfig | None) -> str:
    if credentials is None:
        return "default chain"
    if credentials.type:
        return _typed_credentials_summary(credentials)
    return f"config ({', '.join(_access_key_parts(credentials))})"


def _typed_credentials_summary(c: CredentialsConfig) -> str:
    parts: list[str] = []
    if c.type in ("access_key", "sts"):
        parts = _access_key_parts(c)
    elif c.type in ("ram_role_arn", "oidc_role_arn"):
        parts.append(f"role_arn={c.role_arn}")
        if c.oidc_provider_arn:
            parts.append(f"oidc_provider_arn={c.oidc_provider_arn}")
        if c.oidc_token_file:
            parts.append(f"oidc_token_file={c.oidc_token_file}")
        if c.role_session_name:
            parts.append(f"role_session_name={c.role_session_name}")
        if c.external_id_file:
            parts.append(f"external_id from file {c.external_id_file}")
        parts += [f"{key} set" for key in ("external_id", "policy") if getattr(c, key)]
        if c.duration is not None:
            parts.append(f"duration={format_duration(c.duration)}")
        if c.sts_endpoint:
            parts.append(f"sts_endpoint={c.sts_endpoint}")
        if c.type == "ram_role_arn":
            parts.append(f"source: {_credentials_summary(c.source)}")
    elif c.type == "ecs_ram_role":
        parts.append(f"role_name={c.role_name}" if c.role_name else "role from instance metadata")
    else:
        parts.append(f"profile={c.profile}" if c.profile else "profile from environment/default")
    return f"{c.type} ({', '.join(parts)})"


def _access_key_parts(credentials: CredentialsConfig) -> list[str]:
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
    return parts


def _filters_summary(filters: Filters) -> str:
    if filters == Filters():
        return "none (all jobs)"
    parts = []
    for key in (f.name for f in fields(Filters)):
        values = getattr(filters, key)
        if values:
            parts.append(f"{key}={','.join(values)}")
    return "; ".join(parts)
