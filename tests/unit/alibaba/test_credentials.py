"""Tests for exporter.credentials: static keys, env, the default chain, STS/OIDC/ECS/URI
providers, profiles, refresh timing, single-flight and backoff."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from exporter.alibaba.client import ListAsynJobsClient
from exporter.alibaba.credentials import (
    CredentialProvider,
    EnvProvider,
    StaticProvider,
    metadata_base_url,
    provider_for,
    sts_endpoint,
)
from exporter.alibaba.signing import Credential, make_signer
from exporter.config import AccountConfig, CredentialsConfig, is_loopback_host, parse, summary
from exporter.errors import ApiError, ConfigError, CredentialsError
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


# --- StaticProvider --------------------------------------------------------------------


def test_static_inline() -> None:
    provider = StaticProvider(CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET))

    assert provider.source == "static"
    assert provider.get() == Credential(KEY_ID, SECRET, None)
    assert provider.expiration() is None


def test_static_inline_with_token() -> None:
    config = CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET, security_token=TOKEN)
    assert StaticProvider(config).get() == Credential(KEY_ID, SECRET, TOKEN)


def test_static_files_are_stripped(tmp_path: Path) -> None:
    config = CredentialsConfig(
        access_key_id_file=str(write(tmp_path / "id", f"{KEY_ID}\n")),
        access_key_secret_file=str(write(tmp_path / "secret", f"  {SECRET}\r\n\n")),
        security_token_file=str(write(tmp_path / "token", f"{TOKEN}\n")),
    )
    assert StaticProvider(config).get() == Credential(KEY_ID, SECRET, TOKEN)


def test_static_mixes_inline_and_files(tmp_path: Path) -> None:
    config = CredentialsConfig(
        access_key_id=KEY_ID, access_key_secret_file=str(write(tmp_path / "s", SECRET))
    )
    assert StaticProvider(config).get() == Credential(KEY_ID, SECRET, None)


def test_static_file_rotation_is_picked_up(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "secret", "old-secret\n", mtime_ns=1_700_000_000_000_000_000)
    provider = StaticProvider(
        CredentialsConfig(access_key_id=KEY_ID, access_key_secret_file=str(secret_file))
    )
    assert provider.get().access_key_secret == "old-secret"

    write(secret_file, "new-secret\n", mtime_ns=1_700_000_060_000_000_000)

    assert provider.get().access_key_secret == "new-secret"


def test_static_file_is_not_reread_while_unchanged(tmp_path: Path) -> None:
    mtime = 1_700_000_000_000_000_000
    secret_file = write(tmp_path / "secret", "secret-one\n", mtime_ns=mtime)
    provider = StaticProvider(
        CredentialsConfig(access_key_id=KEY_ID, access_key_secret_file=str(secret_file))
    )
    assert provider.get().access_key_secret == "secret-one"

    # Same inode, size and mtime: the cached value stands (no read per request).
    write(secret_file, "secret-two\n", mtime_ns=mtime)

    assert provider.get().access_key_secret == "secret-one"


def test_static_kubernetes_style_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    # A mounted Secret: key -> ..data/key, ..data -> ..<timestamp>; updates swap ..data.
    mtime = 1_700_000_000_000_000_000
    for version, value in (("..v1", "first-secret"), ("..v2", "second-secret")):
        (tmp_path / version).mkdir()
        write(tmp_path / version / "access_key_secret", f"{value}\n", mtime_ns=mtime)
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "access_key_secret").symlink_to("..data/access_key_secret")
    provider = StaticProvider(
        CredentialsConfig(
            access_key_id=KEY_ID, access_key_secret_file=str(tmp_path / "access_key_secret")
        )
    )
    assert provider.get().access_key_secret == "first-secret"

    (tmp_path / "..data_tmp").symlink_to("..v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    assert provider.get().access_key_secret == "second-secret"


def test_static_missing_file_names_key_and_path(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "secret", SECRET)
    provider = StaticProvider(
        CredentialsConfig(access_key_id=KEY_ID, access_key_secret_file=str(secret_file)),
        context="account prod: credentials",
    )
    provider.get()
    secret_file.unlink()

    with pytest.raises(CredentialsError) as excinfo:
        provider.get()

    assert str(excinfo.value) == (
        f'account prod: credentials.access_key_secret_file: cannot read "{secret_file}": '
        "No such file or directory"
    )


def test_static_empty_file_is_an_error(tmp_path: Path) -> None:
    id_file = write(tmp_path / "id", "\n \n")
    provider = StaticProvider(
        CredentialsConfig(access_key_id_file=str(id_file), access_key_secret=SECRET)
    )
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert str(excinfo.value) == f'credentials.access_key_id_file: "{id_file}" is empty'


def test_static_error_never_contains_file_contents(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(SECRET.encode() + b"\xff\n")
    provider = StaticProvider(
        CredentialsConfig(
            access_key_id=KEY_ID, access_key_secret=SECRET, security_token_file=str(token_file)
        )
    )
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert (
        str(excinfo.value) == f'credentials.security_token_file: "{token_file}" is not UTF-8 text'
    )
    assert SECRET not in str(excinfo.value)


def test_static_requires_id_and_secret() -> None:
    with pytest.raises(CredentialsError) as excinfo:
        StaticProvider(CredentialsConfig(access_key_id=KEY_ID), context="account a: credentials")
    assert str(excinfo.value) == (
        "account a: credentials: both access_key_id (or access_key_id_file) and "
        "access_key_secret (or access_key_secret_file) are required"
    )
    assert KEY_ID not in str(excinfo.value)


# --- EnvProvider -----------------------------------------------------------------------


def test_env_provider() -> None:
    provider = EnvProvider(ENV_FULL)
    assert provider.source == "env"
    assert provider.get() == Credential("LTAI5tFROMENV0000", "env-secret", None)
    assert provider.expiration() is None


def test_env_provider_with_token() -> None:
    env = {**ENV_FULL, "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN}
    assert EnvProvider(env).get().security_token == TOKEN
    assert (
        EnvProvider({**ENV_FULL, "ALIBABA_CLOUD_SECURITY_TOKEN": ""}).get().security_token is None
    )


def test_env_provider_reads_the_mapping_on_each_call() -> None:
    env = dict(ENV_FULL)
    provider = EnvProvider(env)
    env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = "rotated"
    assert provider.get().access_key_secret == "rotated"


def test_env_provider_missing_variable() -> None:
    provider = EnvProvider({"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID})
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert str(excinfo.value) == "environment: ALIBABA_CLOUD_ACCESS_KEY_SECRET not set"


def test_env_provider_defaults_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tPROCESS0000")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "process-secret")
    monkeypatch.delenv("ALIBABA_CLOUD_SECURITY_TOKEN", raising=False)
    assert EnvProvider().get() == Credential("LTAI5tPROCESS0000", "process-secret", None)


# --- provider_for ----------------------------------------------------------------------


def test_explicit_config_wins_over_env() -> None:
    config = CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET)
    provider = provider_for(account(config), ENV_FULL)
    assert provider.source == "static"
    assert provider.get() == Credential(KEY_ID, SECRET, None)


def test_env_when_no_config() -> None:
    provider = provider_for(account(), ENV_FULL)
    assert provider.source == "env"
    assert provider.get().access_key_id == "LTAI5tFROMENV0000"


def test_provider_for_errors_name_the_account(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "secret", SECRET)
    config = CredentialsConfig(access_key_id=KEY_ID, access_key_secret_file=str(secret_file))
    provider = provider_for(account(config), {})
    secret_file.unlink()
    with pytest.raises(
        CredentialsError, match=r"^account prod: credentials\.access_key_secret_file"
    ):
        provider.get()


def test_no_source_lists_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), {**NO_NETWORK_SOURCES, "HOME": str(tmp_path)})
    assert str(excinfo.value) == (
        "account prod: no credentials found; tried: config 'credentials' (not set), "
        "environment ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET (not set), "
        "OIDC ALIBABA_CLOUD_ROLE_ARN/ALIBABA_CLOUD_OIDC_PROVIDER_ARN/"
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE (not set), "
        f'CLI profile "{tmp_path}/.aliyun/config.json" (not found), '
        f'credentials file "{tmp_path}/.alibabacloud/credentials.ini" (not found), '
        f'credentials file "{tmp_path}/.alibabacloud/credentials" (not found), '
        "ECS instance metadata (disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED), "
        "ALIBABA_CLOUD_CREDENTIALS_URI (not set)"
    )


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID}, "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}, "ALIBABA_CLOUD_ACCESS_KEY_ID"),
        (
            {"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""},
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        ),
    ],
)
def test_half_set_environment_says_which_half_and_no_value(
    env: dict[str, str], missing: str
) -> None:
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), {**env, **NO_NETWORK_SOURCES})
    message = str(excinfo.value)
    assert message.startswith(
        "account prod: no credentials found; tried: config 'credentials' (not set), "
        "environment ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET "
        f"({missing} not set), OIDC "
    )
    assert KEY_ID not in message and SECRET not in message


def test_providers_satisfy_the_protocol() -> None:
    # Checked by mypy: assignment to the protocol type fails to type-check otherwise.
    providers: list[CredentialProvider] = [
        StaticProvider(CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET)),
        EnvProvider(ENV_FULL),
    ]
    assert [p.source for p in providers] == ["static", "env"]


def test_credentials_module_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, exporter.alibaba.credentials; "
        "sys.exit(1 if any(m.startswith('prometheus_client') for m in sys.modules) else 0)"
    )
    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, check=False, timeout=60)
    assert result.returncode == 0


# =========================================================================================
# Temporary credentials: STS, OIDC/RRSA, ECS metadata, credentials URI, profiles.
# The simulator's STS and metadata stand-ins answer through httpx's transport seam, so
# AssumeRole signatures, token checks and expiry are verified by the same code the
# end-to-end tests run over HTTP. One fake clock drives the simulator and the providers.
# =========================================================================================

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


@pytest.fixture
def stand() -> Stand:
    clock = FakeClock()
    sim = Simulator(credentials={KEY_ID: SECRET}, clock=clock)
    return Stand(sim, clock, sim_transport(sim))


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


# --- OIDC / RRSA -------------------------------------------------------------------------


def test_oidc_assumes_the_role_with_the_token_from_the_file(stand: Stand, tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", OIDC_TOKEN + "\n")
    stand.sim.set_identity(oidc_tokens=[OIDC_TOKEN])
    provider = stand.provider(oidc_config(token_file, role_session_name="exporter-prod"))

    credential = provider.get()

    assert provider.source == "oidc_role_arn"
    assert credential.security_token and credential.access_key_id.startswith("STS.")
    (call,) = stand.calls("AssumeRoleWithOIDC")
    assert call["role_arn"] == ROLE_ARN and call["session_name"] == "exporter-prod"
    assert call["token_sha256"] == hashlib.sha256(OIDC_TOKEN.encode()).hexdigest()[:16]
    assert call["caller"] is None  # unsigned
    # Default DurationSeconds is 1h; the simulator grants what is asked for.
    assert credential.expiration == provider.expiration() == T0 + 3600
    assert stand.events == [("oidc_role_arn", "OK", T0 + 3600)]
    assert alb_answer(stand, credential) == "OK"


def test_oidc_token_file_is_reread_on_every_refresh(stand: Stand, tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", OIDC_TOKEN)
    stand.sim.set_identity(oidc_tokens=[OIDC_TOKEN], sts_ttl=60)
    provider = stand.provider(oidc_config(token_file))
    first = provider.get()

    # The kubelet rotates the projected token; the old one is no longer accepted.
    write(token_file, OIDC_TOKEN_2)
    stand.sim.set_identity(oidc_tokens=[OIDC_TOKEN_2])
    stand.clock.advance(41)  # a third of the 60 s lifetime left: due for refresh

    second = provider.get()

    assert second.access_key_id != first.access_key_id
    fingerprints = [c["token_sha256"] for c in stand.calls("AssumeRoleWithOIDC")]
    assert fingerprints == [
        hashlib.sha256(t.encode()).hexdigest()[:16] for t in (OIDC_TOKEN, OIDC_TOKEN_2)
    ]


def test_refresh_happens_ahead_of_expiry_and_not_before(stand: Stand, tmp_path: Path) -> None:
    stand.sim.set_identity(sts_ttl=3600)
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    first = provider.get()

    stand.clock.advance(3600 - 15 * 60 - 1)  # 15 min + 1 s before expiry: still fresh
    assert provider.get() is first
    stand.clock.advance(1)  # 15 min left: refreshed
    assert provider.get() is not first
    assert len(stand.calls("AssumeRoleWithOIDC")) == 2


def test_short_lived_credentials_refresh_at_two_thirds_of_their_life(
    stand: Stand, tmp_path: Path
) -> None:
    stand.sim.set_identity(sts_ttl=30)
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    first = provider.get()
    stand.clock.advance(19.9)
    assert provider.get() is first
    stand.clock.advance(0.2)
    assert provider.get() is not first


def test_missing_token_file_is_a_clear_error_and_counted(stand: Stand, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    provider = stand.provider(oidc_config(missing))

    with pytest.raises(CredentialsError) as excinfo:
        provider.get()

    assert str(excinfo.value) == (
        f'account prod: oidc_role_arn: cannot read the OIDC token file "{missing}": '
        "No such file or directory"
    )
    assert stand.events == [("oidc_role_arn", "TokenFileError", None)]
    assert stand.calls() == []  # STS never asked


def test_oidc_rejected_token_is_reported_without_the_token(stand: Stand, tmp_path: Path) -> None:
    stand.sim.set_identity(oidc_tokens=[OIDC_TOKEN_2])
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))

    with pytest.raises(CredentialsError) as excinfo:
        provider.get()

    message = str(excinfo.value)
    assert message.startswith(
        f"account prod: oidc_role_arn: role {ROLE_ARN}: STS AssumeRoleWithOIDC failed: "
        "AuthenticationFail.OIDCToken.Invalid: "
    )
    assert OIDC_TOKEN not in message
    assert stand.events == [("oidc_role_arn", "AuthenticationFail.OIDCToken.Invalid", None)]


def test_sts_messages_that_echo_a_secret_are_scrubbed(tmp_path: Path) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        body = {"Code": "InvalidParameter", "Message": f"bad token {OIDC_TOKEN}", "RequestId": "R1"}
        return httpx.Response(400, json=body)

    provider = provider_for(
        account(oidc_config(write(tmp_path / "t", OIDC_TOKEN))),
        {"ALIBABA_CLOUD_STS_ENDPOINT": STS_URL},
        transport=httpx.MockTransport(handle),
    )
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert str(excinfo.value).endswith(
        "InvalidParameter: bad token <redacted> (HTTP 400, RequestId R1)"
    )


def test_oidc_parameters_travel_in_the_body_not_the_url(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(400, json={"Code": "NoPermission", "Message": "denied"})

    provider = provider_for(
        account(oidc_config(write(tmp_path / "t", OIDC_TOKEN), policy='{"Version": "1"}')),
        {"ALIBABA_CLOUD_STS_ENDPOINT": STS_URL},
        transport=httpx.MockTransport(handle),
    )
    with pytest.raises(CredentialsError):
        provider.get()
    (request,) = seen
    assert request.method == "POST" and str(request.url) == STS_URL
    form = dict(parse_qsl(request.read().decode()))
    assert form["Action"] == "AssumeRoleWithOIDC" and form["OIDCToken"] == OIDC_TOKEN
    assert form["Policy"] == '{"Version": "1"}' and form["DurationSeconds"] == "3600"
    assert "Signature" not in form and "AccessKeyId" not in form


# --- AssumeRole --------------------------------------------------------------------------


def test_assume_role_with_an_access_key(stand: Stand) -> None:
    provider = stand.provider(
        ram_role_config(AK_CONFIG, external_id="ext-1234", duration=900.0),
        env={"ALIBABA_CLOUD_STS_ENDPOINT": STS_URL},
    )

    credential = provider.get()

    (call,) = stand.calls("AssumeRole")
    assert call["caller"] == KEY_ID and call["code"] == "OK"
    assert credential.expiration == T0 + 900
    assert alb_answer(stand, credential) == "OK"


def test_assume_role_wrong_secret_is_reported(stand: Stand) -> None:
    bad = CredentialsConfig(access_key_id=KEY_ID, access_key_secret="wrong-secret-value")
    provider = stand.provider(ram_role_config(bad))
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert "STS AssumeRole failed: SignatureDoesNotMatch" in str(excinfo.value)
    assert "wrong-secret-value" not in str(excinfo.value)
    assert stand.events == [("ram_role_arn", "SignatureDoesNotMatch", None)]


def test_role_that_cannot_be_assumed(stand: Stand) -> None:
    stand.sim.set_identity(deny_roles=[ROLE_ARN])
    provider = stand.provider(ram_role_config(AK_CONFIG))
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert str(excinfo.value).startswith(
        f"account prod: ram_role_arn: role {ROLE_ARN}: STS AssumeRole failed: NoPermission: "
    )


def test_assume_role_chained_on_oidc(stand: Stand, tmp_path: Path) -> None:
    stand.sim.set_identity(sts_ttl=60)
    provider = stand.provider(ram_role_config(oidc_config(write(tmp_path / "t", OIDC_TOKEN))))

    credential = provider.get()

    oidc_calls, role_calls = stand.calls("AssumeRoleWithOIDC"), stand.calls("AssumeRole")
    assert len(oidc_calls) == 1 and len(role_calls) == 1
    # AssumeRole was signed with the OIDC session's STS key (and its token).
    assert role_calls[0]["caller"].startswith("STS.")
    assert role_calls[0]["caller"] != credential.access_key_id
    assert [e[:2] for e in stand.events] == [("oidc_role_arn", "OK"), ("ram_role_arn", "OK")]
    assert alb_answer(stand, credential) == "OK"

    # Two more refresh rounds: each refreshes both links exactly once.
    for _ in range(2):
        stand.clock.advance(41)
        assert provider.get().access_key_id != credential.access_key_id
        credential = provider.get()
    assert len(stand.calls("AssumeRoleWithOIDC")) == 3
    assert len(stand.calls("AssumeRole")) == 3


def test_assume_role_on_the_default_chain(stand: Stand) -> None:
    provider = stand.provider(ram_role_config(None), env=ENV_FULL | {"X": "1"})
    stand.sim.credentials["LTAI5tFROMENV0000"] = "env-secret"
    provider.get()
    assert stand.calls("AssumeRole")[0]["caller"] == "LTAI5tFROMENV0000"


def recording_transport(stand: Stand, forms: list[dict[str, str]]) -> httpx.MockTransport:
    """The stand's simulator, recording the form of every STS request on the way."""
    inner = sim_transport(stand.sim)

    def handle(request: httpx.Request) -> httpx.Response:
        forms.append(dict(parse_qsl(request.read().decode())))
        return inner.handle_request(request)

    return httpx.MockTransport(handle)


