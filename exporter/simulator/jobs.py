"""The simulated jobs: the catalogue of ALB operations (how often each occurs, how each
fails) and how a region's seeded RNG turns it into a stream of jobs."""

from __future__ import annotations

import math
import random
import string
import uuid
from dataclasses import dataclass, field
from typing import Any

from exporter.wire import FAILED, PROCESSING, SUCCEEDED

_STUCK_PROBABILITY = 0.02
_FAIL_PROBABILITY = 0.10

# A job's fields as the API names them (and as `upsert_job` takes them).
API_FIELDS = (
    "Id",
    "ApiName",
    "OperateType",
    "ResourceType",
    "ResourceId",
    "Status",
    "ErrorCode",
    "ErrorMessage",
    "CreateTime",
    "ModifyTime",
)
_RESOURCE_PREFIX = {
    "loadbalancer": "alb-",
    "listener": "lsn-",
    "servergroup": "sgp-",
    "rule": "rule-",
    "acl": "acl-",
    "securitypolicy": "spy-",
}
_ID_ALPHABET = string.ascii_lowercase + string.digits

_LOCKED = ("Conflict.Lock", "The resource is being modified by another task, try again later.")
_LB_MISSING = ("ResourceNotFound.LoadBalancer", "The specified load balancer does not exist.")
_LB_STATUS = (
    "IncorrectStatus.LoadBalancer",
    "The current status of the load balancer does not support this operation.",
)
_LSN_MISSING = ("ResourceNotFound.Listener", "The specified listener does not exist.")
_SGP_MISSING = ("ResourceNotFound.ServerGroup", "The specified server group does not exist.")
_SGP_STATUS = (
    "IncorrectStatus.ServerGroup",
    "The current status of the server group does not support this operation.",
)
_RULE_MISSING = ("ResourceNotFound.Rule", "The specified forwarding rule does not exist.")
_ACL_MISSING = ("ResourceNotFound.Acl", "The specified ACL does not exist.")


@dataclass(frozen=True)
class _Template:
    api_name: str
    resource_type: str
    operate_type: str
    weight: int  # relative frequency: server-group membership changes dominate real accounts
    errors: tuple[tuple[str, str], ...]  # (ErrorCode, ErrorMessage) a failure picks from
    slowness: float = 1.0  # scales the typical duration (creating a load balancer is slow)


_TEMPLATES = (
    _Template("CreateLoadBalancer", "loadbalancer", "Create", 3, (
        ("506", "AllocateEipAddress Failed"),
        ("QuotaExceeded.LoadBalancersNum", "The number of load balancers exceeds the quota."),
        _LOCKED), slowness=4.0),
    _Template("UpdateLoadBalancerAttribute", "loadbalancer", "Update", 2, (_LB_STATUS, _LOCKED)),
    _Template("DeleteLoadBalancer", "loadbalancer", "Delete", 1,
              (_LB_STATUS, _LB_MISSING, _LOCKED), slowness=2.0),
    _Template("CreateListener", "listener", "Create", 4, (
        ("QuotaExceeded.ListenersNum", "The number of listeners exceeds the quota."),
        _LB_MISSING, _LB_STATUS, _LOCKED)),
    _Template("UpdateListenerAttribute", "listener", "Update", 5, (
        _LSN_MISSING, ("IncorrectStatus.Listener", "The current status of the listener does "
                       "not support this operation."), _LOCKED)),
    _Template("DeleteListener", "listener", "Delete", 1, (_LSN_MISSING, _LOCKED)),
    _Template("CreateServerGroup", "servergroup", "Create", 2, (
        ("QuotaExceeded.ServerGroupsNum", "The number of server groups exceeds the quota."),
        _LOCKED)),
    _Template("AddServersToServerGroup", "servergroup", "Update", 14, (
        ("QuotaExceeded.ServersNum", "The number of backend servers exceeds the quota."),
        _SGP_MISSING, _SGP_STATUS, _LOCKED)),
    _Template("RemoveServersFromServerGroup", "servergroup", "Update", 10, (
        ("ResourceNotFound.BackendServer", "The specified backend server does not exist."),
        _SGP_STATUS, _LOCKED)),
    _Template("CreateRule", "rule", "Create", 5, (
        ("QuotaExceeded.RulesNum", "The number of forwarding rules exceeds the quota."),
        _LSN_MISSING, _LOCKED)),
    _Template("UpdateRuleAttribute", "rule", "Update", 3, (_RULE_MISSING, _LOCKED)),
    _Template("DeleteRule", "rule", "Delete", 2, (_RULE_MISSING, _LOCKED)),
    _Template("CreateAcl", "acl", "Create", 1, (
        ("QuotaExceeded.AclsNum", "The number of ACLs exceeds the quota."), _LOCKED)),
    _Template("AddEntriesToAcl", "acl", "Update", 3, (
        ("QuotaExceeded.AclEntriesNum", "The number of ACL entries exceeds the quota."),
        _ACL_MISSING, _LOCKED)),
    _Template("RemoveEntriesFromAcl", "acl", "Update", 2, (_ACL_MISSING, _LOCKED)),
    _Template("CreateSecurityPolicy", "securitypolicy", "Create", 1, (
        ("QuotaExceeded.SecurityPoliciesNum", "The number of security policies exceeds the "
         "quota."), _LOCKED)),
    _Template("UpdateSecurityPolicyAttribute", "securitypolicy", "Update", 1, (
        ("ResourceNotFound.SecurityPolicy", "The specified security policy does not exist."),
        _LOCKED)),
    _Template("DeleteSecurityPolicy", "securitypolicy", "Delete", 1, (
        ("ResourceInUse.SecurityPolicy", "The security policy is in use by a listener."),
        _LOCKED)),
)  # fmt: skip
_WEIGHTS = [t.weight for t in _TEMPLATES]


