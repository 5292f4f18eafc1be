"""Fault suite: the real exporter process against simulator processes whose fault knobs are
switched while everything runs. Each test asserts what a user of /metrics would see.

One simulator (`sim`) serves five regions, one per target below, and a second one (`sim2`)
serves the `edge` target so that it can be stopped (connection refused) and restarted.
The simulators generate no jobs of their own and their clocks run with the exporter's: the
tests create and finish jobs through the control API, and the simulator's job list is the
truth the exposition is compared with.

Every scrape made through `Suite.scrape` is also checked for the properties that must hold
at all times: HTTP 200 within the scrape timeout, a parseable exposition, and no counter
sample lower than in the previous scrape. The last test checks every answer and every log
line of the whole module for secrets.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.alibaba.signing import percent_encode
from exporter.metrics.table import MAX_LABEL_VALUE_LENGTH
from exporter.web.server import MAX_WORKERS
from tests.support import loopback, procs
from tests.support.configs import access_key, account, write_config

# timing: while a call hangs, scrapes answer at the deadline the exporter keeps (SCRAPE_TIMEOUT
# minus its 0.5 s offset), a few tenths of a second inside the bound Suite.scrape checks.
pytestmark = [pytest.mark.e2e, pytest.mark.timing]

KEY_ID = "LTAI5tFaultKeyId00000001"
SECRET = "fault-Secret-Value-7c6b5a4f3e2d1c"
OTHER_KEY_ID = "LTAI5tFaultKeyId00000002"
OTHER_SECRET = "fault-Other-Secret-0f1e2d3c4b5a69"
WRONG_SECRET = "fault-Wrong-Secret-99aa88bb77cc66"

# (account, region). FAULTED gets the fault knobs; CONTROLS must not notice.
FAULTED = ("prod", "cn-hangzhou")
CONTROLS = (("prod", "cn-shanghai"), ("other", "eu-central-1"))
STS = ("sts", "cn-shenzhen")
HOSTILE = ("hostile", "ap-southeast-1")
EDGE = ("edge", "cn-beijing")
SIM_TARGETS = (FAULTED, *CONTROLS, STS, HOSTILE)
ALL_TARGETS = (*SIM_TARGETS, EDGE)

CACHE_TTL = 0.3  # short, so that each step of a scenario costs a fraction of a second
SCRAPE_TIMEOUT = 5.0  # what Prometheus would send in X-Prometheus-Scrape-Timeout-Seconds
REQUEST_TIMEOUT = 2.0  # the exporter's request_timeout below
LOOKBACK_SECONDS = 2 * 3600  # longer than the module runs: every job stays in the window
PAGE_SIZE = 5  # small, so that even a listing of the latest jobs spans several pages

JOB_LABELS = ("status", "resource_type", "api_name", "operate_type")
JOB_FIELDS = ("Status", "ResourceType", "ApiName", "OperateType")
COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
# Codes the simulator cannot log: the exporter's reading of an answer, not the API's Code.
TRANSPORT_CODES = ("OK", "Timeout", "TransportError", "MalformedResponse")


# --- the running system -------------------------------------------------------------------


def _start_sim(
    start_simulator: procs.Simulators, regions: tuple[str, ...], listen: str = procs.LOOPBACK
) -> procs.Proc:
    # No generated jobs and a clock that runs with the exporter's: the tests create and
    # finish jobs themselves, at "now", as ALB would.
    keys = {KEY_ID: SECRET, OTHER_KEY_ID: OTHER_SECRET}
    return start_simulator(regions, keys=keys, jobs_per_minute=0, history="0", listen=listen)


def _write(path: Path, text: str) -> None:
    # Atomic, like a Kubernetes secret update: the exporter never reads half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


KINDS = (  # (ApiName, ResourceType, OperateType, ErrorCode when failed)
    ("CreateLoadBalancer", "loadbalancer", "Create", "QuotaExceeded.LoadBalancersNum"),
    ("CreateListener", "listener", "Create", "ResourceNotFound.LoadBalancer"),
    ("AddServersToServerGroup", "servergroup", "Update", "Conflict.Lock"),
    ("UpdateRuleAttribute", "rule", "Update", "Conflict.Lock"),
    ("DeleteAcl", "acl", "Delete", "ResourceInUse.Acl"),
)
STATUSES = ("Processing", "Succeeded", "Failed", "Processing", "Succeeded")


@dataclass
class Suite:
    start_simulator: procs.Simulators
    sim: procs.Proc
    sim2: procs.Proc
    exporter: procs.Proc
    sts_dir: Path
    secrets: set[str] = field(default_factory=set)
    answers: list[str] = field(default_factory=list)
    scrapes: int = 0
    serial: int = 0
    _counters: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)

    # --- simulator control ---

    def control(self, method: str, path: str, body: object = None, sim: Any = None) -> Any:
        return procs.control(sim or self.sim, method, path, body)

    def truth(self, region: str, sim: Any = None) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = self.control("GET", f"/_sim/jobs?region={region}", sim=sim)
        return jobs

    def mutate(
        self,
        region: str,
        new: int,
        finish: int = 0,
        statuses: tuple[str, ...] = STATUSES,
        sim: Any = None,
    ) -> None:
        """What ALB does meanwhile: `new` jobs are created now, the `finish` youngest
        Processing jobs finish now (alternately Succeeded and Failed)."""
        running = sorted(
            (j for j in self.truth(region, sim) if j["Status"] == "Processing"),
            key=lambda j: (-j["CreateTime"], j["Id"]),
        )
        changes: list[dict[str, Any]] = []
        for i, job in enumerate(running[:finish]):
            if i % 2:
                changes.append({"Id": job["Id"], "Status": "Failed", "ErrorCode": "Conflict.Lock"})
            else:
                changes.append({"Id": job["Id"], "Status": "Succeeded"})
        for _ in range(new):
            self.serial += 1
            api, rtype, op, error = KINDS[self.serial % len(KINDS)]
            status = statuses[self.serial % len(statuses)]
            job = {
                "Id": f"job-{region}-{self.serial:05d}",
                "ApiName": api,
                "ResourceType": rtype,
                "OperateType": op,
                "ResourceId": f"{rtype[:3]}-{self.serial:05d}",
                "Status": status,
            }
            if status == "Failed":
                job.update(ErrorCode=error, ErrorMessage=f"simulated {error}")
            changes.append(job)
        procs.put_jobs(sim or self.sim, region, *changes)

    def set_faults(self, region: str, **knobs: object) -> None:
        self.control("POST", "/_sim/faults", {"region": region, **knobs})

    def clear_faults(self) -> None:
        self.control("DELETE", "/_sim/faults")

    def sim_codes(self, region: str, since: float) -> Counter[str]:
        log = self.control("GET", f"/_sim/requests?region={region}")
        return Counter(r["code"] for r in log if r["time"] >= since and r["code"])

    def issue_sts(self, ttl: float) -> dict[str, Any]:
        creds: dict[str, Any] = self.control("POST", "/_sim/sts", {"ttl": ttl})
        self.secrets.update((creds["AccessKeySecret"], creds["SecurityToken"]))
        return creds

    def write_sts(self, creds: dict[str, Any], secret: str | None = None) -> None:
        secret = secret or creds["AccessKeySecret"]
        self.secrets.add(secret)
        _write(self.sts_dir / "key_id", creds["AccessKeyId"])
        _write(self.sts_dir / "secret", secret)
        _write(self.sts_dir / "token", creds["SecurityToken"])

    # --- the exporter, as Prometheus and a user see it ---

    def get(self, path: str) -> httpx.Response:
        r = loopback.get(self.exporter.url + path, timeout=30)
        self.answers.append(r.text)
        return r

    def scrape(self, path: str = "/metrics") -> procs.Samples:
        started = time.monotonic()
        r = loopback.get(
            self.exporter.url + path,
            headers={"X-Prometheus-Scrape-Timeout-Seconds": f"{SCRAPE_TIMEOUT:g}"},
            timeout=30,
        )
        elapsed = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert elapsed < SCRAPE_TIMEOUT, f"scrape took {elapsed:.2f}s"
        self.answers.append(r.text)
        self.scrapes += 1
        samples = procs.parse(r.text)
        if path == "/metrics":
            self._check_counters(samples)
        return samples

    def _check_counters(self, samples: procs.Samples) -> None:
        """Counter and histogram samples never go down and never disappear."""
        now = {k: v for k, v in samples.items() if k[0].endswith(COUNTER_SUFFIXES)}
        for k, before in self._counters.items():
            assert k in now, f"counter series vanished: {k}"
            assert now[k] >= before, f"counter went down: {k} {before} -> {now[k]}"
        self._counters = now

    def wait_for(
        self,
        predicate: Callable[[procs.Samples], bool],
        what: str,
        timeout: float = 30.0,
        explain: Callable[[procs.Samples], object] = lambda _: "",
    ) -> procs.Samples:
        deadline = time.monotonic() + timeout
        while True:
            samples = self.scrape()
            if predicate(samples):
                return samples
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout:g}s: {what} {explain(samples)}")
            time.sleep(0.05)

    def log_lines(self, start: int = 0) -> list[str]:
        with self.exporter._lock:
            return "".join(self.exporter.lines[start:]).splitlines()

    def log_mark(self) -> int:
        with self.exporter._lock:
            return len(self.exporter.lines)

    def settle(self) -> procs.Samples:
        """No faults; every target refreshed successfully since now and showing the truth."""
        self.clear_faults()
        since = time.time()
        want = {t: truth_gauges(self.truth(t[1])) for t in SIM_TARGETS}
        want[EDGE] = truth_gauges(self.truth(EDGE[1], sim=self.sim2))

        def wrong(s: procs.Samples) -> dict[tuple[str, str], object]:
            return {
                t: (up(s, t), last_success(s, t) - since, mismatch(gauges(s, t), want[t]))
                for t in ALL_TARGETS
                if up(s, t) != 1 or last_success(s, t) < since or gauges(s, t) != want[t]
            }

        return self.wait_for(
            lambda s: not wrong(s),
            "every target up, fresh and equal to the simulator's jobs",
            explain=wrong,
        )


def one(samples: procs.Samples, name: str, target: tuple[str, str], **labels: str) -> float:
    found = procs.select(samples, name, account=target[0], region=target[1], **labels)
    assert len(found) == 1, (name, target, labels, found)
    return next(iter(found.values()))


def up(samples: procs.Samples, target: tuple[str, str]) -> float:
    return one(samples, "alb_exporter_up", target)


def last_success(samples: procs.Samples, target: tuple[str, str]) -> float:
    found = procs.select(
        samples, "alb_exporter_last_success_timestamp_seconds", account=target[0], region=target[1]
    )
    return next(iter(found.values())) if found else 0.0


def by_labels(
    samples: procs.Samples, name: str, target: tuple[str, str], labels: tuple[str, ...]
) -> dict[tuple[str, ...], float]:
    out = {}
    for lbl, value in procs.select(samples, name, account=target[0], region=target[1]).items():
        d = dict(lbl)
        out[tuple(d[n] for n in labels)] = value
    return out


def gauges(samples: procs.Samples, target: tuple[str, str]) -> dict[tuple[str, ...], float]:
    return by_labels(samples, "alb_async_jobs", target, JOB_LABELS)


def finished(samples: procs.Samples, target: tuple[str, str]) -> dict[tuple[str, ...], float]:
    return by_labels(samples, "alb_async_jobs_finished_total", target, JOB_LABELS)


def codes(samples: procs.Samples, target: tuple[str, str]) -> dict[str, float]:
    found = by_labels(samples, "alb_exporter_api_requests_total", target, ("code",))
    return {k[0]: v for k, v in found.items()}


def grown(after: procs.Samples, before: procs.Samples, target: tuple[str, str], code: str) -> float:
    return codes(after, target).get(code, 0.0) - codes(before, target).get(code, 0.0)


def _key(job: dict[str, Any], fields: tuple[str, ...]) -> tuple[str, ...]:
    # The label value a job field becomes: the string, capped by the documented rule.
    return tuple(expected_label(str(job.get(f) or "")) for f in fields)


def truth_gauges(jobs: list[dict[str, Any]]) -> dict[tuple[str, ...], float]:
    return {k: float(v) for k, v in Counter(_key(j, JOB_FIELDS) for j in jobs).items()}


def newly_finished(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[tuple, float]:
    """What finished_total must grow by between two truths: jobs terminal now that were
    Processing or unknown before, each once (SPEC counter rules)."""
    before = {j["Id"]: j for j in old}
    want: Counter[tuple[str, ...]] = Counter()
    for job in new:
        previous = before.get(job["Id"])
        if job["Status"] != "Processing" and (
            previous is None or previous["Status"] == "Processing"
        ):
            want[_key(job, JOB_FIELDS)] += 1
    return {k: float(v) for k, v in want.items()}


def mismatch(got: dict[Any, float], want: dict[Any, float]) -> dict[Any, tuple]:
    return {k: (got.get(k), want.get(k)) for k in {*got, *want} if got.get(k) != want.get(k)}


def delta(after: dict[Any, float], before: dict[Any, float]) -> dict[Any, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suite(
    tmp_path_factory: pytest.TempPathFactory,
    start_simulator: procs.Simulators,
    start_exporter: procs.Exporters,
) -> Suite:
    tmp = tmp_path_factory.mktemp("faults")
    sts_dir = tmp / "sts"
    sts_dir.mkdir()
    sim = _start_sim(start_simulator, tuple(region for _, region in SIM_TARGETS))
    sim2 = _start_sim(start_simulator, (EDGE[1],))
    s = Suite(start_simulator, sim, sim2, sim, sts_dir)
    s.secrets |= {SECRET, OTHER_SECRET, WRONG_SECRET}
    s.write_sts(s.issue_sts(3600))
    for _, region in SIM_TARGETS:
        s.mutate(region, new=20)
    s.mutate(EDGE[1], new=10, sim=s.sim2)
    keys = access_key(KEY_ID, "${FAULT_SECRET}")
    other_keys = access_key(OTHER_KEY_ID, "${FAULT_OTHER_SECRET}")
    sts_files = {
        "access_key_id_file": str(sts_dir / "key_id"),
        "access_key_secret_file": str(sts_dir / "secret"),
        "security_token_file": str(sts_dir / "token"),
    }
    # Fast enough that pacing after throttling (ratelimit.py) does not dominate runtime.
    fast = {"max_requests_per_second": 100}
    accounts = [
        account(sim, FAULTED[0], [FAULTED[1], CONTROLS[0][1]], keys, **fast),
        account(sim, CONTROLS[1][0], [CONTROLS[1][1]], other_keys, **fast, signature="v1"),
        account(sim, STS[0], [STS[1]], sts_files, **fast, signature="v1"),
        account(sim, HOSTILE[0], [HOSTILE[1]], keys, **fast),
        account(s.sim2, EDGE[0], [EDGE[1]], keys, **fast),
    ]
    cfg = write_config(
        tmp / "config.yaml",
        accounts,
        lookback=LOOKBACK_SECONDS,
        cache_ttl=CACHE_TTL,
        request_timeout=f"{REQUEST_TIMEOUT:g}s",
        page_size=PAGE_SIZE,
        max_pages=60,
        recent_failures=5,
    )
    env = {"FAULT_SECRET": SECRET, "FAULT_OTHER_SECRET": OTHER_SECRET}
    s.exporter = start_exporter(cfg, env=env)
    s.settle()
    return s


# --- scenario drivers ---------------------------------------------------------------------


@dataclass
class Episode:
    base: procs.Samples  # before the fault
    during: procs.Samples  # the fault observed
    after: procs.Samples  # recovered
    logs: list[str]  # exporter log lines from fault start to recovery
    since: float  # when the fault was switched on


def change_the_world(suite: Suite, statuses: tuple[str, ...] = STATUSES) -> dict[str, list]:
    """Jobs arrive and finish everywhere while a fault is on; the truths afterwards."""
    suite.mutate(FAULTED[1], new=6, finish=4, statuses=statuses)
    for _, region in CONTROLS:
        suite.mutate(region, new=3)
    return {region: suite.truth(region) for _, region in (FAULTED, *CONTROLS)}


class FaultOn(NamedTuple):
    base: procs.Samples  # settled, before the fault
    old: list[dict[str, Any]]  # FAULTED's jobs before the fault
    mark: int  # where the exporter's log stood
    since: float  # when the fault was switched on
    new: dict[str, list[dict[str, Any]]]  # the truths once the world changed
    changed: float  # when it had changed


def switch_on(suite: Suite, statuses: tuple[str, ...], knobs: dict[str, object]) -> FaultOn:
    """Settle, then switch `knobs` on for FAULTED's region while jobs change everywhere."""
    region = FAULTED[1]
    base = suite.settle()
    old = suite.truth(region)
    mark = suite.log_mark()
    since = time.time()
    suite.set_faults(region, **knobs)
    new = change_the_world(suite, statuses)
    return FaultOn(base, old, mark, since, new, time.time())


