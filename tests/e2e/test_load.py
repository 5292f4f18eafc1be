"""Quick load test: many concurrent scrapers against a real exporter process on the
simulator. No timing assertions (shared CI machines); errors and threads are bounded.

The full run (200 clients for 30 s, with percentiles) is `python -m bench.load`.
"""

from __future__ import annotations

import pytest

from bench import load
from exporter.web.server import MAX_WORKERS

pytestmark = pytest.mark.e2e

# More clients than worker threads: with a thread per connection the exporter's thread
# count would follow the clients; with the pool it stops at MAX_WORKERS.
CLIENTS = MAX_WORKERS + 36
OTHER_THREADS = 10


def test_concurrent_scrapes_succeed_with_bounded_threads() -> None:
    with load.exporter_on_simulator() as exporter:
        result = load.run(exporter.url, exporter.pid, clients=CLIENTS, duration=3.0)
        # Still healthy after the burst.
        assert load.run(exporter.url, exporter.pid, clients=1, duration=0.2).errors == 0
    print(load.report(result))
    assert result.errors == 0, result.error_kinds
    assert result.requests >= CLIENTS  # every client got at least one answer
    # Slack for threads started lazily besides the pool (refresh workers, reload, ...).
    assert result.max_threads <= result.baseline_threads + MAX_WORKERS + OTHER_THREADS
