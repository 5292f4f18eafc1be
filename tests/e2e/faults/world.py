"""The world of the fault suite: the real exporter process against simulator processes whose
fault knobs are switched while everything runs, and the scenario drivers its tests share.
The tests are in test_api_faults.py (API errors, timeouts, credentials) and
test_answer_faults.py (malformed answers, paging, hostile strings, refused connections, a
storm): two modules, each with its own processes (the `suite` fixture in conftest.py), so that
`make test` runs them side by side. Each test asserts what a user of /metrics would see.

One simulator (`sim`) serves five regions, one per target below, and a second one (`sim2`)
serves the `edge` target so that it can be stopped (connection refused) and restarted.
The simulators generate no jobs of their own and their clocks run with the exporter's: the
tests create and finish jobs through the control API, and the simulator's job list is the
truth the exposition is compared with.

Every scrape made through `Suite.scrape` is also checked for the properties that must hold
at all times: HTTP 200 within the scrape timeout, a parseable exposition, and no counter
sample lower than in the previous scrape. The last test of each module checks every answer
and every log line of that module's exporter for secrets.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from prometheus_client.parser import text_string_to_metric_families

from exporter.alibaba.signing import percent_encode
from exporter.metrics.table import MAX_LABEL_VALUE_LENGTH
from tests.support import loopback, procs, promtool

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


def start_sim(
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
    """The failure is logged at error once, naming the cause; repeats (within 5 minutes)
    at debug; and the recovery is logged at info."""
    tag = f"account={FAULTED[0]} region={FAULTED[1]}"
    errors = [line for line in logs if "level=error" in line and tag in line]
    assert len(errors) == 1, errors
    assert code in errors[0]
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
    # promtool lints names and help too; any problem it reports means invalid.
    assert not (found := promtool.problems(text)), found


# --- malformed 200 answers ----------------------------------------------------------------


def malformed(suite: Suite, kind: str, *, cause: str) -> Episode:
    """A well-formed 200 that is not a ListAsynJobs answer: not retried (it would not
    change), counted as MalformedResponse."""
    return outage(suite, "MalformedResponse", retried=False, cause=cause, malformed=kind)


def paged(suite: Suite, since: float) -> bool:
    log = suite.control("GET", f"/_sim/requests?region={FAULTED[1]}")
    return any(r["time"] >= since and "NextToken" in r["params"] for r in log)


# --- credential faults --------------------------------------------------------------------


def sts_episode(
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


# --- resources ------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "Threads"):
            out[name] = int(value.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def storm(suite: Suite, rounds: int, workers: int = 16, per_worker: int = 4) -> int:
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


# --- secrets (each module's last test: it checks everything the module produced) ----------


def _windows(secret: str, size: int = 16) -> set[str]:
    forms = {secret, percent_encode(secret), percent_encode(percent_encode(secret))}
    return {f[i : i + size] for f in forms for i in range(len(f) - size + 1)}


def check_no_secret_in_any_log_line_or_answer(suite: Suite) -> None:
    for path in ("/", "/-/ready", "/-/healthy", "/probe?account=sts&region=cn-shenzhen"):
        suite.get(path)
    logs = suite.exporter.output()
    assert "level=debug" in logs  # the whole module ran at debug level
    # No fault above is a bug: no traceback, and the only errors are the targets' failed
    # refreshes (which the runbook has on-call look for at error level).
    assert "Traceback" not in logs
    errors = [line for line in logs.splitlines() if "level=error" in line]
    assert all(
        re.search(r'msg="refresh of account=\S+ region=\S+ (failed|still failing)', line)
        for line in errors
    ), errors
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