def outage(
    suite: Suite, code: str, *, retried: bool = True, cause: str = "", **knobs: object
) -> Episode:
    """Switch `knobs` on for FAULTED's region while jobs change, wait until the user sees
    the failure, check everything a user relies on, clear the fault and check the
    recovery. `code` is the api_requests_total code the failing calls must carry, `cause`
    what the warning must say (default: the code)."""
    region = FAULTED[1]
    base, old, mark, since, new, changed = switch_on(suite, STATUSES, knobs)

    during = suite.wait_for(
        lambda s: up(s, FAULTED) == 0 and all(last_success(s, t) >= changed for t in CONTROLS),
        "the faulted target down, the others refreshed",
    )
    # The failing calls are counted under their code.
    assert grown(during, base, FAULTED, code) > 0
    # The last good data is still served, and its age shows.
    assert last_success(during, FAULTED) == last_success(base, FAULTED) < changed
    assert gauges(during, FAULTED) == gauges(base, FAULTED) == truth_gauges(old)
    assert gauges(during, FAULTED) != truth_gauges(new[region])
    assert finished(during, FAULTED) == finished(base, FAULTED)
    tracked = "alb_exporter_jobs_tracked"
    assert one(during, tracked, FAULTED) == one(base, tracked, FAULTED)
    # Other targets are unaffected: up, fresh, exact, and no error codes of their own.
    for target in CONTROLS:
        assert up(during, target) == 1
        assert gauges(during, target) == truth_gauges(new[target[1]])
        assert {c: v for c, v in codes(during, target).items() if c != "OK"} == {
            c: v for c, v in codes(base, target).items() if c != "OK"
        }
    # A user looking at the landing page or probing the target sees it too.
    assert "cn-hangzhou" in suite.get("/").text
    assert (
        'alb_exporter_up{account="prod",region="cn-hangzhou"} 0.0'
        in suite.get(f"/probe?account={FAULTED[0]}&region={region}").text
    )

    suite.clear_faults()
    after = suite.wait_for(
        lambda s: up(s, FAULTED) == 1 and gauges(s, FAULTED) == truth_gauges(new[region]),
        "the faulted target recovered and caught up",
    )
    logs = suite.log_lines(mark)
    check_recovery(suite, base, after, old, new[region])
    check_logged_once(logs, cause or code)
    if code not in TRANSPORT_CODES:
        counted_exactly_once(suite, base, code, since)
    # A retryable fault costs max_attempts (3) calls before a refresh gives up.
    assert grown(after, base, FAULTED, code) >= (3 if retried else 1)
    return Episode(base, during, after, logs, since)


