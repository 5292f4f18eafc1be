"""Fixtures of the simulator tests: a frozen, seeded Simulator on a shiftable clock, served
over loopback HTTP, and one keep-alive client per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.simulator import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    Simulator,
    SimulatorServer,
)
from tests.support import loopback
from tests.unit.simulator import helpers
from tests.unit.simulator.helpers import KEY, REGIONS, SECRET, ShiftableClock


@pytest.fixture(scope="module", autouse=True)
def _http_client() -> Iterator[None]:
    with loopback.client(timeout=5.0) as client:
        helpers._HTTP.append(client)
        yield
        helpers._HTTP.clear()


@pytest.fixture
def clock() -> ShiftableClock:
    return ShiftableClock()


@pytest.fixture
def sim(clock: ShiftableClock) -> Simulator:
    s = Simulator(
        REGIONS,
        seed=7,
        credentials={KEY: SECRET, DEMO_ACCESS_KEY_ID: DEMO_ACCESS_KEY_SECRET},
        clock=clock,
    )
    s.freeze()  # jobs stand still unless a test advances them; signing still uses real time
    return s


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as srv:
        yield srv
