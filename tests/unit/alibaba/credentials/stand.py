"""What the credentials tests share: keys, configs, and the simulator's STS and
metadata stand-ins behind an httpx transport, driven by a fake clock."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.credentials import CredentialProvider, provider_for
from exporter.alibaba.signing import Credential, make_signer
from exporter.config import AccountConfig, CredentialsConfig
from exporter.errors import ApiError
from exporter.jobs.model import JobQuery
from exporter.simulator import SimRequest, Simulator

KEY_ID = "LTAI5tEXAMPLE1234"
SECRET = "Zx9secretSECRETsecret0123456789"
TOKEN = "CAIS-sts-token-value"
ENV_FULL = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tFROMENV0000",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret",
}
# No HOME (no profile files) and no instance metadata: the chain ends without the network.
NO_NETWORK_SOURCES = {"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}


def account(credentials: CredentialsConfig | None = None) -> AccountConfig:
    return AccountConfig(name="prod", regions=("cn-hangzhou",), credentials=credentials)


def write(path: Path, text: str, mtime_ns: int | None = None) -> Path:
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


# The simulator's STS and metadata stand-ins answer through httpx's transport seam, so
# AssumeRole signatures, token checks and expiry are verified by the same code the
# end-to-end tests run over HTTP. One fake clock drives the simulator and the providers.

ROLE_ARN = "acs:ram::1234567890123456:role/alb-exporter"
OTHER_ROLE_ARN = "acs:ram::6543210987654321:role/alb-reader"
OIDC_PROVIDER_ARN = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c0ffee"
OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9.oidc-token-one.c2lnbmF0dXJl"
OIDC_TOKEN_2 = "eyJhbGciOiJSUzI1NiJ9.oidc-token-two.c2lnbmF0dXJl"
STS_URL = "http://127.0.0.1:9/sts/"
IMDS_URL = "http://127.0.0.1:10"
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Stand:
    """The simulator behind a MockTransport, plus what the providers report."""

    sim: Simulator
    clock: FakeClock
    transport: httpx.MockTransport
    events: list[tuple[str, str, float | None]] = field(default_factory=list)

    def observer(self, source: str, code: str, expiration: float | None) -> None:
        self.events.append((source, code, expiration))

    def calls(self, action: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.sim.identity_calls() if action is None or c["action"] == action]

    def provider(
        self, credentials: CredentialsConfig | None = None, env: dict[str, str] | None = None
    ) -> CredentialProvider:
        return provider_for(
            account(credentials),
            {"ALIBABA_CLOUD_STS_ENDPOINT": STS_URL, **(env or {})},
            observer=self.observer,
            transport=self.transport,
            clock=self.clock,
        )


def sim_transport(sim: Simulator, delay: float = 0.0) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if delay:
            time.sleep(delay)
        answer = sim.handle(
            SimRequest(
                method=request.method,
                target=request.url.raw_path.decode("ascii"),
                headers=tuple(request.headers.items()),
                body=request.read(),
            )
        )
        return httpx.Response(answer.status, headers=list(answer.headers), content=answer.body)

    return httpx.MockTransport(handle)


def oidc_config(token_file: Path, **extra: Any) -> CredentialsConfig:
    return CredentialsConfig(
        type="oidc_role_arn",
        role_arn=ROLE_ARN,
        oidc_provider_arn=OIDC_PROVIDER_ARN,
        oidc_token_file=str(token_file),
        **extra,
    )


def ram_role_config(source: CredentialsConfig | None = None, **extra: Any) -> CredentialsConfig:
    return CredentialsConfig(type="ram_role_arn", role_arn=ROLE_ARN, source=source, **extra)


AK_CONFIG = CredentialsConfig(type="access_key", access_key_id=KEY_ID, access_key_secret=SECRET)


def alb_answer(stand: Stand, credential: Credential) -> str:
    """ "OK", or the error code the ALB stand-in answers a request signed with `credential`."""
    signer = make_signer(
        "v3", lambda: credential, action="ListAsynJobs", version="2020-06-16", clock=stand.clock
    )
    with ListAsynJobsClient(
        "http://127.0.0.1:11/cn-hangzhou/", signer, transport=stand.transport, max_attempts=1
    ) as client:
        try:
            client.list_jobs(JobQuery())
        except ApiError as exc:
            return exc.code
    return "OK"


def levels(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.levelname for r in caplog.records if r.name == "exporter.alibaba.credentials"]


def ecs_env(**extra: str) -> dict[str, str]:
    return {"ALIBABA_CLOUD_ECS_METADATA_ENDPOINT": IMDS_URL, **extra}


def write_cli_config(home: Path, profiles: list[dict[str, Any]], current: str = "") -> Path:
    path = home / ".aliyun" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"current": current or profiles[0]["name"], "profiles": profiles}))
    return path


def write_ini(home: Path, text: str, name: str = "credentials.ini") -> Path:
    path = home / ".alibabacloud" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


OIDC_ENV = {
    "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": OIDC_PROVIDER_ARN,
}