def test_assume_role_external_id_from_a_file_is_reread_when_it_changes(
    stand: Stand, tmp_path: Path
) -> None:
    forms: list[dict[str, str]] = []
    stand.transport = recording_transport(stand, forms)
    stand.sim.set_identity(sts_ttl=60)
    id_file = write(tmp_path / "external_id", "ext-SECRET-one\n", mtime_ns=1_000_000_000)
    provider = stand.provider(ram_role_config(AK_CONFIG, external_id_file=str(id_file)))

    first = provider.get()
    write(id_file, "ext-SECRET-two\n", mtime_ns=2_000_000_000)  # the secret is rotated
    stand.clock.advance(45)  # due for refresh
    second = provider.get()

    assert second is not first
    assert [form["ExternalId"] for form in forms] == ["ext-SECRET-one", "ext-SECRET-two"]
    assert [e[:2] for e in stand.events] == [("ram_role_arn", "OK"), ("ram_role_arn", "OK")]


def test_assume_role_external_id_file_unreadable_at_fetch_time(
    stand: Stand, tmp_path: Path
) -> None:
    id_file = write(tmp_path / "external_id", "ext-SECRET-one")
    provider = stand.provider(ram_role_config(AK_CONFIG, external_id_file=str(id_file)))
    id_file.unlink()  # readable when the config was loaded, gone since

    with pytest.raises(CredentialsError) as excinfo:
        provider.get()

    assert str(excinfo.value) == (
        "account prod: ram_role_arn: credentials.external_id_file: "
        f'cannot read "{id_file}": No such file or directory'
    )
    assert stand.events == [("ram_role_arn", "SecretFileError", None)]
    assert stand.calls() == []  # no STS call without the external id


