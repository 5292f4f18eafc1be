"""The per-account token bucket: pacing, halving on throttling, slow recovery, retry-after,
and its use by the client (one bucket shared by several regions' clients)."""

from __future__ import annotations

import httpx

from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.ratelimit import MIN_RATE_FRACTION, TokenBucket
from exporter.jobs.model import JobQuery


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def bucket(rate: float, t: FakeTime, **kw: float) -> TokenBucket:
    return TokenBucket(rate, clock=t.clock, sleep=t.sleep, **kw)


def test_paces_requests_at_the_rate_after_a_burst() -> None:
    t = FakeTime()
    b = bucket(5, t)
    for _ in range(5):  # the burst: one second's worth
        b.acquire()
    assert t.now == 0
    for _ in range(10):
        b.acquire()
    assert abs(t.now - 2.0) < 1e-9


def test_throttling_halves_the_rate_and_it_recovers_slowly() -> None:
    t = FakeTime()
    b = bucket(4, t, recovery_seconds=60)
    b.throttled(None)
    assert b.rate == 2
    b.throttled(None)
    assert b.rate == 1
    for _ in range(20):
        b.throttled(None)
    assert b.rate == 4 * MIN_RATE_FRACTION
    t.now += 30
    assert 4 * MIN_RATE_FRACTION < b.rate < 4
    t.now += 60
    assert b.rate == 4


def test_retry_after_pauses_every_caller_of_the_bucket() -> None:
    t = FakeTime()
    b = bucket(100, t)
    b.throttled(2.5)
    b.acquire()
    assert t.now >= 2.5


def _transport(throttle_first: int, seen: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if len(seen) <= throttle_first:
            return httpx.Response(
                400,
                json={"Code": "Throttling.User", "Message": "flow control"},
                headers={"x-acs-retry-after": "1000"},
            )
        return httpx.Response(200, json={"Jobs": [], "NextToken": ""})

    return httpx.MockTransport(handler)


def test_clients_sharing_a_bucket_share_its_throttling() -> None:
    t = FakeTime()
    shared = bucket(2, t)
    seen: list[str] = []
    transport = _transport(1, seen)
    clients = [
        ListAsynJobsClient(
            f"http://127.0.0.1:1/{region}/",
            httpx.Auth(),
            transport=transport,
            pacer=shared,
            sleep=t.sleep,
            rng=lambda: 0.0,
        )
        for region in ("cn-hangzhou", "cn-shanghai")
    ]
    for _ in range(3):
        for c in clients:
            c.list_jobs(JobQuery())
    # 6 listings + 1 retry = 7 calls; the first was throttled with retry-after 1 s, which
    # halved the shared rate to 1/s and paused both regions.
    assert len(seen) == 7
    assert {"/cn-hangzhou/", "/cn-shanghai/"} <= set(seen)
    assert t.now >= 1.0 + 4  # the pause, then about one call per second at the halved rate
    assert shared.rate < 2
    for c in clients:
        c.close()