def counted_exactly_once(suite: Suite, base: procs.Samples, code: str, since: float) -> None:
    """Each answer the simulator sent with `code` is counted once by the exporter. Compared
    once both sides agree at a quiet moment: a refresh still in flight when the simulator's
    log is read has answers the exporter has not counted yet (and it never counts more)."""
    region = FAULTED[1]
    seen: list[tuple[float, int]] = []

    def agree(s: procs.Samples) -> bool:
        seen.append((grown(s, base, FAULTED, code), suite.sim_codes(region, since)[code]))
        exporter, simulator = seen[-1]
        assert exporter <= simulator, seen  # never counted twice
        return exporter == simulator

    suite.wait_for(agree, f"every {code} answer counted once", explain=lambda _: seen[-5:])


def absorbed(
    suite: Suite, code: str | None, statuses: tuple[str, ...] = STATUSES, **knobs: object
) -> Episode:
    """A fault the exporter must ride through: the target stays up and exact."""
    region = FAULTED[1]
    base, old, mark, since, truths, changed = switch_on(suite, statuses, knobs)
    new = truths[region]
    during = suite.wait_for(
        lambda s: last_success(s, FAULTED) >= changed and gauges(s, FAULTED) == truth_gauges(new),
        "the target refreshed under the fault and caught up",
    )
    assert up(during, FAULTED) == 1
    check_recovery(suite, base, during, old, new)
    if code is not None:
        assert grown(during, base, FAULTED, code) > 0
        counted_exactly_once(suite, base, code, since)
    logs = suite.log_lines(mark)
    assert not [line for line in logs if "level=warning" in line or "level=error" in line]
    suite.clear_faults()
    return Episode(base, during, during, logs, since)


