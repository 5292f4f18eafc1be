"""What exporter.web.guard and exporter.web.server use of uvicorn beyond its documented
API: its h11 protocol's methods and per-request state, its server's loop hooks and
state. A uvicorn release that renames one fails here by name, not as a guard that
silently stops guarding (pyproject pins the minor version these were read from)."""

from __future__ import annotations

import inspect
import logging

import h11
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.server import ServerState

from exporter.web.guard import GuardedH11Protocol


def test_the_h11_protocol_methods_the_guard_overrides_exist_in_uvicorn() -> None:
    overridden = {
        name
        for name, value in vars(GuardedH11Protocol).items()
        if (inspect.isfunction(value) and not name.startswith("_")) or name == "__init__"
    }
    assert overridden, "the guard overrides nothing?"
    missing = {name for name in overridden if not hasattr(H11Protocol, name)}
    assert not missing, f"uvicorn's H11Protocol has no {missing} any more"
    for name in ("handle_events", "on_response_complete", "timeout_keep_alive_handler"):
        assert inspect.isfunction(getattr(H11Protocol, name)), name


def test_the_per_request_state_the_guard_reads_exists() -> None:
    cycle = RequestResponseCycle(
        scope={},  # type: ignore[typeddict-item]
        conn=h11.Connection(h11.SERVER),
        transport=None,  # type: ignore[arg-type]
        flow=FlowControl(None),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test"),
        access_log=False,
        default_headers=[],
        message_event=None,  # type: ignore[arg-type]
        on_response=lambda: None,
    )
    for name in ("response_complete", "keep_alive", "disconnected"):
        assert hasattr(cycle, name), name
    assert hasattr(FlowControl(None), "write_paused")  # type: ignore[arg-type]
    state = ServerState()
    assert isinstance(state.connections, set) and isinstance(state.tasks, set)


def test_the_server_hooks_the_exporter_replaces_exist() -> None:
    for name in ("startup", "main_loop", "shutdown", "on_tick", "serve"):
        assert inspect.iscoroutinefunction(getattr(uvicorn.Server, name)), name
    server = uvicorn.Server(uvicorn.Config(app=lambda *a: None, lifespan="off"))
    for name in ("should_exit", "started", "server_state"):
        assert hasattr(server, name), name
    config = uvicorn.Config(app=lambda *a: None, lifespan="off", http=GuardedH11Protocol)
    config.load()
    assert config.http_protocol_class is GuardedH11Protocol
    assert hasattr(config, "ssl") and hasattr(config, "backlog")
