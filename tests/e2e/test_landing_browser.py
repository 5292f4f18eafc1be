"""The landing page in a real browser: Debian's chromium, headless, loads `/` from a real
exporter process (against the real simulator) and the test reads what it rendered.

- `--dump-dom` gives the DOM after the page ran: a hostile ErrorMessage (a `<script>`, an
  `<img onerror>`) must be text in its table cell, and nothing it carries may have run.
- `--screenshot` gives the pixels: the up and down badges are green and red.
- The states: the demo banner (`--demo`), "no data yet" while no target has succeeded.

chromium comes from ci/install-tools.sh (`apt-get install chromium`); missing, it fails.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from exporter import DOCS_URL
from tests.support import loopback, procs
from tests.support.configs import access_key, account, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.tools]

KEY_ID = "LTAI5tLandingTestKey0001"
SECRET = "landing-Secret-Value-0001"
REGION = "cn-hangzhou"
HOSTILE = (
    "</td><script>document.body.setAttribute('data-pwned', 'script')</script>"
    "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">"
)
# `job_events.link`: where each recent failure's id links (its event line), and a job
# whose id must be URL-encoded into it and HTML-escaped around it.
LINK = "https://grafana.example/explore?left=%7B%7D&q={job_id}"
ODD_ID = 'job-"<b>&1 x'
GREEN, RED = (0x1A, 0x7F, 0x37), (0xCF, 0x22, 0x2E)  # .up and .down in exporter/web/landing.py
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium not found: run ci/install-tools.sh (apt-get install chromium)")
    return found


def browse(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless chromium run with a fresh profile; loopback only."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class Dom(HTMLParser):
    """The rendered DOM as chromium serialised it: elements, attributes and cell texts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.cells: list[str] = []
        self.title = ""
        self._cell: list[str] | None = None
        self._in_title = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]

    def by_id(self, element_id: str) -> bool:
        return any(attrs.get("id") == element_id for _, attrs in self.tags)


def pixels(png: bytes) -> set[tuple[int, int, int]]:
    """The distinct RGB colours of an 8-bit RGB/RGBA, non-interlaced PNG (what chromium's
    --screenshot writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous = bytearray(stride)
    colours: set[tuple[int, int, int]] = set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                guess = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + guess) & 0xFF
        colours.update((line[i], line[i + 1], line[i + 2]) for i in range(0, stride, bpp))
        previous = line
    return colours


@pytest.fixture(scope="module")
def sim(start_simulator_module: procs.Simulators) -> procs.Proc:
    return start_simulator_module([REGION], keys={KEY_ID: SECRET}, jobs_per_minute=0, history="0s")


@pytest.fixture(scope="module")
def start_simulator_module() -> Iterator[procs.Simulators]:
    with procs.Simulators() as start:
        yield start


@pytest.fixture(scope="module")
def served(sim: procs.Proc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[procs.Proc]:
    """An exporter with one target up (a failed job with a hostile message) and one down
    (a wrong secret)."""
    now = int(procs.control(sim, "GET", "/_sim/state")["now"] * 1000)
    procs.put_jobs(
        sim,
        REGION,
        {"Id": "job-hostile-1", "Status": "Failed", "ErrorCode": "Conflict.Lock",
         "ErrorMessage": HOSTILE, "CreateTime": now - 5000},
        {"Id": ODD_ID, "Status": "Failed", "ErrorCode": "Conflict.Lock", "CreateTime": now - 6000},
    )  # fmt: skip
    tmp = tmp_path_factory.mktemp("landing")
    accounts = [
        account(sim, "prod", [REGION], access_key(KEY_ID, SECRET)),
        account(sim, "broken", [REGION], access_key(KEY_ID, "wrong-" + SECRET)),
    ]
    config = write_config(tmp / "config.yaml", accounts, cache_ttl=0.5, job_events={"link": LINK})
    with procs.Exporters() as start:
        proc = start(config)
        procs.wait_until(lambda: "job-hostile-1" in loopback.get(proc.url + "/").text)
        yield proc


def test_hostile_messages_stay_text_and_nothing_runs(served: procs.Proc, tmp_path: Path) -> None:
    dom_text = browse(served.url + "/", tmp_path, "--dump-dom").stdout
    dom = Dom(dom_text)
    assert dom.title == "ALB Jobs Exporter"
    # Nothing ran: neither the script nor the image handler touched the body.
    body = dom.all("body")
    assert body == [{}], body
    assert dom.all("script") == [] and dom.all("img") == []
    # ... and the message is there, whole, as the text of its cell.
    assert HOSTILE in dom.cells
    # No external asset: only the inline stylesheet, no <link>, no remote anything.
    assert dom.all("link") == [] and len(dom.all("style")) == 1
    hrefs = [a["href"] for a in dom.all("a")]
    jobs = {LINK.replace("{job_id}", i) for i in ("job-hostile-1", "job-%22%3Cb%3E%261%20x")}
    assert {h for h in hrefs if h and h.startswith("http")} == {DOCS_URL, *jobs}
    assert {"/metrics", "/-/ready", "/-/healthy", DOCS_URL} <= set(hrefs)
    assert any(h and h.startswith("/probe?account=") for h in hrefs)
    # Coloured states: the up and down badges carry their classes.
    states = [a.get("class") for a in dom.all("span") if "state" in (a.get("class") or "")]
    assert sorted(states) == ["state down", "state up"]  # type: ignore[type-var]
    assert not dom.by_id("demo") and not dom.by_id("no-data")


def test_up_is_green_and_down_is_red_on_screen(served: procs.Proc, tmp_path: Path) -> None:
    shot = tmp_path / "landing.png"
    browse(served.url + "/", tmp_path, f"--screenshot={shot}", "--window-size=1400,900")
    colours = pixels(shot.read_bytes())
    assert GREEN in colours
    assert RED in colours


def test_demo_banner_says_the_data_is_synthetic(tmp_path: Path) -> None:
    with procs.Exporters() as start:
        proc = start(None, "--demo")
        dom = Dom(browse(proc.url + "/", tmp_path, "--dump-dom").stdout)
    assert dom.by_id("demo")
    assert not dom.by_id("no-data")


def test_no_data_yet_while_no_target_has_succeeded(sim: procs.Proc, tmp_path: Path) -> None:
    only_broken = [account(sim, "broken", [REGION], access_key(KEY_ID, "wrong-" + SECRET))]
    config = write_config(tmp_path / "config.yaml", only_broken, cache_ttl=0.5)
    with procs.Exporters() as start:
        proc = start(config)  # ready: the target was tried (and failed)
        text = browse(proc.url + "/", tmp_path, "--dump-dom").stdout
    dom = Dom(text)
    assert dom.by_id("no-data")
    assert "none in the lookback window" not in text
    assert "no data yet" in text


def test_each_recent_failure_links_its_job_id_to_its_event_line(
    served: procs.Proc, tmp_path: Path
) -> None:
    dom = Dom(browse(served.url + "/", tmp_path, "--dump-dom").stdout)
    links = {a["href"] for a in dom.all("a")}
    # The id URL-encoded into the configured URL, the rest of it as configured.
    assert "https://grafana.example/explore?left=%7B%7D&q=job-%22%3Cb%3E%261%20x" in links
    assert ODD_ID in dom.cells  # the link's text: the id as the API sent it
