"""A clock for tests: it moves only when the test moves it."""

from __future__ import annotations

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z: any fixed instant; whole seconds read well in logs


class FakeClock:
    """Pass it where code takes `clock=` (a callable returning epoch seconds)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
