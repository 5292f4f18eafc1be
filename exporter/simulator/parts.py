"""The parts of the simulator its request handlers share: one lock, the gateway clock and
the state behind them, built once by the `Simulator` facade."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from exporter.simulator.directory import Directory
from exporter.simulator.faults import FaultBoard
from exporter.simulator.gateway import Gateway, Keys
from exporter.simulator.world import World


@dataclass(frozen=True)
class Parts:
    lock: threading.RLock  # one lock for every part: a request sees one instant
    clock: Callable[[], float]  # the gateway clock (real time), not the simulated time
    world: World
    keys: Keys
    faults: FaultBoard
    gateway: Gateway
    directory: Directory  # the Resource Directory, DescribeRegions, member roles