def test_external_id_file_from_the_config(stand: Stand, tmp_path: Path) -> None:
    id_file = write(tmp_path / "external_id", "ext-SECRET-value\n")
    forms: list[dict[str, str]] = []
    text = f"""
accounts:
  - name: prod
    regions: [cn-hangzhou]
    credentials:
      type: ram_role_arn
      role_arn: {ROLE_ARN}
      external_id_file: {id_file}
      sts_endpoint: {STS_URL}
      source:
        access_key_id: {KEY_ID}
        access_key_secret: {SECRET}
"""
    cfg = parse(text, {})
    credentials = cfg.accounts[0].credentials
    assert credentials is not None
    assert credentials.external_id_file == str(id_file) and credentials.external_id is None
    assert f"external_id from file {id_file}" in summary(cfg)
    assert "ext-SECRET-value" not in summary(cfg) + repr(cfg)

    provider = provider_for(
        cfg.accounts[0], {}, transport=recording_transport(stand, forms), clock=stand.clock
    )
    provider.get()
    assert [form["ExternalId"] for form in forms] == ["ext-SECRET-value"]


@pytest.mark.parametrize(
    ("yaml_keys", "problem"),
    [
        (
            "external_id: x\n      external_id_file: {file}\n",
            "accounts[0].credentials.external_id: cannot be combined with external_id_file "
            "(use one of them)",
        ),
        (
            "external_id_file: {file}.missing\n",
            'accounts[0].credentials.external_id_file: cannot read "{file}.missing": '
            "No such file or directory",
        ),
    ],
)
def test_external_id_file_follows_the_rules_of_every_file_key(
    tmp_path: Path, yaml_keys: str, problem: str
) -> None:
    id_file = write(tmp_path / "external_id", "ext-SECRET-value")
    text = (
        "accounts:\n  - name: prod\n    regions: [cn-hangzhou]\n    credentials:\n"
        f"      type: ram_role_arn\n      role_arn: {ROLE_ARN}\n      "
        + yaml_keys.format(file=id_file)
    )
    with pytest.raises(ConfigError) as excinfo:
        parse(text, {})
    assert excinfo.value.problems == [problem.format(file=id_file)]