@dataclass
class SimJob:
    """One job and its fate: Processing until `finish_ms`, then `outcome` (never if None)."""

    id: str
    api_name: str
    operate_type: str
    resource_type: str
    resource_id: str
    create_ms: int
    finish_ms: int | None
    outcome: str = SUCCEEDED
    error_code: str | None = None
    error_message: str | None = None
    explicit: bool = False  # set through the test API: never dropped by retention

    def status(self, now_ms: int) -> str:
        if self.finish_ms is None or now_ms < self.finish_ms:
            return PROCESSING
        return self.outcome

    def view(self, now_ms: int) -> dict[str, Any]:
        """The job as the API shows it at `now_ms` (times in epoch ms)."""
        status = self.status(now_ms)
        out: dict[str, Any] = {
            "Id": self.id,
            "ApiName": self.api_name,
            "OperateType": self.operate_type,
            "ResourceType": self.resource_type,
            "ResourceId": self.resource_id,
            "Status": status,
        }
        # Like the API: the error fields exist on failed jobs only.
        if status == FAILED:
            if self.error_code is not None:
                out["ErrorCode"] = self.error_code
            if self.error_message is not None:
                out["ErrorMessage"] = self.error_message
        out["CreateTime"] = self.create_ms
        out["ModifyTime"] = self.create_ms if status == PROCESSING else self.finish_ms
        return out


@dataclass
class Region:
    """One region's simulated account: its jobs, the RNG they come from, its counters."""

    name: str
    rng: random.Random
    next_arrival_ms: int
    jobs: dict[str, SimJob] = field(default_factory=dict)
    # `jobs` in listing order and their negated CreateTimes (ascending, for bisect), built
    # on demand by `World.listing`; every change to `jobs` must reset `listing` to None.
    listing: list[SimJob] | None = None
    listing_keys: list[int] = field(default_factory=list)
    pools: dict[str, list[str]] = field(default_factory=dict)  # live resource ids per type
    last_prune_ms: int = 0
    requests: int = 0
    fault_counter: int = 0  # authenticated requests since the faults last changed
    last_params: dict[str, str] | None = None


def listing_order(job: SimJob) -> tuple[int, str]:
    # The listing order: newest first, ties by Id, so that paging is deterministic.
    return (-job.create_ms, job.id)


def new_job_id(rng: random.Random) -> str:
    # Job ids look like 365F4154-92F6-4AE4-92F8-7FF34B5xxxxx: an upper-case UUID.
    return str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()


def new_resource_id(rng: random.Random, resource_type: str) -> str:
    prefix = _RESOURCE_PREFIX.get(resource_type, "res-")
    return prefix + "".join(rng.choice(_ID_ALPHABET) for _ in range(18))


def _pick_resource(state: Region, template: _Template) -> str:
    # Jobs on one account keep touching the same resources: updates and deletes pick a
    # resource created earlier, creates add one, deletes retire one.
    pool = state.pools.setdefault(template.resource_type, [])
    rng = state.rng
    if template.operate_type == "Create" or not pool:
        new_id = new_resource_id(rng, template.resource_type)
        if template.operate_type != "Delete":
            pool.append(new_id)
            del pool[:-50]
        return new_id
    index = rng.randrange(len(pool))
    if template.operate_type == "Delete":
        return pool.pop(index)
    return pool[index]


def generate(state: Region, create_ms: int) -> SimJob:
    """The region's next job, created at `create_ms`, drawn from the region's RNG."""
    rng = state.rng
    template = rng.choices(_TEMPLATES, weights=_WEIGHTS)[0]
    job = SimJob(
        id=new_job_id(rng),
        api_name=template.api_name,
        operate_type=template.operate_type,
        resource_type=template.resource_type,
        resource_id=_pick_resource(state, template),
        create_ms=create_ms,
        finish_ms=None,
    )
    fate = rng.random()
    if fate < _STUCK_PROBABILITY:
        return job  # stays Processing until retention forgets it
    if fate < _STUCK_PROBABILITY + _FAIL_PROBABILITY:
        seconds = min(300.0, max(1.0, rng.lognormvariate(math.log(8.0), 0.8)))
        job.outcome = FAILED
        job.error_code, job.error_message = rng.choice(template.errors)
    else:
        median = 12.0 * template.slowness
        seconds = min(900.0, max(1.0, rng.lognormvariate(math.log(median), 0.8)))
    job.finish_ms = create_ms + int(seconds * 1000)
    return job
