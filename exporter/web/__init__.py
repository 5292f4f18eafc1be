"""HTTP serving: WSGI routes, landing page, server, exporter-toolkit web config.

Knows nothing of ALB: it is given a collector (the exposition store) and callables.
"""

from exporter.web.guard import Limits
from exporter.web.landing import LandingFailure, LandingInfo, LandingTarget, render_landing
from exporter.web.routes import (
    OtherShard,
    WebHooks,
    check_telemetry_path,
    make_wsgi_app,
    scrape_budget,
)
from exporter.web.server import Server, parse_listen_address, raise_open_files_limit

__all__ = [
    "LandingFailure",
    "LandingInfo",
    "LandingTarget",
    "Limits",
    "OtherShard",
    "Server",
    "WebHooks",
    "check_telemetry_path",
    "make_wsgi_app",
    "parse_listen_address",
    "raise_open_files_limit",
    "render_landing",
    "scrape_budget",
]