def test_single_flight_one_sts_call_for_many_concurrent_callers(tmp_path: Path) -> None:
    clock = FakeClock()
    sim = Simulator(credentials={KEY_ID: SECRET}, clock=clock)
    stand = Stand(sim, clock, sim_transport(sim, delay=0.2))
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    barrier = threading.Barrier(8)

    def worker() -> str:
        barrier.wait()
        return provider.get().access_key_id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: worker(), range(8)))

    assert len(ids) == 1
    assert len(stand.calls("AssumeRoleWithOIDC")) == 1


def test_failed_refresh_backs_off_and_keeps_valid_credentials(
    stand: Stand, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stand.sim.set_identity(sts_ttl=60)
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    first = provider.get()
    stand.sim.set_identity(sts_error="ServiceUnavailable")
    stand.clock.advance(45)  # due for refresh, 15 s of validity left

    assert provider.get() is first  # refresh failed: the still-valid credential is kept
    assert provider.get() is first  # backing off: no second call yet
    assert len(stand.calls("AssumeRoleWithOIDC")) == 2
    assert "still using the current credentials" in caplog.text

    stand.clock.advance(1)  # first backoff step is 1 s
    assert provider.get() is first
    assert len(stand.calls("AssumeRoleWithOIDC")) == 3
    stand.clock.advance(1)  # second step is 2 s: not yet
    provider.get()
    assert len(stand.calls("AssumeRoleWithOIDC")) == 3

    stand.sim.set_identity(sts_error=None)
    stand.clock.advance(1)
    assert provider.get() is not first
    assert [e[1] for e in stand.events] == ["OK", "ServiceUnavailable", "ServiceUnavailable", "OK"]


def test_expired_and_unrefreshable_raises_the_last_error_without_calling_again(
    stand: Stand, tmp_path: Path
) -> None:
    stand.sim.set_identity(sts_error="Throttling.User")
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    with pytest.raises(CredentialsError, match=r"Throttling\.User"):
        provider.get()
    with pytest.raises(CredentialsError, match=r"Throttling\.User"):
        provider.get()
    assert len(stand.calls()) == 1


def levels(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.levelname for r in caplog.records if r.name == "exporter.alibaba.credentials"]


def test_fetch_failures_warn_once_per_kind_then_log_at_debug(
    stand: Stand, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.alibaba.credentials")
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))

    def fail(times: int) -> None:
        for _ in range(times):
            with pytest.raises(CredentialsError):
                provider.get()
            stand.clock.advance(61)  # past the longest backoff step: the next get() fetches

    stand.sim.set_identity(sts_error="ServiceUnavailable")
    fail(4)  # STS down: one warning, then debug however long it lasts
    stand.sim.set_identity(sts_error="Throttling.User")
    fail(2)  # another kind of failure: warned again
    assert len(stand.calls()) == 6
    assert levels(caplog) == ["WARNING", "DEBUG", "DEBUG", "DEBUG", "WARNING", "DEBUG"]
    assert "ServiceUnavailable" in caplog.records[0].getMessage()

    caplog.clear()
    stand.sim.set_identity(sts_error=None)
    provider.get()  # the recovery
    (record,) = caplog.records
    assert record.levelname == "INFO"
    assert "obtained after 6 failed attempts" in record.getMessage()

    caplog.clear()
    stand.clock.advance(3600)  # expired: due again, and STS is down again
    stand.sim.set_identity(sts_error="ServiceUnavailable")
    fail(2)
    assert levels(caplog) == ["WARNING", "DEBUG"]  # a new outage is warned about afresh


