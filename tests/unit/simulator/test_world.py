"""Simulated time and the job sets: arrivals, determinism, realism, explicit job control."""

from __future__ import annotations

import re

import pytest

from exporter.simulator import Simulator, SimulatorServer
from tests.unit.simulator.helpers import REGIONS, Job, call, ok


def test_jobs_arrive_and_finish_as_simulated_time_advances(sim: Simulator) -> None:
    before = {j["Id"]: j for j in sim.jobs()}
    processing = [j for j in before.values() if j["Status"] == "Processing"]
    assert processing
    sim.advance(3600)
    after = {j["Id"]: j for j in sim.jobs()}
    new = set(after) - set(before)
    assert 250 < len(new) < 480  # about 6 per minute
    finished = [j for j in processing if after[j["Id"]]["Status"] != "Processing"]
    assert finished
    now_ms = int(sim.now() * 1000)
    for job in after.values():
        if job["Status"] == "Processing":
            assert job["ModifyTime"] == job["CreateTime"]
        else:
            assert job["CreateTime"] < job["ModifyTime"] <= now_ms
    # Stuck jobs: still Processing long after any normal job would have finished.
    stuck = [
        j
        for j in after.values()
        if j["Status"] == "Processing" and now_ms - j["CreateTime"] > 20 * 60_000
    ]
    assert stuck
    sim.advance(6 * 3600)
    later = {j["Id"]: j for j in sim.jobs()}
    assert all(later[j["Id"]]["Status"] == "Processing" for j in stuck)


def test_job_sets_are_deterministic_whatever_the_viewing_pattern() -> None:
    def make(seed: int) -> Simulator:
        s = Simulator(REGIONS, seed=seed, clock=lambda: 1_700_000_000.0)
        s.freeze()
        return s

    one, two, other = make(5), make(5), make(6)
    assert one.jobs() == two.jobs() and one.jobs() != other.jobs()
    for _ in range(10):
        one.advance(60)
        one.jobs()  # looked at every minute ...
    two.advance(600)  # ... or once: the same jobs in the same states
    assert one.jobs() == two.jobs()
    assert one.jobs("cn-shanghai") == two.jobs("cn-shanghai") != one.jobs()


def test_generated_jobs_look_like_alb_jobs(sim: Simulator) -> None:
    jobs = sim.jobs()
    assert 600 < len(jobs) < 850  # two hours at 6 per minute
    prefixes = {
        "loadbalancer": "alb-",
        "listener": "lsn-",
        "servergroup": "sgp-",
        "rule": "rule-",
        "acl": "acl-",
        "securitypolicy": "spy-",
    }
    uuid_upper = re.compile(
        r"^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$"
    )
    for job in jobs:
        assert uuid_upper.match(job["Id"])
        assert re.match(rf"^{prefixes[job['ResourceType']]}[a-z0-9]{{18}}$", job["ResourceId"])
        assert job["OperateType"] in ("Create", "Update", "Delete")
        assert job["ApiName"].startswith(job["OperateType"]) or job["OperateType"] == "Update"
    failed = [j for j in jobs if j["Status"] == "Failed"]
    assert 0.05 < len(failed) / len(jobs) < 0.16
    assert {"Conflict.Lock"} < {j["ErrorCode"] for j in failed}
    assert all(j["ErrorMessage"] for j in failed)
    assert len({(j["ApiName"], j["ResourceType"]) for j in jobs}) >= 15


def test_explicit_job_control(sim: Simulator, server: SimulatorServer) -> None:
    region = "cn-hangzhou"
    now_ms = int(sim.now() * 1000)
    job = sim.upsert_job(
        region,
        Id="JOB-1",
        ApiName="CreateAcl",
        OperateType="Create",
        ResourceType="acl",
        CreateTime=now_ms - 5000,
    )
    assert job["Status"] == "Processing" and job["ModifyTime"] == now_ms - 5000
    assert job["ResourceId"].startswith("acl-")

    def current(job_id: str) -> Job:
        return {j["Id"]: j for j in sim.jobs(region)}[job_id]

    assert current("JOB-1") == job
    sim.advance(3600)
    assert current("JOB-1")["Status"] == "Processing"  # explicit Processing stays so

    failed = sim.set_status(
        region, "JOB-1", "Failed", error_code="QuotaExceeded.AclsNum", error_message="too many"
    )
    assert failed["ErrorCode"] == "QuotaExceeded.AclsNum" and failed["ErrorMessage"] == "too many"
    assert failed["ModifyTime"] == int(sim.now() * 1000)
    assert ok(call(server, {"JobIds.1": "JOB-1"}))["Jobs"] == [failed]
    # A future ModifyTime means "Processing until then".
    later = sim.set_status(region, "JOB-1", "Succeeded", modify_time=sim.now() + 60)
    assert later["Status"] == "Processing" and "ErrorCode" not in later
    sim.advance(60)
    assert current("JOB-1")["Status"] == "Succeeded"
    # A failed job without an ErrorCode (the exporter must label it error_code="").
    bare = sim.upsert_job(region, Id="JOB-2", Status="Failed")
    assert bare["Status"] == "Failed" and "ErrorCode" not in bare
    sim.remove_job(region, "JOB-1")
    assert "JOB-1" not in {j["Id"] for j in sim.jobs(region)}
    with pytest.raises(KeyError):
        sim.set_status(region, "JOB-1", "Failed")
    with pytest.raises(KeyError):
        sim.remove_job(region, "JOB-1")
    with pytest.raises(ValueError):
        sim.upsert_job(region, Id="JOB-3", Stauts="Failed")
    with pytest.raises(ValueError):
        sim.upsert_job(region, Id="JOB-3", Status="Done")
