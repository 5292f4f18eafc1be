"""Targets found at run time: a Resource Directory's members and the regions ALB is offered
in (SPEC "Discovery rules"). `rules` is pure (who is watched, when a target goes); `engine`
lists and keeps the known targets, and hands the resolved config to the wiring.

Imports the config and the API side, never Prometheus: outcomes go to a DiscoveryObserver.
"""

from exporter.discovery.engine import (
    ASSUME_ROLE_FAILED,
    SOURCE_DIRECTORY,
    SOURCE_REGIONS,
    Discovery,
    DiscoveryObserver,
    member_account,
)
from exporter.discovery.rules import MISSES_TO_REMOVE

__all__ = [
    "ASSUME_ROLE_FAILED",
    "MISSES_TO_REMOVE",
    "SOURCE_DIRECTORY",
    "SOURCE_REGIONS",
    "Discovery",
    "DiscoveryObserver",
    "member_account",
]