def test_losing_the_still_valid_credential_is_warned_about(
    stand: Stand, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.alibaba.credentials")
    stand.sim.set_identity(sts_ttl=60)
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    first = provider.get()
    caplog.clear()
    stand.sim.set_identity(sts_error="ServiceUnavailable")

    stand.clock.advance(45)  # due, 15 s of validity left
    assert provider.get() is first
    stand.clock.advance(1)
    assert provider.get() is first
    stand.clock.advance(20)  # expired: the targets of this account are down now
    with pytest.raises(CredentialsError):
        provider.get()

    assert levels(caplog) == ["WARNING", "DEBUG", "WARNING"]
    assert "still using the current credentials" in caplog.records[0].getMessage()
    assert "still using" not in caplog.records[2].getMessage()


def test_lazily_tried_chain_links_fail_quietly(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    caplog.set_level(logging.DEBUG, logger="exporter.alibaba.credentials")
    provider = provider_for(
        account(),
        {"ALIBABA_CLOUD_ECS_METADATA_ENDPOINT": IMDS_URL},
        transport=httpx.MockTransport(refuse),
    )
    with pytest.raises(CredentialsError):
        provider.get()
    assert levels(caplog) and set(levels(caplog)) == {"DEBUG"}


def test_a_chosen_chain_link_failing_is_a_fault_not_a_probe(
    stand: Stand, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.alibaba.credentials")
    stand.sim.set_identity(imds_role="ExporterRole", sts_ttl=60)
    provider = stand.provider(None, env=ecs_env(HOME="/nonexistent-home"))
    first = provider.get()
    assert provider.source == "ecs_ram_role"
    caplog.clear()

    stand.sim.set_identity(imds_role=None)  # the role is detached from the instance
    stand.clock.advance(45)  # due for refresh, still valid
    assert provider.get() is first

    assert levels(caplog) == ["WARNING"]
    assert "no RAM role is attached" in caplog.records[0].getMessage()


def test_invalidate_forces_one_refresh(stand: Stand, tmp_path: Path) -> None:
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    first = provider.get()
    provider.invalidate()  # right after a fetch: other regions' failures must not refetch
    assert provider.get() is first
    stand.clock.advance(5)
    provider.invalidate()
    provider.invalidate()
    second = provider.get()
    assert second is not first and provider.get() is second
    assert len(stand.calls()) == 2


def test_client_retries_once_after_an_expired_token(stand: Stand, tmp_path: Path) -> None:
    # The gateway's clock runs ahead: it considers the token expired before we do.
    stand.sim.set_identity(sts_ttl=600)
    provider = stand.provider(oidc_config(write(tmp_path / "t", OIDC_TOKEN)))
    provider.get()
    stand.sim.sts_tokens = {
        token: (key, secret, T0 - 1) for token, (key, secret, _) in stand.sim.sts_tokens.items()
    }
    stand.clock.advance(5)
    codes: list[str] = []
    with ListAsynJobsClient(
        "http://127.0.0.1:11/cn-hangzhou/",
        make_signer(
            "v3", provider.get, action="ListAsynJobs", version="2020-06-16", clock=stand.clock
        ),
        transport=stand.transport,
        observer=lambda code, _: codes.append(code),
        on_auth_expired=provider.invalidate,
    ) as client:
        client.list_jobs(JobQuery())
    # One rejected attempt, then the retry and every further page with the new token.
    assert codes[0] == "InvalidSecurityToken.Expired" and set(codes[1:]) == {"OK"}
    assert len(stand.calls("AssumeRoleWithOIDC")) == 2


# --- ECS instance metadata ---------------------------------------------------------------


def ecs_env(**extra: str) -> dict[str, str]:
    return {"ALIBABA_CLOUD_ECS_METADATA_ENDPOINT": IMDS_URL, **extra}


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


# --- STS endpoint ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "https://sts.aliyuncs.com"),
        ({"ALIBABA_CLOUD_STS_REGION": "cn-shanghai"}, "https://sts.cn-shanghai.aliyuncs.com"),
        (
            {
                "ALIBABA_CLOUD_STS_REGION": "cn-shanghai",
                "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true",
            },
            "https://sts-vpc.cn-shanghai.aliyuncs.com",
        ),
        ({"ALIBABA_CLOUD_STS_ENDPOINT": "sts.example.com"}, "https://sts.example.com"),
        ({"ALIBABA_CLOUD_STS_ENDPOINT": "http://127.0.0.1:8/sts/"}, "http://127.0.0.1:8/sts/"),
    ],
)
def test_sts_endpoint(env: dict[str, str], url: str) -> None:
    assert sts_endpoint(None, env) == url
    assert sts_endpoint("https://sts.explicit.example", env) == "https://sts.explicit.example"


def test_sts_endpoint_plain_http_only_for_loopback() -> None:
    with pytest.raises(CredentialsError, match="only allowed for loopback"):
        sts_endpoint(None, {"ALIBABA_CLOUD_STS_ENDPOINT": "http://sts.example.com"})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost.", True),  # the fully qualified form
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.200.0.9", True),
        ("[::1]", True),
        ("localhost.example.com", False),
        ("mylocalhost", False),
        ("0.0.0.0", False),
        ("[::]", False),
        ("10.0.0.1", False),
        ("[2001:db8::1]", False),
        ("sts.example.com", False),
    ],
)
def test_every_url_check_applies_the_same_loopback_rule(host: str, loopback: bool) -> None:
    url = f"http://{host}:8/sts/"
    hostname = httpx.URL(url).host
    assert is_loopback_host(hostname) is loopback

    try:
        sts_endpoint(None, {"ALIBABA_CLOUD_STS_ENDPOINT": url})
        sts_ok = True
    except CredentialsError:
        sts_ok = False
    try:
        metadata_base_url({"ALIBABA_CLOUD_ECS_METADATA_ENDPOINT": url})
        metadata_ok = True
    except CredentialsError:
        metadata_ok = False
    endpoint_text = f"accounts:\n  - name: prod\n    regions: [r]\n    endpoint: '{url}'\n"
    sts_text = (
        "accounts:\n  - name: prod\n    regions: [r]\n    credentials:\n"
        f"      type: oidc_role_arn\n      role_arn: {ROLE_ARN}\n"
        f"      oidc_provider_arn: {OIDC_PROVIDER_ARN}\n      oidc_token_file: /t\n"
        f"      sts_endpoint: '{url}'\n"
    )
    config_ok = []
    for text in (endpoint_text, sts_text):
        try:
            parse(text, {})
            config_ok.append(True)
        except ConfigError:
            config_ok.append(False)

    assert [sts_ok, metadata_ok, *config_ok] == [loopback] * 4


