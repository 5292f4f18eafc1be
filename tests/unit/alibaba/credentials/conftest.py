"""The `stand` fixture: a fresh simulator and fake clock per test."""

from __future__ import annotations

import pytest

from exporter.simulator import Simulator
from tests.unit.alibaba.credentials.stand import KEY_ID, SECRET, FakeClock, Stand, sim_transport


@pytest.fixture
def stand() -> Stand:
    clock = FakeClock()
    sim = Simulator(credentials={KEY_ID: SECRET}, clock=clock)
    return Stand(sim, clock, sim_transport(sim))