def check_recovery(
    suite: Suite,
    base: procs.Samples,
    after: procs.Samples,
    old: list[dict[str, Any]],
    new: list[dict[str, Any]],
) -> None:
    assert up(after, FAULTED) == 1
    assert gauges(after, FAULTED) == truth_gauges(new)
    # Jobs that finished while the target was failing are counted once, none twice.
    assert delta(finished(after, FAULTED), finished(base, FAULTED)) == newly_finished(old, new)
    assert one(after, "alb_exporter_jobs_tracked", FAULTED) <= len(new)
    check_request_counts(suite)


def check_request_counts(suite: Suite) -> None:
    """Every HTTP attempt is counted once: the exporter's api_requests_total (all codes)
    equals the number of requests the simulator received, for every target on it."""

    def balanced() -> bool:
        samples = suite.scrape()
        seen = suite.control("GET", "/_sim/state")["request_counts"]
        return all(sum(codes(samples, t).values()) == seen.get(t[1], 0) for t in SIM_TARGETS)

    procs.wait_until(balanced, timeout=15, interval=0.1)


def check_logged_once(logs: list[str], code: str) -> None:
    """The failure is logged at warning once, naming the cause; repeats at debug; and
    the recovery is logged."""
    tag = f"account={FAULTED[0]} region={FAULTED[1]}"
    warnings = [line for line in logs if "level=warning" in line and tag in line]
    assert len(warnings) == 1, warnings
    assert code in warnings[0]
    assert not [line for line in logs if "level=error" in line]
    assert any("level=info" in line and tag in line and "recovered" in line for line in logs)