# --- credentials URI ---------------------------------------------------------------------


def uri_transport(body: dict[str, Any], status: int = 200) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body))


def test_credentials_uri_in_the_chain() -> None:
    body = {
        "Code": "Success",
        "AccessKeyId": "STS.uri",
        "AccessKeySecret": "uri-secret",
        "SecurityToken": "uri-token",
        "Expiration": "2023-11-14T23:13:20Z",  # T0 + 3600
    }
    env = {
        **NO_NETWORK_SOURCES,
        "ALIBABA_CLOUD_CREDENTIALS_URI": "http://127.0.0.1:12/creds",
    }
    clock = FakeClock()
    provider = provider_for(account(), env, transport=uri_transport(body), clock=clock)
    assert provider.source == "default_chain"  # not known before the first get()
    assert provider.get() == Credential("STS.uri", "uri-secret", "uri-token", T0 + 3600)
    assert provider.source == "credentials_uri"


def test_credentials_uri_failure_is_in_the_tried_list(tmp_path: Path) -> None:
    env = {
        **NO_NETWORK_SOURCES,
        "HOME": str(tmp_path),
        "ALIBABA_CLOUD_CREDENTIALS_URI": "http://127.0.0.1:12/creds",
    }
    provider = provider_for(account(), env, transport=uri_transport({"Code": "Failed"}, status=500))
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    assert str(excinfo.value).endswith(
        "ALIBABA_CLOUD_CREDENTIALS_URI (credentials_uri: credentials URI "
        "(ALIBABA_CLOUD_CREDENTIALS_URI): HTTP 500, Code 'Failed')"
    )


