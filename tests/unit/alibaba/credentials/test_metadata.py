"""Tests for exporter.alibaba.credentials.metadata: the ECS RAM role from instance
metadata."""

from __future__ import annotations

import httpx
import pytest

from exporter.alibaba.credentials import metadata_base_url, provider_for
from exporter.config import CredentialsConfig
from exporter.errors import CredentialsError
from tests.unit.alibaba.credentials.stand import IMDS_URL, T0, Stand, account, alb_answer, ecs_env


def test_ecs_ram_role_token_flow(stand: Stand) -> None:
    stand.sim.set_identity(imds_role="ExporterRole", imds_v1=False)
    provider = stand.provider(CredentialsConfig(type="ecs_ram_role"), env=ecs_env())

    credential = provider.get()

    assert provider.source == "ecs_ram_role"
    assert [c["action"] for c in stand.calls()] == [
        "PUT /latest/api/token",
        "GET /latest/meta-data/ram/security-credentials/",
        "GET /latest/meta-data/ram/security-credentials/ExporterRole",
    ]
    assert all(c["code"] == "OK" for c in stand.calls())
    assert credential.expiration == T0 + 6 * 3600
    assert alb_answer(stand, credential) == "OK"


def test_ecs_role_name_from_config_or_env_skips_the_lookup(stand: Stand) -> None:
    stand.sim.set_identity(imds_role="ExporterRole")
    stand.provider(
        CredentialsConfig(type="ecs_ram_role", role_name="ExporterRole"), env=ecs_env()
    ).get()
    stand.provider(
        CredentialsConfig(type="ecs_ram_role"),
        env=ecs_env(ALIBABA_CLOUD_ECS_METADATA="ExporterRole"),
    ).get()
    assert [c["action"].rsplit("/", 1)[-1] for c in stand.calls()] == ["token", "ExporterRole"] * 2


def test_ecs_falls_back_to_v1_when_the_token_flow_is_unsupported(stand: Stand) -> None:
    stand.sim.set_identity(imds_role="ExporterRole", imds_v2=False)
    provider = stand.provider(CredentialsConfig(type="ecs_ram_role"), env=ecs_env())
    assert provider.get().security_token
    assert [c["code"] for c in stand.calls()] == ["HTTP404", "OK", "OK"]


def test_ecs_v1_fallback_can_be_disabled(stand: Stand) -> None:
    stand.sim.set_identity(imds_role="ExporterRole", imds_v2=False)
    provider = stand.provider(
        CredentialsConfig(type="ecs_ram_role"), env=ecs_env(ALIBABA_CLOUD_IMDSV1_DISABLED="true")
    )
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_IMDSV1_DISABLED=true forbids"):
        provider.get()
    assert len(stand.calls()) == 1


def test_ecs_without_a_role(stand: Stand) -> None:
    provider = stand.provider(CredentialsConfig(type="ecs_ram_role"), env=ecs_env())
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert str(excinfo.value) == (
        "account prod: ecs_ram_role: ECS instance metadata: no RAM role is attached to this "
        "instance"
    )
    assert stand.events == [("ecs_ram_role", "NoRole", None)]


def test_ecs_metadata_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    events: list[tuple[str, str, float | None]] = []
    provider = provider_for(
        account(CredentialsConfig(type="ecs_ram_role")),
        ecs_env(),
        transport=httpx.MockTransport(refuse),
        observer=lambda *event: events.append(event),
    )
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert str(excinfo.value) == (
        f"account prod: ecs_ram_role: ECS instance metadata {IMDS_URL}: unreachable (ConnectError)"
    )
    assert events == [("ecs_ram_role", "TransportError", None)]


@pytest.mark.parametrize(
    "url",
    ["http://169.254.1.1", "ftp://127.0.0.1", "http://user:pw@127.0.0.1", "https://x/?a=b"],
)
def test_metadata_endpoint_override_is_checked(url: str) -> None:
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_ECS_METADATA_ENDPOINT: "):
        provider_for(
            account(CredentialsConfig(type="ecs_ram_role")),
            {"ALIBABA_CLOUD_ECS_METADATA_ENDPOINT": url},
        )


def test_metadata_defaults_to_the_link_local_service() -> None:
    assert metadata_base_url({}) == "http://100.100.100.200"
    assert metadata_base_url({"ALIBABA_CLOUD_ECS_METADATA_ENDPOINT": "http://[::1]:8/"}) == (
        "http://[::1]:8"
    )
