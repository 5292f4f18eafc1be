"""The discovery engine of the running config, through reloads: built when a config
discovers, told of each reloaded one, stopped when a reload turns discovery off.

Each change a round finds is handed to `apply` under the lock the reloads hold, with the
config resolved under that lock: a round and a reload never interleave, and the late news
of an engine a reload stopped are dropped instead of undoing the reload.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from exporter.config import Config
from exporter.discovery.engine import Discovery, DiscoveryObserver


class Discoverer:
    """Owns the engine (or none) of the running config."""

    def __init__(
        self,
        env: Mapping[str, str],
        observer: DiscoveryObserver,
        *,
        lock: threading.RLock,
        apply: Callable[[Config], None],
    ) -> None:
        """`apply(resolved)` makes a round's outcome the running config; it is called
        holding `lock`, the lock the caller holds around `resolve`."""
        self._env = env
        self._observer = observer
        self._lock = lock
        self._apply = apply
        self.engine: Discovery | None = None
        self._running = False

    def resolve(self, cfg: Config, saved: object = None) -> Config:
        """`cfg`, a file's config, with every account's regions concrete; the engine is
        built, told or stopped as `cfg` says. `saved`: a saved discovery for a new engine
        (a restart while the APIs are down serves every known target). The caller holds
        the lock."""
        if not cfg.discovers:
            if self.engine is not None:
                # Not waited for: its round may be waiting for the lock the caller holds.
                self.engine.stop(wait=False)
                self.engine = None
            return cfg
        if self.engine is None:
            self.engine = Discovery(cfg, self._env, self._observer)
            if saved is not None:
                self.engine.restore(saved)
            if self._running:
                self._run(self.engine)
        else:
            self.engine.configure(cfg)
        return self.engine.resolved()

    def start(self) -> None:
        """Rounds in the background from now on, for this engine and any a reload makes."""
        self._running = True
        if self.engine is not None:
            self._run(self.engine)

    def run_once(self) -> None:
        """One round, applied (`--once`)."""
        if self.engine is not None:
            self.engine.run_once()
            self.changed(self.engine)

    def changed(self, engine: Discovery) -> None:
        """`engine` found a change: applied unless a reload replaced or stopped it."""
        with self._lock:
            if engine is self.engine:
                self._apply(engine.resolved())

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()

    def ready(self) -> bool:
        """No discovery, or its first round ran (or a saved one was restored): before
        that the target set is not known."""
        engine = self.engine
        return engine is None or engine.attempted.is_set()

    def discovered(self) -> frozenset[tuple[str, str]]:
        engine = self.engine
        return frozenset() if engine is None else engine.discovered()

    def state_sections(self) -> dict[str, Any]:
        """Discovery's part of the state file."""
        engine = self.engine  # a reload may replace it meanwhile
        return {} if engine is None else {"discovery": engine.snapshot()}

    def _run(self, engine: Discovery) -> None:
        engine.start(functools.partial(self.changed, engine))