def test_lazy_chain_tries_metadata_then_uri_and_sticks_to_the_winner(stand: Stand) -> None:
    stand.sim.set_identity(imds_role="ExporterRole")
    env = ecs_env(HOME="/nonexistent-home", ALIBABA_CLOUD_CREDENTIALS_URI=STS_URL)
    provider = stand.provider(None, env=env)
    assert provider.get().security_token
    assert provider.source == "ecs_ram_role"


def test_lazy_chain_lists_everything_tried(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    provider = provider_for(
        account(), ecs_env(HOME=str(tmp_path)), transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(CredentialsError) as excinfo:
        provider.get()
    message = str(excinfo.value)
    assert message.startswith("account prod: no credentials found; tried: config")
    assert message.endswith(
        "ALIBABA_CLOUD_CREDENTIALS_URI (not set), ECS instance metadata (ecs_ram_role: "
        f"ECS instance metadata {IMDS_URL}: no answer in time (ConnectTimeout))"
    )


# --- default chain order -----------------------------------------------------------------


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


def test_chain_order(stand: Stand, tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", OIDC_TOKEN)
    home = tmp_path / "home"
    write_cli_config(
        home,
        [
            {
                "name": "default",
                "mode": "AK",
                "access_key_id": "LTAI5tCLI000",
                "access_key_secret": "c",
            }
        ],
    )
    write_ini(home, "[default]\naccess_key_id = LTAI5tINI000\naccess_key_secret = i\n")
    oidc = {**OIDC_ENV, "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file)}
    base = {"HOME": str(home), **NO_NETWORK_SOURCES}

    assert stand.provider(None, {**base, **oidc, **ENV_FULL}).source == "env"
    assert stand.provider(None, {**base, **oidc}).source == "oidc_role_arn"
    assert stand.provider(None, base).get().access_key_id == "LTAI5tCLI000"
    no_cli = {**base, "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true"}
    assert stand.provider(None, no_cli).get().access_key_id == "LTAI5tINI000"


def test_half_set_oidc_environment_is_named(tmp_path: Path) -> None:
    env = {**OIDC_ENV, **NO_NETWORK_SOURCES, "HOME": str(tmp_path)}
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), env)
    assert "OIDC ALIBABA_CLOUD_ROLE_ARN/ALIBABA_CLOUD_OIDC_PROVIDER_ARN/" in str(excinfo.value)
    assert "(ALIBABA_CLOUD_OIDC_TOKEN_FILE not set)" in str(excinfo.value)


def test_oidc_env_session_name(stand: Stand, tmp_path: Path) -> None:
    env = {
        **OIDC_ENV,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(write(tmp_path / "t", OIDC_TOKEN)),
        "ALIBABA_CLOUD_ROLE_SESSION_NAME": "rrsa-session",
    }
    stand.provider(None, env).get()
    assert stand.calls()[0]["session_name"] == "rrsa-session"


# --- aliyun CLI profiles -----------------------------------------------------------------


def test_cli_profile_modes(stand: Stand, tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", OIDC_TOKEN)
    stand.sim.set_identity(imds_role="EcsRole")
    profiles = [
        {"name": "ak", "mode": "AK", "access_key_id": KEY_ID, "access_key_secret": SECRET},
        {
            "name": "sts",
            "mode": "StsToken",
            "access_key_id": KEY_ID,
            "access_key_secret": SECRET,
            "sts_token": TOKEN,
        },
        {
            "name": "role",
            "mode": "RamRoleArn",
            "access_key_id": KEY_ID,
            "access_key_secret": SECRET,
            "ram_role_arn": ROLE_ARN,
            "ram_session_name": "cli-session",
            "expired_seconds": 900,
        },
        {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "EcsRole"},
        {
            "name": "oidc",
            "mode": "OIDC",
            "ram_role_arn": ROLE_ARN,
            "oidc_provider_arn": OIDC_PROVIDER_ARN,
            "oidc_token_file": str(token_file),
        },
        {
            "name": "chain",
            "mode": "ChainableRamRoleArn",
            "source_profile": "oidc",
            "ram_role_arn": OTHER_ROLE_ARN,
        },
    ]
    write_cli_config(tmp_path, profiles, current="ak")
    env = ecs_env(HOME=str(tmp_path))

    def via(name: str) -> CredentialProvider:
        return stand.provider(CredentialsConfig(type="profile", profile=name), env=env)

    assert via("ak").get() == Credential(KEY_ID, SECRET, None)
    assert stand.provider(None, env).get() == Credential(KEY_ID, SECRET, None)  # `current`
    assert via("sts").get() == Credential(KEY_ID, SECRET, TOKEN)
    role = via("role").get()
    assert role.expiration == T0 + 900
    assert stand.calls("AssumeRole")[-1]["session_name"] == "cli-session"
    assert via("ecs").source == "ecs_ram_role" and via("ecs").get().security_token
    assert via("oidc").get().security_token
    chained = via("chain")
    chained.get()
    assert stand.calls("AssumeRole")[-1]["role_arn"] == OTHER_ROLE_ARN
    assert stand.calls("AssumeRole")[-1]["caller"].startswith("STS.")


def test_cli_profile_selected_by_env_and_unsupported_modes(stand: Stand, tmp_path: Path) -> None:
    write_cli_config(
        tmp_path,
        [
            {"name": "a", "mode": "AK", "access_key_id": KEY_ID, "access_key_secret": SECRET},
            {"name": "sso", "mode": "CloudSSO"},
        ],
    )
    env = {"HOME": str(tmp_path), "ALIBABA_CLOUD_PROFILE": "sso"}
    with pytest.raises(CredentialsError) as excinfo:
        stand.provider(None, env)
    assert str(excinfo.value) == (
        f'account prod: CLI profile file "{tmp_path}/.aliyun/config.json" profile "sso": '
        "mode 'CloudSSO' is not supported"
    )


def test_cli_profile_missing_field_never_shows_values(tmp_path: Path) -> None:
    write_cli_config(tmp_path, [{"name": "default", "mode": "AK", "access_key_id": SECRET}])
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), {"HOME": str(tmp_path)})
    assert str(excinfo.value).endswith('profile "default": access_key_secret is missing')
    assert SECRET not in str(excinfo.value)


# --- credentials file (INI) --------------------------------------------------------------


def test_ini_profiles(stand: Stand, tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", OIDC_TOKEN)
    stand.sim.set_identity(imds_role="EcsRole")
    write_ini(
        tmp_path,
        f"""
[default]
type = access_key                  # inline comments are stripped
access_key_id = {KEY_ID}
access_key_secret = {SECRET}

[role]
type = ram_role_arn
access_key_id = {KEY_ID}
access_key_secret = {SECRET}
role_arn = {ROLE_ARN}
role_session_name = ini-session

[oidc]
type = oidc_role_arn
role_arn = {ROLE_ARN}
oidc_provider_arn = {OIDC_PROVIDER_ARN}
oidc_token_file_path = {token_file}

[ecs]
type = ecs_ram_role
role_name = EcsRole

[rsa]
type = rsa_key_pair
""",
        name="credentials",  # the Go SDK's file name
    )
    env = ecs_env(HOME=str(tmp_path), ALIBABA_CLOUD_CLI_PROFILE_DISABLED="true")

    assert stand.provider(None, env).get() == Credential(KEY_ID, SECRET, None)
    role = stand.provider(None, {**env, "ALIBABA_CLOUD_PROFILE": "role"})
    assert role.source == "ram_role_arn" and role.get().security_token
    assert stand.calls("AssumeRole")[-1]["session_name"] == "ini-session"
    assert stand.provider(None, {**env, "ALIBABA_CLOUD_PROFILE": "oidc"}).get().security_token
    assert stand.provider(None, {**env, "ALIBABA_CLOUD_PROFILE": "ecs"}).get().security_token
    with pytest.raises(CredentialsError, match="type 'rsa_key_pair' is not supported"):
        stand.provider(None, {**env, "ALIBABA_CLOUD_PROFILE": "rsa"})


def test_credentials_file_from_env_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "creds.ini"
    env = {"ALIBABA_CLOUD_CREDENTIALS_FILE": str(missing), "HOME": str(tmp_path)}
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), env)
    assert str(excinfo.value) == (
        f'account prod: ALIBABA_CLOUD_CREDENTIALS_FILE: credentials file "{missing}" (not found)'
    )


