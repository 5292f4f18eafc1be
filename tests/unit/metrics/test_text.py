"""The job families' own exposition text (exporter.metrics.text, exporter.web.exposition)
is byte for byte prometheus_client's, in every format a scrape can ask for.

The reference is prometheus_client itself: the same registry encoded by its encoder
(which reads the families' samples, built the old way) and by ours.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from exporter.jobs.model import Job
from exporter.jobs.snapshot import Exemplar, HistogramSnapshot, StoreSnapshot
from exporter.jobs.target import TargetStatus
from exporter.metrics.samples import DURATION_KEY_LABELS, ExpositionOptions
from exporter.metrics.self_metrics import SelfMetrics
from exporter.metrics.table import JOB_COLLECTOR_METRICS, MAX_LABEL_VALUE_LENGTH
from exporter.metrics.text import LabelWriter, go_float
from exporter.web.exposition import fast_encoder
from tests.support.exemplars import carried, exemplars
from tests.unit.metrics.fakes import T0, FakeView, mkjob, published

# What Prometheus 2 and 3, curl and promtool send, and the escapings prometheus_client
# knows; `dots` is answered by prometheus_client alone.
ACCEPTS = (
    "",  # curl: the text format 0.0.4
    "text/plain; version=1.0.0; escaping=values",
    "text/plain; version=1.0.0; escaping=allow-utf-8",
    "text/plain; version=1.0.0; escaping=dots",
    "application/openmetrics-text; version=1.0.0; escaping=allow-utf-8",
    # prometheus_client's OpenMetrics `values` escaping rewrites every sample name (U__...).
    "application/openmetrics-text; version=1.0.0; escaping=values",
    "application/openmetrics-text; version=1.0.0; escaping=dots",
    # Prometheus 3's default, which prometheus_client answers with OpenMetrics 1.0.0.
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;"
    "version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
)


@dataclass
class View:
    account: str
    region: str
    snap: StoreSnapshot
    state: TargetStatus

    def snapshot(self) -> StoreSnapshot:
        return self.snap

    def status(self) -> TargetStatus:
        return self.state


def assert_same_bytes(registry: CollectorRegistry) -> None:
    for accept in ACCEPTS:
        encoder, content_type = choose_encoder(accept)
        ours = fast_encoder(content_type, encoder)(registry)
        assert ours == encoder(registry), (accept, content_type)


def render(registry: CollectorRegistry, accept: str) -> str:
    encoder, content_type = choose_encoder(accept)
    return fast_encoder(content_type, encoder)(registry).decode("utf-8")


OPENMETRICS = "application/openmetrics-text; version=1.0.0"


# Label values: plain names and everything that needs escaping or capping.
hostile = st.one_of(
    st.sampled_from(["Succeeded", "Failed", "Processing", "listener", "CreateListener", ""]),
    st.text(alphabet=string.printable + '"\\\n\u00e9\u4e2d\U0001f600\ud800', max_size=12),
    st.text(alphabet='a"\\', min_size=MAX_LABEL_VALUE_LENGTH - 2, max_size=260),
)
numbers = st.one_of(
    st.integers(min_value=0, max_value=10**17),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.1, 1e-7, 123456789.0, 1796138762.475973, 1e21]),
)


def keys(n: int) -> st.SearchStrategy[tuple[str, ...]]:
    return st.tuples(*[hostile] * n)


# Job ids: hostile ones, and ids around the exemplar limit (122 characters with `job_id`).
job_ids = st.one_of(
    hostile,
    st.text(alphabet='ab"\\\n\u00e9\U0001f600', min_size=118, max_size=126),
    st.sampled_from(["j" * 122, "j" * 123, "x\ud800y"]),
)


def exemplar_of(values: st.SearchStrategy[float]) -> st.SearchStrategy[Exemplar]:
    return st.builds(Exemplar, job_ids, values, st.floats(0, 2e9))


@st.composite
def histograms(draw: st.DrawFn) -> HistogramSnapshot:
    bounds = sorted(draw(st.sets(st.floats(0.001, 1e7), min_size=0, max_size=4)))
    counts = draw(
        st.lists(st.integers(0, 1000), min_size=len(bounds) + 1, max_size=len(bounds) + 1)
    )
    cumulative, running = [], 0
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        running += count
        cumulative.append((bound, running))
    n = len(cumulative)
    held = st.none() | exemplar_of(st.floats(0, 1e7))
    examples = draw(st.just(()) | st.lists(held, min_size=n, max_size=n).map(tuple))
    return HistogramSnapshot(tuple(cumulative), draw(st.floats(0, 1e9)), running, examples)


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    job_id, rt, api, resource_id, code = draw(keys(5))
    modified = draw(st.floats(0, 2e9))
    return mkjob(job_id, "Failed", rt, api, "Create", resource_id, T0, modified, code)


@st.composite
def snapshots(draw: st.DrawFn) -> StoreSnapshot:
    def mapping(n: int, values: st.SearchStrategy[object]) -> object:
        return draw(st.dictionaries(keys(n), values, max_size=4))

    def examples(counts: object, n: int) -> object:
        # For some of the counter's label sets, and perhaps one it does not have.
        known = sorted(counts)  # type: ignore[call-overload]
        some = st.sampled_from(known) | keys(n) if known else keys(n)
        return draw(st.dictionaries(some, exemplar_of(numbers), max_size=4))

    finished, failures = mapping(4, numbers), mapping(3, numbers)
    return StoreSnapshot(
        jobs_by_status=mapping(4, numbers),  # type: ignore[arg-type]
        failed=mapping(3, numbers),  # type: ignore[arg-type]
        finished_total=finished,  # type: ignore[arg-type]
        failures_total=failures,  # type: ignore[arg-type]
        finished_exemplars=examples(finished, 4),  # type: ignore[arg-type]
        failures_exemplars=examples(failures, 3),  # type: ignore[arg-type]
        vanished_total=mapping(2, numbers),  # type: ignore[arg-type]
        durations=mapping(3, histograms()),  # type: ignore[arg-type]
        oldest_processing=mapping(2, numbers),  # type: ignore[arg-type]
        recent_failures=tuple(draw(st.lists(jobs(), max_size=3))),
        jobs_tracked=draw(st.integers(0, 10**6)),
        recovered_total=draw(st.integers(0, 10**6)),
        updated_at=T0,
        primed=True,
    )


statuses = st.builds(
    TargetStatus,
    tried=st.booleans(),
    up=st.booleans(),
    last_success=st.one_of(st.none(), numbers),
    refresh_duration=st.one_of(st.none(), st.floats(0, 100)),
)

# Account and region names alike up to the cap, so two targets can share capped labels.
long_name = "x" * MAX_LABEL_VALUE_LENGTH
names = st.one_of(
    st.sampled_from(["prod", "dev", "cn-hangzhou", 'we"ird\\\n']),
    st.just(long_name + "1"),
    st.just(long_name + "2"),
)

options = st.builds(
    ExpositionOptions,
    duration_labels=st.lists(st.sampled_from(DURATION_KEY_LABELS), unique=True).map(tuple),
    disabled=st.frozensets(st.sampled_from(JOB_COLLECTOR_METRICS)),
)


@pytest.mark.slow  # seconds of CPU: left out of `make check`, run by `make test`
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    targets=st.lists(st.tuples(names, names, snapshots(), statuses), max_size=4),
    opts=options,
)
def test_the_job_families_text_is_prometheus_clients(
    targets: list[tuple[str, str, StoreSnapshot, TargetStatus]], opts: ExpositionOptions
) -> None:
    # Configured names are unique per (account, region); capped ones may coincide.
    views = list({(a, r): View(a, r, s, t) for a, r, s, t in targets}.values())
    registry = CollectorRegistry()
    SelfMetrics(registry)  # prometheus_client's own metrics in the same exposition
    registry.register(published(views, opts))
    assert_same_bytes(registry)
    # The exemplar rule, checked apart from the writer: ids whole and within the limit,
    # only those given, never in the text format.
    given = {
        e.job_id
        for _, _, snap, _ in targets
        for e in [
            *snap.finished_exemplars.values(),
            *snap.failures_exemplars.values(),
            *(e for h in snap.durations.values() for e in h.exemplars if e is not None),
        ]
    }
    found, _ = exemplars(render(registry, OPENMETRICS))
    assert {e.job_id for e in found} <= {i for i in given if carried(i)}
    assert exemplars(render(registry, ""))[0] == []


def test_openmetrics_carries_each_counted_jobs_exemplar_the_text_format_none() -> None:
    view = FakeView("prod", "cn-hangzhou")
    registry = CollectorRegistry()
    jobs = published([view])
    registry.register(jobs)
    view.store.update([], [], T0)  # primed: what follows is counted
    longest, too_long = "L" * 122, "T" * 123  # with `job_id`: 128 and 129 characters
    view.store.update(
        [
            mkjob(
                "j # {1}", "Failed", "listener", "CreateListener", "Create", "l", T0, T0 + 5, "E1"
            ),
            mkjob(longest, "Failed", "listener", "CreateListener", "Create", "l", T0, T0 + 4, "E2"),
            mkjob(
                too_long, "Failed", "listener", "CreateListener", "Create", "l", T0, T0 + 6, "E3"
            ),
            mkjob("j2", "Succeeded", "listener", "CreateListener", "Create", "l", T0, T0 + 90.25),
            # Prometheus would store the escapes of this one: left out too.
            mkjob('q"\\', "Failed", "listener", "CreateListener", "Create", "l", T0, T0 + 3, "E4"),
        ],
        [],
        T0 + 100,
    )
    jobs.publish(view)
    om = render(registry, OPENMETRICS)
    at = 'account="prod",api_name="CreateListener"'
    rt = 'region="cn-hangzhou",resource_type="listener"'

    def failures(code: str) -> str:
        return f'alb_async_jobs_failures_total{{{at},error_code="{code}",{rt}}} 1.0'

    assert failures("E1") + ' # {job_id="j # {1}"} 1.0 1700000005.0\n' in om
    assert failures("E2") + f' # {{job_id="{longest}"}} 1.0 1700000004.0\n' in om
    assert failures("E3") + "\n" in om  # over the limit: left out, not cut
    assert failures("E4") + "\n" in om
    finished = f'alb_async_jobs_finished_total{{{at},operate_type="Create",{rt},status='
    # The newest failure of the series is the one over the limit: the series has none.
    assert finished + '"Failed"} 4.0\n' in om
    assert finished + '"Succeeded"} 1.0 # {job_id="j2"} 1.0 1700000090.25\n' in om
    # A bucket's exemplar is the job observed into it, valued at its duration.
    bucket = f"alb_async_job_duration_seconds_bucket{{{at},le="
    assert (
        bucket + f'"+Inf",{rt},status="Succeeded"}} 1.0 # {{job_id="j2"}} 90.25 1700000090.25\n'
        in om
    )
    # The newest job of the Failed 60 s bucket is the one over the limit: none there.
    assert bucket + f'"60.0",{rt},status="Failed"}} 4.0\n' in om
    text = render(registry, "")
    assert exemplars(text)[0] == []
    assert " 1.0 1700000005.0\n" not in text
    assert_same_bytes(registry)


def test_a_kept_render_is_replaced_when_its_target_changes() -> None:
    view = FakeView("prod", "cn-hangzhou")
    other = FakeView("dev", "cn-shanghai")
    registry = CollectorRegistry()
    jobs = published([view, other])
    registry.register(jobs)
    encoder, content_type = choose_encoder("")

    def text() -> bytes:
        return fast_encoder(content_type, encoder)(registry)

    before = text()
    view.store.update(
        [mkjob("j1", "Failed", "listener", "CreateListener", "Create", "lsn-1", T0, T0 + 5, "E1")],
        [],
        T0 + 10,
    )
    assert text() == before  # written when published (after a refresh), not when read
    jobs.publish(view)
    after = text()
    assert after != before
    assert b'error_code="E1"' in after
    assert_same_bytes(registry)
    view.state = TargetStatus(tried=True, up=True, last_success=T0 + 10, refresh_duration=0.5)
    jobs.publish(view)
    assert b'alb_exporter_up{account="prod",region="cn-hangzhou"} 1.0' in text()
    assert_same_bytes(registry)


def test_options_applied_by_a_reload_rewrite_kept_renders() -> None:
    view = FakeView("prod", "cn-hangzhou")
    view.store.update(
        [mkjob("j1", "Succeeded", "listener", "CreateListener", "Create", "lsn-1", T0, T0 + 5)],
        [],
        T0 + 10,
    )
    collector = published([view])
    registry = CollectorRegistry()
    registry.register(collector)
    encoder, content_type = choose_encoder("")
    assert b'api_name="CreateListener",le=' in fast_encoder(content_type, encoder)(registry)
    collector.configure(ExpositionOptions(duration_labels=("status",)))
    narrowed = fast_encoder(content_type, encoder)(registry)
    assert (
        b'alb_async_job_duration_seconds_bucket{account="prod",le="60.0",region="cn-hangzhou",status="Succeeded"}'
        in narrowed
    )
    assert narrowed == encoder(registry)


@pytest.mark.parametrize("renders", [1, 50])
def test_label_strings_kept_never_outgrow_the_last_two_renders(renders: int) -> None:
    # Recent failures bring new job ids on every refresh: their label strings must go.
    writer = LabelWriter(("account", "job_id"))
    for n in range(renders):
        writer.start()
        for i in range(3):
            writer.labels(("prod", f"job-{n}-{i}"))
    assert len(writer) == min(renders, 2) * 3


@pytest.mark.parametrize(
    "value",
    [0, 1, 999_999, 1_000_000, 12_345_678, 10**15, 10**17, -1, -(10**15) + 1, -(10**16), 0.5, 1e-7],
)
def test_values_are_written_as_prometheus_client_writes_them(value: float) -> None:
    assert go_float(value) == floatToGoString(value)  # type: ignore[no-untyped-call]


def test_every_render_of_a_changing_store_is_prometheus_clients() -> None:
    # Renders re-use the lines of families the store published unchanged: each step
    # changes some families and leaves others, and every render must still be exact.
    view = FakeView("prod", "cn-hangzhou")
    registry = CollectorRegistry()
    families = published([view, FakeView("dev", "cn-shanghai")])
    registry.register(families)
    steps = [
        [mkjob("j1", "Processing", "listener", "CreateListener", "Create", "lsn-1", T0, T0)],
        [],  # nothing new: every job family unchanged
        [mkjob("j1", "Succeeded", "listener", "CreateListener", "Create", "lsn-1", T0, T0 + 9)],
        [mkjob("j2", "Failed", "acl", "CreateAcl", "Create", "acl-1", T0 + 1, T0 + 2, "E")],
        [],
    ]
    seen = set()
    for n, jobs in enumerate(steps):
        view.store.update(jobs, [], T0 + 10 + n)
        view.state = TargetStatus(tried=True, up=n % 2 == 0, last_success=T0 + n)
        families.publish(view)
        encoder, content_type = choose_encoder("")
        seen.add(fast_encoder(content_type, encoder)(registry))
        assert_same_bytes(registry)
    assert len(seen) == len(steps)