# --- hostile values (SPEC: label values are the API's strings, escaped; capped at 256) -----

LONG = "L" * 10_240
HOSTILE_STRINGS = (
    'quote"d',
    "back\\slash",
    "new\nline",
    "carriage\rreturn",
    "tab\tand\x00nul",
    "unicode Größe 负载均衡 🚀 \u2028",
    "} 1\nfake_metric 1",
    '# HELP x "',
    LONG,
    LONG + "-second",  # equal to LONG once capped: the two must merge into one series
)


def expected_label(value: str) -> str:
    if len(value) <= MAX_LABEL_VALUE_LENGTH:
        return value
    return value[: MAX_LABEL_VALUE_LENGTH - 1] + "…"


def validate_exposition(text: str) -> None:
    list(text_string_to_metric_families(text))
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    # promtool lints names and help too; "error" lines or a non-zero exit mean invalid.
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.tools
def test_hostile_job_strings_keep_the_exposition_valid_and_capped(suite: Suite) -> None:
    region = HOSTILE[1]
    jobs = []
    for i, value in enumerate(HOSTILE_STRINGS):
        jobs.append(
            {
                "Id": f"hostile-{i}",
                "ApiName": value,
                "OperateType": value,
                "ResourceType": value,
                "ResourceId": value,
                "Status": "Failed",
                "ErrorCode": value,
                "ErrorMessage": value,
            }
        )
    # A failed job without ErrorCode is error_code="" (SPEC).
    jobs.append({"Id": "hostile-empty", "ApiName": "Empty", "Status": "Failed"})
    suite.control("POST", "/_sim/jobs", {"region": region, "jobs": jobs})
    since = time.time()
    samples = suite.wait_for(
        lambda s: last_success(s, HOSTILE) >= since, "the hostile target refreshed"
    )
    text = suite.answers[-1]
    validate_exposition(text)
    om = suite.exporter.url + "/metrics"
    om_text = loopback.get(
        om, headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=30
    ).text
    suite.answers.append(om_text)
    list(parse_openmetrics(om_text))

    failed = by_labels(
        samples, "alb_async_jobs_failed", HOSTILE, ("resource_type", "api_name", "error_code")
    )
    truth = Counter(
        tuple(expected_label(str(j.get(f) or "")) for f in ("ResourceType", "ApiName", "ErrorCode"))
        for j in suite.truth(region)
        if j["Status"] == "Failed"
    )
    assert failed == {k: float(v) for k, v in truth.items()}
    capped = expected_label(LONG)
    assert len(capped) == MAX_LABEL_VALUE_LENGTH and capped.endswith("…")
    # LONG and LONG-second collide once capped: one series holding both jobs.
    assert failed[(capped, capped, capped)] == 2.0
    assert failed[("loadbalancer", "Empty", "")] == 1.0
    for value in HOSTILE_STRINGS:
        assert (expected_label(value),) * 3 in failed
    every_value = {v for (_, lbl) in samples for _, v in lbl}
    assert max(len(v) for v in every_value) == MAX_LABEL_VALUE_LENGTH
    # Job ids and error messages are never labels, except on the bounded recent series.
    recent = procs.select(
        samples, "alb_async_job_recent_failure_timestamp_seconds", account=HOSTILE[0]
    )
    assert 0 < len(recent) <= 5
    assert not any(
        "ErrorMessage" in name or value.startswith("hostile-")
        for (name, lbl) in samples
        if not name.startswith("alb_async_job_recent_failure")
        for _, value in lbl
    )


