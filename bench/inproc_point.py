"""One in-process point of `python -m bench --compare`, run by path in a child whose
PYTHONPATH is a revision's checkout, so that `bench.scale` and `exporter` are that
revision's: an App and the simulator in one process, no HTTP.

Prints one JSON line: the series, /metrics and /probe from cache (the exporter's WSGI
app, gzip) p50 and p99 in seconds, and the exporter's CPU per target per refresh: the CPU
time of the scraping thread and of the refresh workers (per-thread clocks, nanosecond
resolution; the simulator's threads are not counted) over one scrape that refreshes every
target and serves the result (the median of `rounds`).

Usage: python bench/inproc_point.py TARGETS ROUNDS SCRAPES
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time

import exporter
from bench import scale
from exporter.web import make_wsgi_app


def _cpu(threads: list[threading.Thread]) -> float:
    total = 0.0
    for thread in threads:
        if thread.ident is not None and thread.is_alive():
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


def _exporter_threads() -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t is threading.main_thread() or t.name.startswith("refresh")
    ]


def main(targets: int, rounds: int, scrapes: int) -> None:
    regions = 1 if targets == 1 else 10
    names = scale.REGIONS[:regions]
    sim = scale.mix_simulator(names, 1000)
    settings = {"cache_ttl": "1h", "max_concurrent_refreshes": 32}
    with scale.in_process_app(sim, max(1, targets // regions), names, **settings) as app:
        wsgi = make_wsgi_app(app.web_hooks())
        plain = scale.wsgi_get(wsgi, gzip=False)
        scale.wsgi_get(wsgi)
        metrics = scale.timed(lambda: scale.wsgi_get(wsgi), scrapes)
        query = f"account=acct000&region={names[0]}"
        scale.wsgi_get(wsgi, "/probe", query=query)
        probe = scale.timed(lambda: scale.wsgi_get(wsgi, "/probe", query=query), scrapes)
        per_target = []
        for _ in range(rounds):
            running = {t.key: t for t in app.refresher.targets()}
            app.refresher.set_targets(running, cache_ttl=0.0)  # every target due
            before = _cpu(_exporter_threads())
            scale.wsgi_get(wsgi)
            per_target.append((_cpu(_exporter_threads()) - before) / targets)
            app.refresher.set_targets(running, cache_ttl=3600.0)
    print(
        json.dumps(
            {
                "exporter": exporter.__file__,
                "series": scale.series(plain),
                "metrics": scale.percentiles(metrics),
                "probe": scale.percentiles(probe),
                "cpu_per_target": statistics.median(per_target),
            }
        )
    )


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:4]))
