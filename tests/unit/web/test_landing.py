"""The landing page (exporter.web.landing) as served at `/` over real loopback HTTP."""

from __future__ import annotations

from dataclasses import replace
from html.parser import HTMLParser

import httpx

from exporter import DOCS_URL
from exporter.web import LandingInfo, LandingTarget
from tests.support import loopback
from tests.unit.web.fakes import FakeApp, serving


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False
        self.scripts = 0
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_title = tag == "title"
        self.scripts += tag == "script"
        self.images += tag == "img"
        if tag == "a":
            self.links.extend(value or "" for name, value in attrs if name == "href")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False


def test_landing_page_escapes_and_links(client: httpx.Client, fake: FakeApp) -> None:
    hostile = "<script>alert(1)</script>"
    fake.targets = (
        LandingTarget(
            hostile, "cn-hangzhou", up=False, last_success=None, last_error="<img src=x>"
        ),
        LandingTarget("prod", "cn-shanghai", up=True, last_success=0.0, last_error=None),
        LandingTarget("new", "cn-beijing", up=None, last_success=None, last_error=None),
    )
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    text = response.text
    assert text.startswith("<!DOCTYPE html>")
    assert hostile not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x&gt;" in text
    assert "1.2.3" in text
    assert "1970-01-01T00:00:00Z" in text
    page = _Page()
    page.feed(text)
    page.close()
    assert page.title == "ALB Jobs Exporter"
    assert (page.scripts, page.images) == (0, 0)
    probe_first = "/probe?account=%3Cscript%3Ealert%281%29%3C%2Fscript%3E&region=cn-hangzhou"
    assert page.links == [
        "/metrics",
        probe_first,
        "/-/healthy",
        "/-/ready",
        DOCS_URL,
        "/probe?account=%3Cscript%3Ealert%281%29%3C%2Fscript%3E&region=cn-hangzhou",
        "/probe?account=prod&region=cn-shanghai",
        "/probe?account=new&region=cn-beijing",
    ]
    probe = client.get(page.links[6])
    assert probe.status_code == 400  # FakeApp knows prod only in cn-hangzhou


def test_landing_page_uses_telemetry_path_from_info(fake: FakeApp) -> None:
    hooks = replace(
        fake.hooks(),
        landing=lambda: LandingInfo(version="x", targets=(), telemetry_path='/m?a=1&b="2"'),
    )
    with serving(hooks) as server, loopback.client(base_url=server.url) as c:
        text = c.get("/").text
    assert 'href="/m?a=1&amp;b=&quot;2&quot;"' in text
    assert "no targets configured" in text


def test_landing_page_shows_the_shard() -> None:
    from exporter.web import render_landing

    targets = [LandingTarget("prod", "cn-hangzhou", True, None, None)]
    alone = LandingInfo(version="x", targets=targets, telemetry_path="/metrics")
    assert "&middot; Shard 0 of 1 (not sharded)</p>" in render_landing(alone)
    sharded = replace(alone, shard_index=1, shard_count=3, configured_targets=12)
    assert (
        "&middot; Shard 1 of 3: 1 of the 12 configured targets; the other shards serve the rest"
        in render_landing(sharded)
    )
    idle = render_landing(replace(sharded, targets=[]))
    assert "none of the configured targets belongs to this shard" in idle
    assert "no targets configured" not in idle


def test_recent_failures_are_listed_newest_first_and_escaped() -> None:
    from exporter.web import LandingFailure, render_landing

    failures = [
        LandingFailure(1_700_000_060.0, "prod", "cn-hangzhou", "J-2", "lsn-2", "CreateRule",
                       "Conflict.Lock", '</td><script>alert("x")</script>'),
        LandingFailure(1_700_000_000.0, "prod", "cn-shanghai", "J-1", "alb-1",
                       "CreateLoadBalancer", "QuotaExceeded", "quota & <more>"),
    ]  # fmt: skip
    page = render_landing(LandingInfo("1.0", [], "/metrics", failures))
    parser = _Page()
    parser.feed(page)
    assert parser.scripts == 0
    assert "&lt;/td&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "quota &amp; &lt;more&gt;" in page
    assert page.index("J-2") < page.index("J-1")
    assert "<td>2023-11-14T22:14:20Z</td><td>prod</td><td>cn-hangzhou</td><td>J-2</td>" in page
    assert "none in the lookback window" in render_landing(LandingInfo("1.0", [], "/metrics"))


def test_a_recent_failure_links_its_job_id_where_its_event_line_is() -> None:
    from exporter.web import LandingFailure, render_landing

    # The link as JobEventsConfig.link_for makes it (the id URL-encoded); the page
    # HTML-escapes it once more for the attribute, and the id text for the cell.
    hostile_id = '"><script>alert(1)</script>'
    link = 'https://grafana.example/explore?a=1&q=%22%3E%3Cscript%3E"'
    failures = [
        LandingFailure(1_700_000_060.0, "prod", "cn-hangzhou", hostile_id, "lsn-2", "CreateRule",
                       "Conflict.Lock", "busy", link=link),
        LandingFailure(1_700_000_000.0, "prod", "cn-hangzhou", "J-1", "lsn-1", "CreateRule",
                       "Conflict.Lock", "busy"),
    ]  # fmt: skip
    page = render_landing(LandingInfo("1.0", [], "/metrics", failures))
    parser = _Page()
    parser.feed(page)
    assert parser.scripts == 0
    assert link in parser.links  # the browser follows exactly the link given
    assert (
        '<td><a href="https://grafana.example/explore?a=1&amp;q=%22%3E%3Cscript%3E&quot;">'
        "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;</a></td>"
    ) in page
    assert "<td>J-1</td>" in page  # no link: the id as text


def test_no_data_yet_until_a_target_has_succeeded_once() -> None:
    from exporter.web import render_landing

    pending = LandingTarget("prod", "cn-hangzhou", None, None, None)
    failing = LandingTarget("prod", "cn-shanghai", False, None, "ServiceUnavailable")
    ok = LandingTarget("dev", "cn-beijing", True, 1_700_000_000.0, None)
    first = render_landing(LandingInfo("1.0", [pending], "/metrics"))
    assert 'id="no-data"' in first and "the first refresh is still running" in first
    assert '<p class="muted" id="failures">no data yet</p>' in first
    failed = render_landing(LandingInfo("1.0", [pending, failing], "/metrics"))
    assert "every refresh so far failed" in failed
    assert "none in the lookback window" not in failed
    served = render_landing(LandingInfo("1.0", [failing, ok], "/metrics"))
    assert 'id="no-data"' not in served and "none in the lookback window" in served
    assert '<span class="state down">down</span>' in served
    assert '<span class="state up">up</span>' in served


def test_demo_banner_only_in_demo_mode() -> None:
    from exporter.web import render_landing

    info = LandingInfo("1.0", [], "/metrics")
    assert 'id="demo"' not in render_landing(info)
    assert "is synthetic" in render_landing(replace(info, demo=True))