@pytest.mark.tools
@pytest.mark.parametrize(
    ("deny", "label"),
    [
        ('Forbidden."quoted"\\back', 'Forbidden."quoted"\\back'),
        ("Denied\nInjected 1", "Denied\nInjected 1"),
        ("Verboten.Größe.拒绝", "Verboten.Größe.拒绝"),
        ("X" * 10_240, "X" * 100),  # the client keeps the first 100 characters of a Code
        ("   ", "TransportError"),  # a blank Code is no API error code at all
    ],
    ids=["quotes-backslash", "newline", "unicode", "10kB", "blank"],
)
def test_hostile_error_codes_keep_the_exposition_valid(suite: Suite, deny: str, label: str) -> None:
    since = time.time()
    suite.set_faults(HOSTILE[1], deny=deny)
    try:
        samples = suite.wait_for(
            lambda s: up(s, HOSTILE) == 0 and codes(s, HOSTILE).get(label, 0) > 0,
            "the hostile code counted",
        )
    finally:
        suite.clear_faults()
    validate_exposition(suite.answers[-1])
    assert up(samples, FAULTED) == 1
    if label != "TransportError":
        assert suite.sim_codes(HOSTILE[1], since)[deny] == codes(samples, HOSTILE)[label]


# --- API error faults ---------------------------------------------------------------------


def test_throttling_storm_every_call(suite: Suite) -> None:
    outage(suite, "Throttling.User", throttle=1.0)


def test_throttling_storm_with_retry_after_header(suite: Suite) -> None:
    # 300 ms is within the client's backoff cap (5 s): waited for, then still failing. The
    # backoff alone would retry after 0.1-0.2 s.
    ep = outage(suite, "Throttling.User", throttle=1.0, retry_after_ms=300)
    log = [
        r
        for r in suite.control("GET", f"/_sim/requests?region={FAULTED[1]}")
        if r["time"] >= ep.since
    ]
    waits = [b["time"] - a["time"] for a, b in pairwise(log) if a["code"] == "Throttling.User"]
    assert waits and min(waits) >= 0.29, waits


def test_throttling_every_third_call_is_absorbed_by_retries(suite: Suite) -> None:
    absorbed(suite, "Throttling.User", throttle_every=3)


@pytest.mark.parametrize("error_code", ["ServiceUnavailable", "InternalError"])
def test_5xx_burst(suite: Suite, error_code: str) -> None:
    outage(suite, error_code, error_rate=1.0, error_code=error_code)


def test_every_other_call_5xx_is_absorbed_by_retries(suite: Suite) -> None:
    absorbed(suite, "SystemBusy", error_every=2, error_code="SystemBusy")


def test_clock_skew_invalid_timestamp_expired(suite: Suite) -> None:
    # 30 minutes off, twice the gateway's tolerance. Not retried: re-signing with the same
    # clock cannot help.
    outage(suite, "InvalidTimeStamp.Expired", retried=False, clock_skew=1800)


def test_permission_denied_forbidden_ram(suite: Suite) -> None:
    outage(suite, "Forbidden.RAM", retried=False, deny="Forbidden.RAM")


# --- transport faults ---------------------------------------------------------------------


def test_call_hanging_past_the_timeout(suite: Suite) -> None:
    # Every scrape still answers within the scrape timeout (checked in Suite.scrape) while
    # each attempt waits REQUEST_TIMEOUT for nothing.
    outage(suite, "Timeout", cause="no answer within 2s", hang=REQUEST_TIMEOUT + 1.0)


def test_truncated_json(suite: Suite) -> None:
    outage(suite, "MalformedResponse", cause="non-JSON body", malformed="truncated")


def test_html_error_page_with_status_502(suite: Suite) -> None:
    outage(suite, "TransportError", cause="HTTP 502", malformed="html502")


def test_xml_instead_of_json(suite: Suite) -> None:
    outage(suite, "MalformedResponse", cause="non-JSON body", malformed="not_json")


def test_connection_refused_then_restarted(suite: Suite) -> None:
    base = suite.settle()
    jobs = suite.truth(EDGE[1], sim=suite.sim2)
    edge_old = truth_gauges(jobs)
    mark = suite.log_mark()
    assert suite.sim2.close() == 0
    since = time.time()
    during = suite.wait_for(
        lambda s: up(s, EDGE) == 0 and all(last_success(s, t) >= since for t in SIM_TARGETS),
        "edge down, the others refreshed",
    )
    assert (
        codes(during, EDGE).get("TransportError", 0)
        >= codes(base, EDGE).get("TransportError", 0) + 3
    )  # three attempts, all refused
    assert gauges(during, EDGE) == edge_old
    assert last_success(during, EDGE) == last_success(base, EDGE)
    assert all(up(during, t) == 1 for t in SIM_TARGETS)

    # The same address again, as after a network partition or a gateway restart; the
    # restarted stand-in gets the same jobs back (ALB does not forget them), and more.
    address = suite.sim2.url.removeprefix("http://")
    suite.sim2 = _start_sim(suite.start_simulator, (EDGE[1],), listen=address)
    procs.put_jobs(suite.sim2, EDGE[1], *jobs)
    assert suite.truth(EDGE[1], sim=suite.sim2) == jobs
    suite.mutate(EDGE[1], new=3, finish=2, sim=suite.sim2)
    new = suite.truth(EDGE[1], sim=suite.sim2)
    after = suite.wait_for(
        lambda s: up(s, EDGE) == 1 and gauges(s, EDGE) == truth_gauges(new),
        "edge recovered and caught up",
    )
    assert delta(finished(after, EDGE), finished(base, EDGE)) == newly_finished(jobs, new)
    tag = f"account={EDGE[0]} region={EDGE[1]}"
    warnings = [line for line in suite.log_lines(mark) if "level=warning" in line and tag in line]
    assert len(warnings) == 1 and "ConnectError" in warnings[0], warnings


