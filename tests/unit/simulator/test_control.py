"""The loopback-only /_sim/ control API: time, jobs, STS keys."""

from __future__ import annotations

import pytest

from exporter.simulator import SimRequest, Simulator, SimulatorServer
from tests.support import loopback
from tests.unit.simulator.helpers import REGIONS, all_pages, call, control, jobs_of, ok


def test_evolution_over_http_time_control(sim: Simulator, server: SimulatorServer) -> None:
    state = control(server, "GET", "/_sim/state")
    assert state["frozen"] is True and state["regions"] == list(REGIONS)
    count = len(control(server, "GET", "/_sim/jobs?region=cn-shanghai"))
    moved = control(server, "POST", "/_sim/time", {"advance": 600})
    assert moved["now"] == pytest.approx(state["now"] + 600)
    assert len(control(server, "GET", "/_sim/jobs?region=cn-shanghai")) > count
    assert control(server, "POST", "/_sim/time", {"freeze": False})["frozen"] is False
    assert sim.now() == pytest.approx(state["now"] + 600, abs=2)
    assert len(jobs_of(all_pages(server, region="cn-shanghai"))) >= count


def test_job_control_over_http(sim: Simulator, server: SimulatorServer) -> None:
    now_ms = int(sim.now() * 1000)
    result = control(
        server,
        "POST",
        "/_sim/jobs",
        {
            "region": "cn-shanghai",
            "jobs": [
                {
                    "Id": "HTTP-1",
                    "Status": "Failed",
                    "ErrorCode": "506",
                    "CreateTime": now_ms - 10_000,
                    "ModifyTime": now_ms - 4000,
                },
            ],
        },
    )
    job = result["jobs"][0]
    assert job["ErrorCode"] == "506" and job["ModifyTime"] == now_ms - 4000
    assert job in control(server, "GET", "/_sim/jobs?region=cn-shanghai")
    bad = loopback.post(server.url + "/_sim/jobs", json={"jobs": [{"Bogus": 1}]})
    assert bad.status_code == 400
    control(server, "DELETE", "/_sim/jobs?region=cn-shanghai&id=HTTP-1")
    assert job not in control(server, "GET", "/_sim/jobs?region=cn-shanghai")
    assert (
        loopback.delete(server.url + "/_sim/jobs?region=cn-shanghai&id=HTTP-1").status_code == 404
    )
    assert loopback.get(server.url + "/_sim/nope").status_code == 404
    sts = control(server, "POST", "/_sim/sts", {"ttl": 60})
    ok(
        call(
            server,
            key=sts["AccessKeyId"],
            secret=sts["AccessKeySecret"],
            token=sts["SecurityToken"],
        )
    )


def test_control_endpoints_are_loopback_only(sim: Simulator) -> None:
    remote = sim.handle(SimRequest("GET", "/_sim/state", client="192.0.2.7"))
    assert remote.status == 403
    assert sim.handle(SimRequest("GET", "/_sim/state", client="::1")).status == 200