def test_broken_ini_is_an_error_without_its_contents(tmp_path: Path) -> None:
    path = write_ini(tmp_path, f"access_key_secret = {SECRET}\n[default\n")
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(account(), {"HOME": str(tmp_path), **NO_NETWORK_SOURCES})
    assert str(excinfo.value) == (
        f'account prod: credentials file "{path}": not valid INI (MissingSectionHeaderError)'
    )


def test_profile_type_not_found(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as excinfo:
        provider_for(
            account(CredentialsConfig(type="profile", profile="prod")), {"HOME": str(tmp_path)}
        )
    assert str(excinfo.value) == (
        "account prod: credentials: profile not found; tried: "
        f'CLI profile "{tmp_path}/.aliyun/config.json" (not found), '
        f'credentials file "{tmp_path}/.alibabacloud/credentials.ini" (not found), '
        f'credentials file "{tmp_path}/.alibabacloud/credentials" (not found)'
    )


# --- explicit config, end to end through the config loader ------------------------------


def test_config_types_build_the_expected_providers(stand: Stand, tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", OIDC_TOKEN)
    text = f"""
accounts:
  - name: prod
    regions: [cn-hangzhou]
    credentials:
      type: ram_role_arn
      role_arn: {ROLE_ARN}
      external_id: ext-id-1
      duration: 15m
      sts_endpoint: {STS_URL}
      source:
        type: oidc_role_arn
        role_arn: {OTHER_ROLE_ARN}
        oidc_provider_arn: {OIDC_PROVIDER_ARN}
        oidc_token_file: {token_file}
        sts_endpoint: {STS_URL}
  - name: legacy
    regions: [cn-hangzhou]
    credentials:
      access_key_id: {KEY_ID}
      access_key_secret: {SECRET}
      security_token: {TOKEN}
"""
    cfg = parse(text, {})
    prod, legacy = (
        provider_for(a, {}, transport=stand.transport, clock=stand.clock) for a in cfg.accounts
    )
    assert prod.get().expiration == T0 + 900
    assert [(c["action"], c["role_arn"]) for c in stand.calls()] == [
        ("AssumeRoleWithOIDC", OTHER_ROLE_ARN),
        ("AssumeRole", ROLE_ARN),
    ]
    assert legacy.source == "static" and legacy.get() == Credential(KEY_ID, SECRET, TOKEN)


def test_every_provider_has_invalidate() -> None:
    providers: list[CredentialProvider] = [
        StaticProvider(CredentialsConfig(access_key_id=KEY_ID, access_key_secret=SECRET)),
        EnvProvider(ENV_FULL),
    ]
    for provider in providers:
        provider.invalidate()
        assert provider.expiration() is None
