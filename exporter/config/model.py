"""The configuration as frozen dataclasses; their field defaults are the defaults of the config.

The loader fills a field from the YAML key of the same name, so a field added here is a key
once it has a row in the loader's table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from exporter import families

DEFAULT_ENDPOINT = "https://alb.{region}.aliyuncs.com"
# A config may have no accounts (`--demo` adds its own); serving or reloading one may not.
NO_ACCOUNTS = "accounts: at least one account is required (or discovery.resource_directory)"
SIGNATURES = ("v3", "v1")
# The explicit secrets of `credentials`; each is given inline or as `<key>_file`.
SECRET_KEYS = ("access_key_id", "access_key_secret", "security_token")


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
    # "" (a block written without `type`): access_key, or sts when a security token is set.
    type: str = ""
    role_arn: str | None = None  # ram_role_arn, oidc_role_arn
    role_session_name: str | None = None
    external_id: str | None = field(default=None, repr=False)  # ram_role_arn
    external_id_file: str | None = None  # ram_role_arn: re-read when the file changes
    policy: str | None = None  # an inline RAM policy (JSON) narrowing the role's permissions
    duration: float | None = None  # STS DurationSeconds; None: 1h
    sts_endpoint: str | None = None  # URL; None: env / sts.aliyuncs.com
    oidc_provider_arn: str | None = None  # oidc_role_arn
    oidc_token_file: str | None = None  # oidc_role_arn: re-read on every refresh
    role_name: str | None = None  # ecs_ram_role; None: asked from the instance metadata
    profile: str | None = None  # profile; None: ALIBABA_CLOUD_PROFILE, else the default
    # ram_role_arn: the identity that assumes the role; None: the default chain.
    source: CredentialsConfig | None = None

    @property
    def kind(self) -> str:
        """The effective type: `type`, or what a block without it means."""
        if self.type:
            return self.type
        return "sts" if self.security_token or self.security_token_file else "access_key"


@dataclass(frozen=True)
class AccountConfig:
    name: str
    # The region ids listed; empty while `all_regions` ("*") waits for DescribeRegions.
    regions: tuple[str, ...]
    endpoint: str = ""  # template; "" means DEFAULT_ENDPOINT
    signature: str = "v3"  # "v3" or "v1"
    credentials: CredentialsConfig | None = None  # None: the default chain
    filters: Filters = Filters()
    # ALB's ListAsynJobs quota is not published; it is counted per main account, region
    # and API and shared with Terraform, the console and ingress controllers. 5/s leaves
    # room for them while a refresh (one call plus what is new) takes well under a second.
    max_requests_per_second: float = 5.0
    # `regions: "*"`: every region ALB is offered in (DescribeRegions), minus these.
    all_regions: bool = False
    exclude_regions: tuple[str, ...] = ()

    def endpoint_for(self, region: str) -> str:
        """The base URL for one region: the template with `{region}` substituted."""
        return (self.endpoint or DEFAULT_ENDPOINT).replace("{region}", region)


ACCOUNT_LABELS = ("display_name", "account_id")
DEFAULT_ROLE_NAME = "AlbJobsExporterReadOnly"


@dataclass(frozen=True)
class ResourceDirectoryConfig:
    """`discovery.resource_directory`: every usable member account, a role assumed in each.
    The account-level keys (regions, endpoint, signature, filters, budget) apply to every
    member, as `member` (an AccountConfig without name or credentials) holds them."""

    credentials: CredentialsConfig | None = None  # the management account; None: the chain
    directory_endpoint: str = ""  # "": Resource Directory's global endpoint
    role_name: str = DEFAULT_ROLE_NAME
    external_id: str | None = field(default=None, repr=False)
    sts_endpoint: str | None = None
    account_label: str = "display_name"  # or account_id
    folders: tuple[str, ...] = ()  # ResourceDirectoryPath prefixes; empty: every folder
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs that must all match
    exclude_accounts: tuple[str, ...] = ()  # AccountIds or display names
    member: AccountConfig = AccountConfig("", (), all_regions=True)


@dataclass(frozen=True)
class DiscoveryConfig:
    """`discovery`: how often, and where, accounts and regions are listed at run time."""

    interval: float = 600.0
    region: str = "cn-hangzhou"  # whose endpoints answer DescribeRegions (and STS)
    resource_directory: ResourceDirectoryConfig | None = None


JOB_EVENT_STATUSES = ("Failed", "Succeeded")
JOB_ID_PLACEHOLDER = "{job_id}"


@dataclass(frozen=True)
class JobEventsConfig:
    """`job_events`: one JSON line per job counted as finished (SPEC "Job events")."""

    output: str = ""  # "": off; "stdout"; or a file path, appended and reopened on SIGHUP
    statuses: tuple[str, ...] = ("Failed",)
    # Lines held while the output does not take them (a pipe with no reader, a full log
    # pipe); past it new lines are dropped and counted. Not in SPEC (issue 23 asked for it).
    queue_size: int = 10_000
    # "": none. A URL where JOB_ID_PLACEHOLDER stands for a job id: where the events are
    # searched (Loki Explore, the SLS console); the landing page links each failure there.
    link: str = ""

    def link_for(self, job_id: str) -> str:
        """The link of one job ("" without `link`): its id URL-encoded into the template.
        "" too for an id UTF-8 cannot carry (lone surrogates from a hostile API)."""
        if not self.link:
            return ""
        try:
            encoded = quote(job_id, safe="")
        except UnicodeEncodeError:
            return ""
        return self.link.replace(JOB_ID_PLACEHOLDER, encoded)


# The job families `metrics.disable` may name, and the labels of the duration histogram
# (besides account and region) that `metrics.duration_labels` may keep, in exposition
# order: both from the metric table. The exporter's own alb_exporter_* families are never
# disabled: they say whether the job data can be trusted.
JOB_FAMILIES = families.JOB_FAMILIES
DURATION_LABELS = families.DURATION_KEY_LABELS
# Per status only: an api_name has one resource_type, so (status, api_name) would be the
# finest split, and at 18 API names x 2 statuses the histogram alone is hundreds of series
# per target that nobody graphs one by one. The dashboard groups durations by status.
DEFAULT_DURATION_LABELS = ("status",)
# ALB jobs take from about a second (a rule change) to minutes (a load balancer with many
# zones); most finish in 5-60 s. Beyond 30 min a job is stuck (AlbAsyncJobStuck), so
# longer ones share +Inf.
DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (
    2.0,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
)


@dataclass(frozen=True)
class MetricsConfig:
    """`metrics`: cardinality controls. The defaults keep every dashboard panel and alert."""

    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS  # (): no histogram
    duration_labels: tuple[str, ...] = DEFAULT_DURATION_LABELS
    disable: tuple[str, ...] = ()

    @property
    def histogram_enabled(self) -> bool:
        return bool(self.duration_buckets) and "alb_async_job_duration_seconds" not in self.disable

    def disabled(self) -> frozenset[str]:
        """The job families left out of the exposition (an empty bucket list included)."""
        if self.histogram_enabled:
            return frozenset(self.disable)
        return frozenset((*self.disable, "alb_async_job_duration_seconds"))


@dataclass(frozen=True)
class Config:
    """The whole configuration. `accounts` may be empty here; whether that is acceptable
    (it is for `--demo`, it is not for a real deployment) is the CLI's decision."""

    lookback: float = 3600.0  # seconds
    cache_ttl: float = 30.0  # 0: every scrape refreshes
    page_size: int = 100
    request_timeout: float = 10.0
    max_pages: int = 500
    recent_failures: int = 10
    state_file: str = ""
    # Incremental listings reach back this far before the last one: ALB's CreateTime comes
    # from other hosts than our clock, and a job may be listed a little after its
    # CreateTime; a minute covers both at the cost of re-reading a minute of jobs.
    overlap: float = 60.0
    full_resync_interval: float = 1800.0  # a complete page-through of the window this often
    # Jobs still Processing this long after creation are given up (no longer re-checked).
    # ALB jobs normally end within an hour; a week keeps week-long stuck jobs visible.
    processing_max_age: float = 7 * 86400.0
    max_concurrent_refreshes: int = 4
    metrics: MetricsConfig = MetricsConfig()
    job_events: JobEventsConfig = JobEventsConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    accounts: tuple[AccountConfig, ...] = ()

    @property
    def discovers(self) -> bool:
        """Whether any target is found at run time (a directory, or `regions: "*"`)."""
        return self.discovery.resource_directory is not None or any(
            a.all_regions for a in self.accounts
        )
