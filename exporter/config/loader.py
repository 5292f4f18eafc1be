"""parse() and load(): a YAML document to a Config, with every problem reported at once.

Each level of the document (the top level, an account, its filters) is one table of keys.
A key is the name of the dataclass field it fills; its row says how the value is read and
whether it is required, and the known-key check (with spelling hints) uses the same rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from exporter import yamlstrict
from exporter.config import discovery
from exporter.config.credentials import credentials_block
from exporter.config.model import (
    DURATION_LABELS,
    JOB_EVENT_STATUSES,
    JOB_FAMILIES,
    JOB_ID_PLACEHOLDER,
    SIGNATURES,
    AccountConfig,
    Config,
    DiscoveryConfig,
    Filters,
    JobEventsConfig,
    MetricsConfig,
    ResourceDirectoryConfig,
)
from exporter.config.scalars import (
    Context,
    Text,
    any_string,
    duration,
    endpoint_problem,
    expand,
    format_duration,
    integer,
    link_problem,
    mapping,
    positive_number,
    show,
    string,
    string_list,
)
from exporter.errors import ConfigError
from exporter.wire import MAX_PAGE_SIZE, RESOURCE_TYPES
from exporter.yamlstrict import hint, kind, quote

T = TypeVar("T")
# (context, the value as YAML gave it, its key path) -> the value, or None once a problem
# has been reported.
Parser = Callable[[Context, Any, str], Any]

_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
ALL = "*"  # `regions: "*"`: every region ALB is offered in


@dataclass(frozen=True)
class Key:
    """One key of a mapping, named as the dataclass field it fills."""

    name: str
    parse: Parser  # called for a value that is given (not absent, not null)
    # The problem reported when the key is absent; "": optional, the field's default applies.
    missing: str = ""


# --- entry points ----------------------------------------------------------------------


def parse(text: str, env: Mapping[str, str], source: str = "<config>") -> Config:
    """Parse YAML `text`; `source` names it in document-level errors (usually the file path).

    `env` supplies `${VAR}` expansions (injected so tests never touch os.environ).
    Raises ConfigError carrying every problem found.
    """
    raw, duplicates = yamlstrict.load(text, source)
    ctx = Context(env)
    ctx.problems.extend(duplicates)
    if raw is None:
        ctx.problem(source, "the document is empty; expected a mapping with 'accounts'")
    elif not isinstance(raw, dict):
        ctx.problem(source, f"the top level must be a mapping, got {kind(raw)}")
    config = _build(ctx, raw, "", TOP_LEVEL, Config) if isinstance(raw, dict) else None
    if config is not None:
        _check_resync(ctx, config)
    if ctx.problems or config is None:
        raise ConfigError(ctx.problems)
    return config


def load(path: str, env: Mapping[str, str]) -> Config:
    """Read and parse the config file at `path` (errors in the document are named by `path`)."""
    text = yamlstrict.read(path, "config.file: ")
    return parse(text, env, source=path)


def _check_resync(ctx: Context, config: Config) -> None:
    # A job the API lists later than `overlap` is missed by the incremental listings and
    # found only by the next full resync; unless that comes before the job leaves the
    # window, it is never counted and never shown.
    window = config.lookback - config.overlap
    if window <= 0:
        ctx.problem(
            "overlap",
            f"must be shorter than lookback ({format_duration(config.lookback)}),"
            f" got {format_duration(config.overlap)}",
        )
    elif config.full_resync_interval >= window:
        ctx.problem(
            "full_resync_interval",
            f"must be shorter than lookback - overlap "
            f"({format_duration(config.lookback)} - {format_duration(config.overlap)}"
            f" = {format_duration(window)}), got {format_duration(config.full_resync_interval)}:"
            " a job the API lists later than overlap could leave the window before a full"
            " resync finds it",
        )


def _build(
    ctx: Context, raw: object, path: str, table: tuple[Key, ...], make: Callable[..., T]
) -> T | None:
    """`make` from the keys of the mapping `raw`, read in table order; None if any was bad."""
    data = mapping(ctx, raw, path, tuple(key.name for key in table))
    if data is None:
        return None
    values: dict[str, Any] = {}
    ok = True
    for key in table:
        key_path = yamlstrict.join(path, key.name)
        value = data.get(key.name)
        if value is None:
            if key.missing:
                ctx.problem(key_path, key.missing)
                ok = False
            continue
        values[key.name] = key.parse(ctx, value, key_path)
        ok = ok and values[key.name] is not None
    return make(**values) if ok else None


# --- accounts --------------------------------------------------------------------------


def _accounts(ctx: Context, raw: object, path: str) -> tuple[AccountConfig, ...] | None:
    if not isinstance(raw, list):
        ctx.problem(path, f"must be a list of accounts, got {kind(raw)}")
        return None
    accounts = [
        _build(ctx, item, f"{path}[{index}]", ACCOUNT, partial(_account, ctx, f"{path}[{index}]"))
        for index, item in enumerate(raw)
    ]
    valid = [account for account in accounts if account is not None]
    return tuple(valid) if len(valid) == len(raw) else None


def _account(ctx: Context, path: str, **values: Any) -> AccountConfig | None:
    """An account from its keys; `regions: "*"` becomes `all_regions`, whose only
    companion `exclude_regions` is."""
    regions = values.pop("regions", ())
    if regions == ALL:
        return AccountConfig(**values, regions=(), all_regions=True)
    if values.get("exclude_regions"):
        ctx.problem(
            f"{path}.exclude_regions",
            f'goes only with regions: "{ALL}" (a listed region is polled; to leave one out,'
            " remove it from the list)",
        )
        return None
    return AccountConfig(**values, regions=regions)


def _account_name(ctx: Context, raw: object, path: str) -> str | None:
    text = string(ctx, raw, path, "a non-empty string")
    if text is None:
        return None
    if not text.value:
        ctx.problem(path, "must be a non-empty string")
        return None
    name, account = text.value, path.removesuffix(".name")
    if name in ctx.account_names:
        ctx.problem(path, f"duplicate account name {quote(name)} (also {ctx.account_names[name]})")
        return None
    ctx.account_names[name] = account
    return name


def _each_string(
    ctx: Context,
    raw: object,
    path: str,
    problem: Callable[[Text], str | None],
    empty: str | None = None,
) -> tuple[str, ...] | None:
    """A list of strings, each checked by `problem` (None: fine, else what is wrong with
    it, reported at `path[index]`); an empty list is reported as `empty` when given."""
    items = string_list(ctx, raw, path)
    if items is None:
        return None
    if not items and empty is not None:
        ctx.problem(path, empty)
        return None
    ok = True
    for index, text in items:
        found = problem(text)
        if found is not None:
            ctx.problem(f"{path}[{index}]", found)
            ok = False
    return tuple(text.value for _, text in items) if ok else None


def _regions(ctx: Context, raw: object, path: str) -> tuple[str, ...] | None:
    def problem(text: Text) -> str | None:
        # The region is substituted into the endpoint's host name.
        if _REGION.fullmatch(text.value):
            return None
        return (
            f"invalid region id {show(text)} (lowercase letters, digits and '-', e.g. cn-hangzhou)"
        )

    return _each_string(ctx, raw, path, problem, empty="must list at least one region")


def _regions_or_all(ctx: Context, raw: object, path: str) -> tuple[str, ...] | str | None:
    """A list of region ids, or "*" for every region ALB is offered in."""
    if isinstance(raw, str):
        text = expand(ctx, raw, path)
        if text is None:
            return None
        if text.value == ALL:
            return ALL
        ctx.problem(
            path,
            f'must be a list of region ids or "{ALL}" (every region ALB is offered in),'
            f" got {show(text)}",
        )
        return None
    if isinstance(raw, list) and ALL in raw:
        ctx.problem(
            f"{path}[{raw.index(ALL)}]",
            f'"{ALL}" stands for every region and cannot be mixed with region ids;'
            f' write regions: "{ALL}" (and exclude_regions to leave some out)',
        )
        return None
    return _regions(ctx, raw, path)


def _exclude_regions(ctx: Context, raw: object, path: str) -> tuple[str, ...] | None:
    if isinstance(raw, list) and not raw:
        return ()
    return _regions(ctx, raw, path)


def _endpoint(ctx: Context, raw: object, path: str) -> str | None:
    text = string(ctx, raw, path, "a URL template")
    if text is None:
        return None
    template = text.value
    if not template:
        return ""
    problem = endpoint_problem(template)
    if problem is not None:
        ctx.problem(path, problem)
        return None
    return template


def _signature(ctx: Context, raw: object, path: str) -> str | None:
    text = string(ctx, raw, path, '"v3" or "v1"')
    if text is None:
        return None
    if text.value not in SIGNATURES:
        ctx.problem(path, f'must be "v3" or "v1", got {show(text)}')
        return None
    return text.value


def _filters(ctx: Context, raw: object, path: str) -> Filters | None:
    return _build(ctx, raw, path, FILTERS, Filters)


def _strings(ctx: Context, raw: object, path: str) -> tuple[str, ...] | None:
    items = string_list(ctx, raw, path)
    return None if items is None else tuple(text.value for _, text in items)


def _resource_types(ctx: Context, raw: object, path: str) -> tuple[str, ...] | None:
    items = string_list(ctx, raw, path)
    if items is None or not _known_resource_types(ctx, items, path):
        return None
    return tuple(text.value for _, text in items)


def _known_resource_types(ctx: Context, items: list[tuple[int, Text]], path: str) -> bool:
    ok = True
    for index, text in items:
        if text.value not in RESOURCE_TYPES:
            ctx.problem(
                f"{path}[{index}]",
                f"unknown resource type {show(text)}{hint(text.value, RESOURCE_TYPES)}; "
                f"expected one of {', '.join(RESOURCE_TYPES)}",
            )
            ok = False
    return ok


def _job_events(ctx: Context, raw: object, path: str) -> JobEventsConfig | None:
    return _build(ctx, raw, path, JOB_EVENTS, JobEventsConfig)


def _event_statuses(ctx: Context, raw: object, path: str) -> tuple[str, ...] | None:
    def problem(text: Text) -> str | None:
        if text.value in JOB_EVENT_STATUSES:
            return None
        return (
            f"must be Failed or Succeeded, got {show(text)}{hint(text.value, JOB_EVENT_STATUSES)}"
        )

    empty = "must list Failed and/or Succeeded (to emit none, leave output empty)"
    return _each_string(ctx, raw, path, problem, empty=empty)


def _event_link(ctx: Context, raw: object, path: str) -> str | None:
    text = string(ctx, raw, path, "a URL with {job_id} where the job id goes")
    if text is None:
        return None
    if not text.value:
        return ""
    problem = link_problem(text.value, JOB_ID_PLACEHOLDER)
    if problem is not None:
        ctx.problem(path, problem)
        return None
    return text.value


def _metrics(ctx: Context, raw: object, path: str) -> MetricsConfig | None:
    return _build(ctx, raw, path, METRICS, MetricsConfig)


def _buckets(ctx: Context, raw: object, path: str) -> tuple[float, ...] | None:
    if not isinstance(raw, list):
        ctx.problem(path, f"must be a list of upper bounds in seconds, got {kind(raw)}")
        return None
    bounds: list[float] = []
    last_index = -1  # the item the last accepted bound came from
    ok = True
    for index, item in enumerate(raw):
        item_path = f"{path}[{index}]"
        if isinstance(item, float) and math.isinf(item) and item > 0:
            ctx.problem(item_path, "the +Inf bucket is always there; list finite bounds only")
            ok = False
            continue
        bound = duration(ctx, item, item_path, zero_ok=False)
        if bound is None:
            ok = False
            continue
        if bounds and bound == bounds[-1]:
            ctx.problem(item_path, f"duplicate of {path}[{last_index}]")
            ok = False
            continue
        if bounds and bound < bounds[-1]:
            # Prometheus needs ascending, distinct `le` bounds; an order that the exporter
            # silently fixed would hide a typo (10 for 100, say).
            ctx.problem(
                item_path,
                f"must be greater than the bound before it ({format_duration(bounds[-1])}),"
                f" got {format_duration(bound)} (list the bounds in ascending order)",
            )
            ok = False
            continue
        bounds.append(bound)
        last_index = index
    return tuple(bounds) if ok else None


def _duration_labels(ctx: Context, raw: object, path: str) -> tuple[str, ...] | None:
    def problem(text: Text) -> str | None:
        if text.value in DURATION_LABELS:
            return None
        return (
            f"unknown label {show(text)}{hint(text.value, DURATION_LABELS)}; "
            f"expected some of {', '.join(DURATION_LABELS)}"
        )

    chosen = _each_string(ctx, raw, path, problem)
    if chosen is None:
        return None
    return tuple(label for label in DURATION_LABELS if label in chosen)  # exposition order


def _disable(ctx: Context, raw: object, path: str) -> tuple[str, ...] | None:
    def problem(text: Text) -> str | None:
        if text.value in JOB_FAMILIES:
            return None
        if text.value.startswith("alb_exporter_"):
            # The self-metrics say whether the job data can be trusted (up, staleness,
            # throttling): without them an empty job family would look like "no jobs".
            why = f"{show(text)} is one of the exporter's own metrics, which cannot be disabled"
        else:
            why = f"unknown metric family {show(text)}{hint(text.value, JOB_FAMILIES)}"
        return f"{why}; expected one of the job families: {', '.join(JOB_FAMILIES)}"

    return _each_string(ctx, raw, path, problem)


# --- discovery -------------------------------------------------------------------------


def _discovery(ctx: Context, raw: object, path: str) -> DiscoveryConfig | None:
    return _build(ctx, raw, path, DISCOVERY, DiscoveryConfig)


def _resource_directory(ctx: Context, raw: object, path: str) -> ResourceDirectoryConfig | None:
    return _build(ctx, raw, path, RESOURCE_DIRECTORY, partial(_directory, ctx, path))


def _directory(ctx: Context, path: str, **values: Any) -> ResourceDirectoryConfig | None:
    member_keys = {k.name for k in ACCOUNT} - {"name", "credentials"}
    member = {k: values.pop(k) for k in list(values) if k in member_keys}
    member.setdefault("regions", ALL)  # every member's every region unless told otherwise
    account = _account(ctx, path, name="", **member)
    return None if account is None else ResourceDirectoryConfig(**values, member=account)


# --- the tables: the keys of each level, in the order their problems are reported ------

METRICS = (
    Key("duration_buckets", _buckets),
    Key("duration_labels", _duration_labels),
    Key("disable", _disable),
)
JOB_EVENTS = (
    Key("output", any_string),
    Key("statuses", _event_statuses),
    Key("queue_size", partial(integer, low=1, high=1_000_000)),
    Key("link", _event_link),
)
FILTERS = (
    Key("resource_types", _resource_types),
    Key("api_names", _strings),
    Key("resource_ids", _strings),
)
ACCOUNT = (
    Key("name", _account_name, missing="required"),
    Key(
        "regions",
        _regions_or_all,
        missing='required (a list of region ids, e.g. [cn-hangzhou], or "*" for every region)',
    ),
    Key("endpoint", _endpoint),
    Key("signature", _signature),
    Key("credentials", credentials_block),
    Key("filters", _filters),
    Key("max_requests_per_second", positive_number),
    Key("exclude_regions", _exclude_regions),
)
RESOURCE_DIRECTORY = (
    Key("credentials", credentials_block),
    Key("directory_endpoint", discovery.url),
    Key("role_name", discovery.role_name),
    Key("external_id", any_string),
    Key("sts_endpoint", discovery.url),
    Key("account_label", discovery.account_label),
    Key("folders", _strings),
    Key("tags", discovery.tags),
    Key("exclude_accounts", _strings),
    # The account keys, for every member; none is required (regions defaults to "*").
    *(replace(key, missing="") for key in ACCOUNT if key.name not in ("name", "credentials")),
)
DISCOVERY = (
    Key("interval", discovery.interval),
    Key("region", discovery.one_region),
    Key("resource_directory", _resource_directory),
)
TOP_LEVEL = (
    Key("lookback", partial(duration, zero_ok=False)),
    Key("cache_ttl", partial(duration, zero_ok=True)),
    Key("page_size", partial(integer, low=1, high=MAX_PAGE_SIZE)),
    Key("request_timeout", partial(duration, zero_ok=False)),
    Key("max_pages", partial(integer, low=1, high=None)),
    Key("recent_failures", partial(integer, low=0, high=None)),
    Key("state_file", any_string),
    Key("overlap", partial(duration, zero_ok=False)),
    Key("full_resync_interval", partial(duration, zero_ok=False)),
    Key("processing_max_age", partial(duration, zero_ok=False)),
    Key("max_concurrent_refreshes", partial(integer, low=1, high=256)),
    Key("metrics", _metrics),
    Key("job_events", _job_events),
    Key("discovery", _discovery),
    Key("accounts", _accounts),
)
TOP_LEVEL_KEYS = tuple(key.name for key in TOP_LEVEL)
ACCOUNT_KEYS = tuple(key.name for key in ACCOUNT)
FILTERS_KEYS = tuple(key.name for key in FILTERS)