# --- malformed 200 answers ----------------------------------------------------------------


def malformed(suite: Suite, kind: str, *, cause: str) -> Episode:
    """A well-formed 200 that is not a ListAsynJobs answer: not retried (it would not
    change), counted as MalformedResponse."""
    return outage(suite, "MalformedResponse", retried=False, cause=cause, malformed=kind)


def test_200_with_jobs_null(suite: Suite) -> None:
    # Reading "Jobs": null as "no jobs" would zero the gauges and count every tracked
    # Processing job as vanished: an outage disguised as a quiet account.
    ep = malformed(suite, "jobs_null", cause="Jobs")
    vanished = "alb_async_jobs_vanished_total"
    assert by_labels(ep.after, vanished, FAULTED, ("resource_type", "api_name")) == by_labels(
        ep.base, vanished, FAULTED, ("resource_type", "api_name")
    )


def test_200_with_missing_fields(suite: Suite) -> None:
    malformed(suite, "missing_fields", cause="has no Status")


def test_200_with_wrong_types(suite: Suite) -> None:
    malformed(suite, "wrong_types", cause="not epoch milliseconds")


def test_200_that_is_not_a_listing_answer(suite: Suite) -> None:
    # A proxy's own JSON ({"RequestId": ...}): read as "no jobs" it made every tracked
    # Processing job vanish and the stuck-job series disappear while up stayed 1.
    ep = malformed(suite, "no_jobs", cause="neither Jobs nor TotalCount")
    vanished = "alb_async_jobs_vanished_total"
    assert by_labels(ep.after, vanished, FAULTED, ("resource_type", "api_name")) == by_labels(
        ep.base, vanished, FAULTED, ("resource_type", "api_name")
    )
    stuck = "alb_async_job_processing_oldest_created_timestamp_seconds"
    before = by_labels(ep.base, stuck, FAULTED, ("resource_type", "api_name"))
    assert before  # there were Processing jobs to lose
    assert by_labels(ep.during, stuck, FAULTED, ("resource_type", "api_name")) == before


def test_200_with_extra_fields_is_accepted(suite: Suite) -> None:
    absorbed(suite, None, malformed="extra_fields")


# --- paging faults ------------------------------------------------------------------------


def test_next_token_that_never_ends(suite: Suite) -> None:
    # Every page answered 200: the calls are OK, the listing is what failed.
    outage(suite, "OK", retried=False, cause="raise max_pages", endless_next_token=True)


def test_same_next_token_returned_twice(suite: Suite) -> None:
    outage(suite, "OK", retried=False, cause="NextToken already used", repeat_next_token=True)


def _paged(suite: Suite, since: float) -> bool:
    log = suite.control("GET", f"/_sim/requests?region={FAULTED[1]}")
    return any(r["time"] >= since and "NextToken" in r["params"] for r in log)


def test_duplicate_jobs_across_pages(suite: Suite) -> None:
    ep = absorbed(suite, None, duplicate_across_pages=True)
    assert _paged(suite, ep.since), "the fault needs listings of several pages"


def test_jobs_changing_status_between_pages(suite: Suite) -> None:
    # Mostly finished jobs, so that a page's last job is likely one shown stale.
    ep = absorbed(suite, None, ("Succeeded", "Failed", "Succeeded"), status_flip_between_pages=True)
    assert _paged(suite, ep.since), "the fault needs listings of several pages"


# --- credential faults --------------------------------------------------------------------


def _sts_episode(
    suite: Suite, code: str, make_fault: Callable[[], None], scrapes: int = 4
) -> tuple[procs.Samples, list[str]]:
    base = suite.settle()
    mark = suite.log_mark()
    make_fault()
    samples = suite.wait_for(lambda s: up(s, STS) == 0, "the sts target down")
    assert codes(samples, STS).get(code, 0) > codes(base, STS).get(code, 0)
    for _ in range(scrapes):  # the error repeats on every refresh ...
        time.sleep(CACHE_TTL + 0.05)
        samples = suite.scrape()
        suite.get("/")
    assert up(samples, STS) == 0
    assert codes(samples, STS)[code] >= codes(base, STS).get(code, 0) + scrapes
    assert last_success(samples, STS) == last_success(base, STS)
    assert gauges(samples, STS) == gauges(base, STS)
    assert all(up(samples, t) == 1 for t in (FAULTED, *CONTROLS))
    suite.write_sts(suite.issue_sts(3600))
    suite.wait_for(lambda s: up(s, STS) == 1, "the sts target recovered")
    return samples, suite.log_lines(mark)


