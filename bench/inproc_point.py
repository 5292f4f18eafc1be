"""One revision's side of `python -m bench --compare --inproc`, run by path in a child
whose PYTHONPATH is that revision's checkout, so that `bench.scale` and `exporter` are
that revision's: an App and the simulator in one process, no HTTP.

The parent runs one such child per revision at the same time and sends each measurement
to them in turn (old, new, new, old, ...): this machine's speed moves by up to 1.7x for
a second or more at a time (other tenants of the host), and a measure taken while the
other revision waits would put such a spell on one side only.

Protocol, a line each way: the child prints `{"exporter": ..., "series": N}` once its
first complete data is served, then answers each command with one JSON number:
- `metrics`: the seconds of one /metrics from cache (the exporter's WSGI app, gzip);
- `probe`: the same for one target's /probe;
- `round`: the exporter's CPU per target of one scrape that refreshes every target and
  serves the result: the CPU time of the scraping thread and of the refresh workers
  (per-thread clocks, nanosecond resolution; the simulator's threads are not counted);
- `quit`: ends the child.

Usage: python bench/inproc_point.py TARGETS
"""

from __future__ import annotations

import json
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


def _answer(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _setup_process() -> None:
    # The revision's process-wide settings, as its entry point makes them (see
    # `exporter.cli.setup_process`); a revision from before that function only turned
    # `_created` series off.
    from exporter import cli

    setup = getattr(cli, "setup_process", None)
    if setup is not None:
        setup()
    else:
        from prometheus_client import disable_created_metrics

        disable_created_metrics()  # type: ignore[no-untyped-call]


def main(targets: int) -> None:
    _setup_process()
    regions = 1 if targets == 1 else 10
    names = scale.REGIONS[:regions]
    sim = scale.mix_simulator(names, 1000)
    settings = {"cache_ttl": "1h", "max_concurrent_refreshes": 32}
    with scale.in_process_app(sim, max(1, targets // regions), names, **settings) as app:
        wsgi = make_wsgi_app(app.web_hooks())
        plain = scale.wsgi_get(wsgi, gzip=False)
        query = f"account=acct000&region={names[0]}"
        scale.wsgi_get(wsgi)
        scale.wsgi_get(wsgi, "/probe", query=query)
        _answer({"exporter": exporter.__file__, "series": scale.series(plain)})

        def timed(path: str, query: str = "") -> float:
            started = time.perf_counter()
            scale.wsgi_get(wsgi, path, query=query)
            return time.perf_counter() - started

        def one_round() -> float:
            running = {t.key: t for t in app.refresher.targets()}
            app.refresher.set_targets(running, cache_ttl=0.0)  # every target due
            before = _cpu(_exporter_threads())
            scale.wsgi_get(wsgi)
            spent = (_cpu(_exporter_threads()) - before) / targets
            app.refresher.set_targets(running, cache_ttl=3600.0)
            return spent

        commands = {
            "metrics": lambda: timed("/metrics"),
            "probe": lambda: timed("/probe", query),
            "round": one_round,
        }
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            _answer(commands[command]())


if __name__ == "__main__":
    main(int(sys.argv[1]))
