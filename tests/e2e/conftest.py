"""Process fixtures of the end-to-end tests: simulators and exporters on loopback.

Each process started through these factories is stopped when its module is done, or
earlier by the test: a `procs.Proc` is a context manager. Config files come from
`tests.support.configs.write_config`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import procs


@pytest.fixture(scope="module")
def start_simulator() -> Iterator[procs.Simulators]:
    with procs.Simulators() as simulators:
        yield simulators


@pytest.fixture(scope="module")
def start_exporter() -> Iterator[procs.Exporters]:
    with procs.Exporters() as exporters:
        yield exporters
