"""The landing page at `/`: what is configured, how each target last fared, and the newest
failed jobs with their messages (what the on-call engineer opens when a failure alert fires).

Plain HTML with every interpolated value escaped and a small inline stylesheet: no scripts,
no images, nothing fetched from elsewhere (the page must work behind any firewall, and a
hostile ErrorMessage can only ever be text).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from exporter import DOCS_URL


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
    demo: bool = False  # the targets are the built-in simulator's: the data is synthetic
    docs_url: str = DOCS_URL


# Colours with enough contrast for text on them (WCAG AA); no external fonts.
_STYLE = """\
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#1f2328;\
max-width:80rem;line-height:1.4}
h1{font-size:1.5rem;margin:0}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
nav{margin:.75rem 0}
nav a{margin-right:1.25rem}
table{border-collapse:collapse}
th,td{padding:.3rem .7rem;text-align:left;border-bottom:1px solid #d0d7de;vertical-align:top}
th{background:#f6f8fa}
.state{display:inline-block;min-width:4.5rem;text-align:center;font-weight:600;\
border-radius:.3rem;padding:0 .4rem}
.up{background:#1a7f37;color:#fff}
.down{background:#cf222e;color:#fff}
.pending{background:#eaeef2;color:#1f2328}
.note{border:1px solid;border-radius:.3rem;padding:.5rem .8rem;margin:.75rem 0}
.demo{background:#fff8c5;border-color:#d4a72c}
.nodata{background:#ddf4ff;border-color:#54aeff}
.message{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-word}
.muted{color:#59636e}"""

_STATE = {
    None: ("pending", "not tried yet"),
    True: ("up", "up"),
    False: ("down", "down"),
}


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


def _probe(target: LandingTarget) -> str:
    return "/probe?" + urlencode({"account": target.account, "region": target.region})


def render_landing(info: LandingInfo) -> str:
    """The `/` page: every interpolated value is escaped (names and errors are user data)."""
    rows = []
    for target in info.targets:
        css, text = _STATE[target.up]
        rows.append(
            "<tr>"
            f"<td>{html.escape(target.account)}</td>"
            f"<td>{html.escape(target.region)}</td>"
            f'<td><span class="state {css}">{text}</span></td>'
            f"<td>{html.escape(_utc(target.last_success))}</td>"
            f'<td class="message">{html.escape(target.last_error or "")}</td>'
            f"<td>{_link(_probe(target), 'probe')}</td>"
            "</tr>"
        )
    if not rows:
        none = "no targets configured"
        if info.shard_count > 1 and info.configured_targets:
            none = "none of the configured targets belongs to this shard"
        rows.append(f'<tr><td colspan="6" class="muted">{none}</td></tr>')
    body = "\n".join(rows)
    # "No data yet" until some target has been read once: before that, an empty failure
    # list means nothing, and saying "none" would read as "all is well".
    no_data = bool(info.targets) and all(t.last_success is None for t in info.targets)
    links = [
        _link(info.telemetry_path, "Metrics"),
        *([_link(_probe(info.targets[0]), "Probe")] if info.targets else []),
        _link("/-/healthy", "Health"),
        _link("/-/ready", "Readiness"),
        _link(info.docs_url, "Docs"),
    ]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ALB Jobs Exporter</title>
<style>
{_STYLE}
</style>
</head>
<body>
<h1>ALB Jobs Exporter</h1>
<p class="muted">Version {html.escape(info.version)} &middot; {_shard(info)}</p>
<nav>{"".join(links)}</nav>
{_demo_banner(info)}{_no_data_note(info) if no_data else ""}\
<h2>Targets</h2>
<table id="targets">
<thead><tr><th>account</th><th>region</th><th>up</th><th>last success (UTC)</th>\
<th>last error</th><th>probe</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
<h2>Recent failed jobs</h2>
{_failures(info.failures, no_data)}
</body>
</html>
"""


def _demo_banner(info: LandingInfo) -> str:
    if not info.demo:
        return ""
    return (
        '<p class="note demo" id="demo">Demo mode: every job on this page and in the metrics'
        " is synthetic, made up by the built-in simulator. No Alibaba Cloud account is"
        " called.</p>\n"
    )


def _no_data_note(info: LandingInfo) -> str:
    tried = any(t.up is not None for t in info.targets)
    why = (
        "every refresh so far failed: see each target's last error"
        if tried
        else "the first refresh is still running"
    )
    return (
        '<p class="note nodata" id="no-data">No data yet: no target has been read'
        f" successfully since the exporter started ({why}).</p>\n"
    )


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


def _failures(failures: Sequence[LandingFailure], no_data: bool) -> str:
    if not failures:
        if no_data:
            return '<p class="muted" id="failures">no data yet</p>'
        return '<p class="muted" id="failures">none in the lookback window</p>'
    rows = "\n".join(
        "<tr>"
        + "".join(f"<td>{html.escape(value)}</td>" for value in (_utc(f.time), f.account, f.region))
        + f"<td>{_link(f.link, f.job_id) if f.link else html.escape(f.job_id)}</td>"
        + "".join(
            f"<td>{html.escape(value)}</td>" for value in (f.resource_id, f.api_name, f.error_code)
        )
        + f'<td class="message">{html.escape(f.error_message)}</td>'
        + "</tr>"
        for f in failures
    )
    return f"""<table id="failures">
<thead><tr><th>failed (UTC)</th><th>account</th><th>region</th><th>job id</th>\
<th>resource id</th><th>API name</th><th>error code</th><th>error message</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>"""