def test_wrong_secret_is_logged_once_not_every_scrape(suite: Suite) -> None:
    creds = suite.issue_sts(3600)
    _, logs = _sts_episode(
        suite, "SignatureDoesNotMatch", lambda: suite.write_sts(creds, WRONG_SECRET)
    )
    tag = f"account={STS[0]} region={STS[1]}"
    mentions = [line for line in logs if tag in line and "SignatureDoesNotMatch" in line]
    # ... but is logged once at warning, with the code; repeats only at debug.
    assert [line for line in mentions if "level=warning" in line] and len(
        [line for line in mentions if "level=warning" in line]
    ) == 1
    assert len(mentions) >= 4
    assert not [line for line in logs if "level=error" in line]


def test_expired_sts_token(suite: Suite) -> None:
    # The exporter holds a token that expires (the STS refresh flow itself is issue #5).
    _, logs = _sts_episode(
        suite, "InvalidSecurityToken.Expired", lambda: suite.write_sts(suite.issue_sts(0))
    )
    tag = f"account={STS[0]} region={STS[1]}"
    warnings = [line for line in logs if "level=warning" in line and tag in line]
    assert len(warnings) == 1 and "InvalidSecurityToken.Expired" in warnings[0], warnings


# --- resources ------------------------------------------------------------------------------


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "Threads"):
            out[name] = int(value.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def _storm(suite: Suite, rounds: int, workers: int = 16, per_worker: int = 4) -> int:
    paths = ["/metrics", "/metrics", f"/probe?account={FAULTED[0]}&region={FAULTED[1]}"]

    def hammer(i: int) -> int:
        with loopback.client(timeout=30) as c:
            for j in range(per_worker):
                r = c.get(
                    suite.exporter.url + paths[(i + j) % len(paths)],
                    headers={"X-Prometheus-Scrape-Timeout-Seconds": f"{SCRAPE_TIMEOUT:g}"},
                )
                assert r.status_code == 200
        return per_worker

    done = 0
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(rounds):
            done += sum(pool.map(hammer, range(workers)))
            for _, region in (FAULTED, *CONTROLS):
                suite.mutate(region, new=5, finish=3)
            time.sleep(CACHE_TTL + 0.05)  # past cache_ttl: the next round refreshes again
    return done


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_memory_threads_and_sockets_stay_bounded_through_a_fault_storm(suite: Suite) -> None:
    suite.settle()
    pid = suite.exporter.popen.pid
    # A fault on every target, some absorbed, some failing every refresh. (Retried faults
    # are left out: their backoff would only make the storm slower, not heavier.)
    suite.set_faults(FAULTED[1], status_flip_between_pages=True)
    suite.set_faults(CONTROLS[0][1], duplicate_across_pages=True)
    suite.set_faults(CONTROLS[1][1], repeat_next_token=True)
    suite.set_faults(STS[1], deny="Forbidden.RAM")
    suite.set_faults(HOSTILE[1], malformed="wrong_types")
    _storm(suite, rounds=1)  # warm up: thread pool, connection pools, code label sets
    before = _proc_status(pid)
    done = _storm(suite, rounds=4)
    after = _proc_status(pid)
    samples = suite.settle()
    assert done == 4 * 16 * 4
    # Measured: about 1 MiB per 256 scrapes while the HTTP worker pool grows, then flat.
    assert after["VmRSS"] - before["VmRSS"] < 16 * 1024, (before, after)
    # Threads: the HTTP pool's cap, the refresh pool (4 by default) and a few fixed ones.
    assert after["Threads"] <= MAX_WORKERS + 4 + 8, (before, after)
    # Sockets and files: connections are reused or closed, never leaked.
    assert after["fds"] <= before["fds"] + 8, (before, after)
    for target in SIM_TARGETS:
        truth = suite.truth(target[1])
        assert one(samples, "alb_exporter_jobs_tracked", target) <= len(truth)
        assert gauges(samples, target) == truth_gauges(truth)
    check_request_counts(suite)


# --- secrets (keep last: it checks everything the module produced) ------------------------


def _windows(secret: str, size: int = 16) -> set[str]:
    forms = {secret, percent_encode(secret), percent_encode(percent_encode(secret))}
    return {f[i : i + size] for f in forms for i in range(len(f) - size + 1)}


def test_no_secret_or_token_in_any_log_line_answer_or_error(suite: Suite) -> None:
    for path in ("/", "/-/ready", "/-/healthy", "/probe?account=sts&region=cn-shenzhen"):
        suite.get(path)
    logs = suite.exporter.output()
    assert "level=debug" in logs  # the whole module ran at debug level
    # Error level is for bugs; no fault above is one.
    assert "Traceback" not in logs and "level=error" not in logs
    assert suite.scrapes > 50 and len(suite.answers) > 50
    needles: set[str] = set()
    for secret in suite.secrets:
        assert len(secret) >= 16
        needles |= _windows(secret)
    # Every run of token-like characters in every answer and log line, checked for any
    # 16-character piece of a secret, plain or percent-encoded once or twice.
    runs: set[str] = set()
    for text in (logs, *suite.answers):
        runs.update(re.findall(r"[A-Za-z0-9+/=%._~\-]{16,}", text))
    leaks = {run for run in runs if any(run[i : i + 16] in needles for i in range(len(run) - 15))}
    assert not leaks
