"""Fixtures of the wiring tests (test_app*.py, test_shards.py): an in-process simulator,
a config path, and the Apps a test started, closed after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import simulator
from exporter.app import App
from tests.unit.appkit import KEY_ID, REGIONS, SECRET


@pytest.fixture
def sim() -> Iterator[simulator.SimulatorServer]:
    alb = simulator.Simulator(
        REGIONS,
        seed=5,
        jobs_per_minute=6,
        history_seconds=600,
        credentials={KEY_ID: SECRET},
    )
    with simulator.SimulatorServer(alb) as server:
        yield server


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    return tmp_path / "config.yaml"


@pytest.fixture
def apps() -> Iterator[list[App]]:
    made: list[App] = []
    yield made
    for app in made:
        app.close()
