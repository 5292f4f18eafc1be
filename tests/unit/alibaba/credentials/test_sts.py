"""Tests for exporter.alibaba.credentials.sts: AssumeRoleWithOIDC (RRSA), AssumeRole and
the STS endpoint."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from exporter.alibaba.credentials import metadata_base_url, provider_for, sts_endpoint
from exporter.config import CredentialsConfig, is_loopback_host, parse, summary
from exporter.errors import ConfigError, CredentialsError
from tests.unit.alibaba.credentials.stand import (
    AK_CONFIG,
    ENV_FULL,
    KEY_ID,
    OIDC_PROVIDER_ARN,
    OIDC_TOKEN,
    OIDC_TOKEN_2,
    ROLE_ARN,
    SECRET,
    STS_URL,
    T0,
    Stand,
    account,
    alb_answer,
    oidc_config,
    ram_role_config,
    sim_transport,
    write,
)

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
