"""The loopback-only control API under /_sim/: job, fault, time, STS and identity control
for tests and demos, over HTTP, in terms of the Simulator's public methods."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from exporter.simulator.messages import SimRequest, SimResponse, dumps

if TYPE_CHECKING:
    from exporter.simulator.core import Simulator


class _ControlError(Exception):
    """A control request that cannot be served: its HTTP status and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _is_loopback(client: str) -> bool:
    return client in ("::1", "localhost") or client.startswith(("127.", "::ffff:127."))


class Control:
    """Answers /_sim/ requests by calling the simulator it controls."""

    def __init__(self, simulator: Simulator, lock: threading.RLock) -> None:
        self._sim = simulator
        self._lock = lock

    def handle(self, request: SimRequest, path: str, raw_query: str) -> SimResponse:
        """Answer one /_sim/ request: 403 unless from loopback, 400 on bad input."""
        try:
            if not _is_loopback(request.client):
                raise _ControlError(403, "control endpoints are loopback-only")
            query = dict(parse_qsl(raw_query, keep_blank_values=True))
            result = self._result(request.method, path, query, request.body)
            status = 200
        except _ControlError as err:
            status, result = err.status, {"error": str(err)}
        except (ValueError, TypeError, KeyError) as err:
            status, result = 400, {"error": f"{type(err).__name__}: {err}"}
        return SimResponse(status, (("Content-Type", "application/json"),), dumps(result))

    @staticmethod
    def _json_body(body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            value = json.loads(body)
        except ValueError:
            raise _ControlError(400, "the body must be a JSON object") from None
        if not isinstance(value, dict):
            raise _ControlError(400, "the body must be a JSON object")
        return value

    def _result(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> Any:
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_sim/jobs"):
            return self._sim.jobs(query.get("region"))
        if route == ("POST", "/_sim/jobs"):
            data = self._json_body(body)
            region = data.get("region") or self._sim.default_region
            jobs = data.get("jobs")
            if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
                raise _ControlError(400, '"jobs" must be a list of objects')
            with self._lock:
                return {"region": region, "jobs": [self._sim.upsert_job(region, **j) for j in jobs]}
        if route == ("DELETE", "/_sim/jobs"):
            region = query.get("region") or self._sim.default_region
            try:
                self._sim.remove_job(region, query.get("id", ""))
            except KeyError:
                raise _ControlError(404, f"no job {query.get('id')!r} in {region}") from None
            return {"region": region, "removed": query["id"]}
        if route == ("GET", "/_sim/state"):
            return self._sim.state()
        if route == ("GET", "/_sim/requests"):
            return self._sim.requests(query.get("region"))
        if route == ("POST", "/_sim/faults"):
            data = self._json_body(body)
            region = data.pop("region", None)
            self._sim.set_faults(region, **data)
            return self._sim.state()["faults"]
        if route == ("DELETE", "/_sim/faults"):
            self._sim.clear_faults(query.get("region"))
            return self._sim.state()["faults"]
        if route == ("POST", "/_sim/time"):
            data = self._json_body(body)
            unknown = set(data) - {"freeze", "advance"}
            if unknown:
                raise _ControlError(400, f"unknown keys {sorted(unknown)}")
            with self._lock:
                if data.get("freeze") is True:
                    self._sim.freeze()
                elif data.get("freeze") is False:
                    self._sim.unfreeze()
                if data.get("advance"):
                    self._sim.advance(float(data["advance"]))
                return {"now": self._sim.now(), "frozen": self._sim.frozen}
        if route == ("POST", "/_sim/sts"):
            ttl = float(self._json_body(body).get("ttl", 3600))
            key_id, secret, token, expires_at = self._sim.issue_sts(ttl)
            return {
                "AccessKeyId": key_id,
                "AccessKeySecret": secret,
                "SecurityToken": token,
                "Expiration": expires_at,
            }
        if route == ("GET", "/_sim/identity"):
            result = {**self._sim.identity_settings(), "calls": self._sim.identity_calls()}
            if query.get("secrets") == "1":
                # For leak tests: every temporary key issued so far, secrets included.
                with self._lock:
                    result["issued"] = [
                        {"AccessKeyId": key, "AccessKeySecret": secret, "SecurityToken": token}
                        for token, (key, secret, _) in self._sim.sts_tokens.items()
                    ]
            return result
        if route == ("POST", "/_sim/identity"):
            self._sim.set_identity(**self._json_body(body))
            return self._sim.identity_settings()
        if route == ("GET", "/_sim/directory"):
            return {**self._sim.directory(), "requests": self._sim.directory_requests()}
        if route == ("POST", "/_sim/directory"):
            self._sim.set_directory(**self._json_body(body))
            return self._sim.directory()
        if route == ("POST", "/_sim/directory/members"):
            return self._sim.add_member(**self._json_body(body))
        if route == ("PATCH", "/_sim/directory/members"):
            data = self._json_body(body)
            return self._sim.update_member(str(data.pop("account_id")), **data)
        if route == ("DELETE", "/_sim/directory/members"):
            try:
                self._sim.remove_member(query.get("id", ""))
            except KeyError:
                raise _ControlError(404, f"no member {query.get('id')!r}") from None
            return {"removed": query["id"]}
        raise _ControlError(404, f"no control endpoint {method} {path}")
