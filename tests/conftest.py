"""Fixtures shared by every test folder: a fake clock and in-process simulator servers.

End-to-end process fixtures (simulator and exporter processes) are in tests/e2e/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from hypothesis import settings

from exporter.simulator import Simulator, SimulatorServer
from tests.support.clock import FakeClock

# Hypothesis' per-example deadline (200 ms) measures the machine, not the code: with both
# cores busy (`make test` runs tests side by side) a slow example failed as Flaky. The
# example counts stay as each test sets them.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock at `tests.support.clock.T0` that moves only by `advance()`."""
    return FakeClock()


@pytest.fixture
def sim_server() -> Iterator[Callable[[Simulator], SimulatorServer]]:
    """`sim_server(simulator)` serves it over loopback HTTP until the test ends."""
    with ExitStack() as stack:
        yield lambda simulator: stack.enter_context(SimulatorServer(simulator))
