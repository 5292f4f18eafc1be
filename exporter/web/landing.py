"""The landing page at `/`: what is configured, how each target last fared, and the newest
failed jobs with their messages (what the on-call engineer opens when a failure alert fires).

Plain HTML with every interpolated value escaped; no scripts, no images.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode


@dataclass(frozen=True)
class LandingTarget:
    """One configured target as shown on the landing page (no secrets)."""

    account: str
    region: str
    up: bool | None  # None: not tried yet
    last_success: float | None  # Unix time
    last_error: str | None


@dataclass(frozen=True)
class LandingFailure:
    """One recently failed job; its message is API text, shown escaped."""

    time: float  # Unix time it failed (ModifyTime)
    account: str
    region: str
    job_id: str
    resource_id: str
    api_name: str
    error_code: str
    error_message: str
    link: str = ""  # where its event line is (`job_events.link`); "": none


@dataclass(frozen=True)
class LandingInfo:
    version: str
    targets: Sequence[LandingTarget]
    telemetry_path: str
    failures: Sequence[LandingFailure] = ()  # newest first
    shard_index: int = 0
    shard_count: int = 1
    configured_targets: int | None = None  # in the config, this shard's and the others'


def _utc(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return (
        datetime.fromtimestamp(timestamp, tz=UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def _link(href: str, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def render_landing(info: LandingInfo) -> str:
    """The `/` page: every interpolated value is escaped (names and errors are user data)."""
    up_text = {None: "not tried yet", True: "yes", False: "no"}
    rows = []
    for target in info.targets:
        probe = "/probe?" + urlencode({"account": target.account, "region": target.region})
        rows.append(
            "<tr>"
            f"<td>{html.escape(target.account)}</td>"
            f"<td>{html.escape(target.region)}</td>"
            f"<td>{up_text[target.up]}</td>"
            f"<td>{html.escape(_utc(target.last_success))}</td>"
            f"<td>{html.escape(target.last_error or '')}</td>"
            f"<td>{_link(probe, 'probe')}</td>"
            "</tr>"
        )
    if not rows:
        none = "no targets configured"
        if info.shard_count > 1 and info.configured_targets:
            none = "none of the configured targets belongs to this shard"
        rows.append(f'<tr><td colspan="6">{none}</td></tr>')
    body = "\n".join(rows)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ALB Jobs Exporter</title>
<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}</style>
</head>
<body>
<h1>ALB Jobs Exporter</h1>
<p>Version {html.escape(info.version)}</p>
<p>{_shard(info)}</p>
<ul>
<li>{_link(info.telemetry_path, "Metrics")}</li>
<li>{_link("/-/healthy", "Health")}</li>
<li>{_link("/-/ready", "Readiness")}</li>
</ul>
<table>
<thead><tr><th>account</th><th>region</th><th>up</th><th>last success (UTC)</th>\
<th>last error</th><th>probe</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
<h2>Recent failed jobs</h2>
{_failures(info.failures)}
</body>
</html>
"""


def _shard(info: LandingInfo) -> str:
    text = f"Shard {info.shard_index} of {info.shard_count}"
    if info.shard_count == 1:
        return text + " (not sharded)"
    configured = info.configured_targets
    if configured is None:
        return text
    return (
        f"{text}: {len(info.targets)} of the {configured} configured targets; "
        "the other shards serve the rest"
    )


def _failures(failures: Sequence[LandingFailure]) -> str:
    if not failures:
        return "<p>none in the lookback window</p>"
    rows = "\n".join(
        "<tr>"
        + "".join(f"<td>{html.escape(value)}</td>" for value in (_utc(f.time), f.account, f.region))
        + f"<td>{_link(f.link, f.job_id) if f.link else html.escape(f.job_id)}</td>"
        + "".join(
            f"<td>{html.escape(value)}</td>"
            for value in (f.resource_id, f.api_name, f.error_code, f.error_message)
        )
        + "</tr>"
        for f in failures
    )
    return f"""<table>
<thead><tr><th>failed (UTC)</th><th>account</th><th>region</th><th>job id</th>\
<th>resource id</th><th>API name</th><th>error code</th><th>error message</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>"""
