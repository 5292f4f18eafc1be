"""End to end: the real exporter process with each credential source, against the real
simulator process acting as ALB, STS and ECS instance metadata over loopback.

The simulator issues short-lived STS keys (`sts_ttl`) that its ALB stand-in then requires,
so the exporter must refresh them during the run. Expected values come from the
simulator's own record of STS/metadata calls and ALB requests, never from the exporter.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import loopback, procs
from tests.support.configs import access_key, account, write_config

pytestmark = pytest.mark.e2e

KEY_ID = "LTAI5tCredE2eKeyId000001"
SECRET = "cred-e2e-Secret-7d6c5b4a39"
OIDC_ROLE = "acs:ram::1111111111111111:role/exporter-rrsa"
OIDC_PROVIDER = "acs:ram::1111111111111111:oidc-provider/ack-rrsa-e2e"
OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9.e2e-oidc-token-one.c2lnbmF0dXJlLW9uZQ"
OIDC_TOKEN_2 = "eyJhbGciOiJSUzI1NiJ9.e2e-oidc-token-two.c2lnbmF0dXJlLXR3bw"
EXTERNAL_ID = "e2e-external-id-0c0ffee"
REGIONS = ("cn-hangzhou", "cn-shanghai")


@pytest.fixture(scope="module")
def sim(start_simulator: procs.Simulators) -> procs.Proc:
    return start_simulator(REGIONS, keys={KEY_ID: SECRET}, jobs_per_minute=10, history="10m")


@pytest.fixture(autouse=True)
def reset_identity(sim: procs.Proc) -> None:
    identity(
        sim,
        sts_ttl=None,
        sts_error=None,
        deny_roles=[],
        oidc_tokens=[],
        imds_role=None,
        imds_v1=True,
        imds_v2=True,
    )


def identity(sim: procs.Proc, **settings: Any) -> Any:
    return procs.control(sim, "POST", "/_sim/identity", settings)


def sts_calls(sim: procs.Proc, role_arn: str, action: str = "") -> list[dict[str, Any]]:
    calls = loopback.get(sim.url + "/_sim/identity", timeout=10).json()["calls"]
    return [
        c
        for c in calls
        if c["service"] == "sts" and c["role_arn"] == role_arn and action in ("", c["action"])
    ]


def issued_secrets(sim: procs.Proc) -> list[str]:
    issued = loopback.get(sim.url + "/_sim/identity?secrets=1", timeout=10).json()["issued"]
    return [v for entry in issued for k, v in entry.items() if k != "AccessKeyId"]


def alb_requests(sim: procs.Proc) -> list[dict[str, Any]]:
    return loopback.get(sim.url + "/_sim/requests", timeout=10).json()  # type: ignore[no-any-return]


def role(name: str) -> str:
    """A role ARN unique to one test, so the simulator's call log can be filtered by it."""
    return f"acs:ram::2222222222222222:role/{name}"


Credentials = dict[str, Any]


def cred_config(tmp: Path, *accounts: dict[str, object]) -> Path:
    return write_config(tmp / "config.yaml", accounts)


def static_keys() -> Credentials:
    return access_key(KEY_ID, "${E2E_SECRET}")


def assumed_role(role_arn: str, **more: object) -> Credentials:
    return {"type": "ram_role_arn", "role_arn": role_arn, **more}


def oidc_role(role_arn: str, token_file: Path, **more: object) -> Credentials:
    return {
        "type": "oidc_role_arn",
        "role_arn": role_arn,
        "oidc_provider_arn": OIDC_PROVIDER,
        "oidc_token_file": str(token_file),
        **more,
    }


def base_env(sim: procs.Proc, home: Path) -> dict[str, str]:
    """A clean HOME (no stray profiles) and STS pointed at the stand-in."""
    return {"HOME": str(home), "ALIBABA_CLOUD_STS_ENDPOINT": f"{sim.url}/sts/"}


def oidc_env(token_file: Path) -> dict[str, str]:
    return {
        "ALIBABA_CLOUD_ROLE_ARN": OIDC_ROLE,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": OIDC_PROVIDER,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
    }


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def exposition(output: str) -> procs.Samples:
    """Samples from `--once` output, which interleaves the exposition with log lines."""
    text = "".join(
        line + "\n" for line in output.splitlines() if line.startswith(("# HELP", "# TYPE", "alb_"))
    )
    return procs.parse(text)


def run_once(config: Path, env: dict[str, str]) -> tuple[int, str]:
    """Exit code and combined output of `--once` (exposition on stdout, logs on stderr)."""
    result = procs.run(procs.exporter_args(config, "--once"), env)
    return result.returncode, result.stdout + result.stderr


def up(samples: procs.Samples, account: str) -> dict[str, float]:
    return {
        dict(lbl)["region"]: v
        for lbl, v in procs.select(samples, "alb_exporter_up", account=account).items()
    }


# --- the acceptance run: AssumeRole on top of OIDC, across several refreshes -------------


@pytest.mark.timing  # a key's last use is 2.7 s before it expires
def test_assume_role_on_oidc_keeps_scraping_across_refreshes(
    sim: procs.Proc, tmp_path: Path, start_exporter: procs.Exporters
) -> None:
    target_role = role("alb-reader-refresh")
    token_file = tmp_path / "token"
    token_file.write_text(OIDC_TOKEN)
    # Keys are refreshed when a third of their lifetime is left: every 5.3 s here, with
    # 2.7 s of validity to spare for the requests signed just before.
    identity(sim, sts_ttl=8, oidc_tokens=[OIDC_TOKEN])
    # RRSA identity from the pod's env (default chain), assuming a role in another account.
    credentials = assumed_role(target_role, external_id=EXTERNAL_ID)
    config = cred_config(tmp_path, account(sim, "prod", REGIONS, credentials))
    env = {**base_env(sim, tmp_path), **oidc_env(token_file)}
    with start_exporter(config, env=env) as exporter:
        scrapes = 0
        rotated = False
        deadline = time.monotonic() + 60
        while len(sts_calls(sim, target_role, "AssumeRole")) < 3:
            assert time.monotonic() < deadline, "fewer than two refreshes within 60 s"
            _, samples = procs.scrape(exporter.url)
            scrapes += 1
            assert up(samples, "prod") == {r: 1.0 for r in REGIONS}, f"scrape {scrapes} failed"
            if not rotated and len(sts_calls(sim, target_role, "AssumeRole")) >= 2:
                # The kubelet rotates the projected token; only the new one is accepted now.
                token_file.write_text(OIDC_TOKEN_2)
                identity(sim, oidc_tokens=[OIDC_TOKEN_2])
                rotated = True
            time.sleep(0.5)
        time.sleep(1.5)
        _, samples = procs.scrape(exporter.url)
        assert up(samples, "prod") == {r: 1.0 for r in REGIONS}
    role_calls = sts_calls(sim, target_role, "AssumeRole")
    oidc_calls = [
        c
        for c in sts_calls(sim, OIDC_ROLE, "AssumeRoleWithOIDC")
        if c["time"] >= role_calls[0]["time"] - 5
    ]
    assert all(c["code"] == "OK" for c in role_calls + oidc_calls)
    # Every AssumeRole was signed with an OIDC session's key, never a long-lived one.
    oidc_keys = {c["issued_key_id"] for c in oidc_calls}
    assert {c["caller"] for c in role_calls} <= oidc_keys
    # The token file was re-read: calls after the rotation carried the new token.
    assert oidc_calls[-1]["token_sha256"] == fingerprint(OIDC_TOKEN_2)
    assert oidc_calls[0]["token_sha256"] == fingerprint(OIDC_TOKEN)
    # Once per refresh, not per region or scrape: every key AssumeRole issued was used by
    # the ALB requests of both regions, and no other key was.
    issued = [c["issued_key_id"] for c in role_calls]
    prod_requests = [r for r in alb_requests(sim) if r["access_key_id"] in set(issued)]
    assert {r["access_key_id"] for r in prod_requests} == set(issued)
    for key in issued[:-1]:
        assert {r["region"] for r in prod_requests if r["access_key_id"] == key} == set(REGIONS)
    assert all(r["status"] == 200 for r in prod_requests)
    assert len(role_calls) < scrapes
    assert len(oidc_calls) <= len(role_calls) + 1
    # The exporter's own account of it agrees with the simulator's.
    assert procs.select(samples, "alb_exporter_credential_refreshes_total", account="prod") == {
        frozenset({("account", "prod"), ("source", "ram_role_arn"), ("code", "OK")}): float(
            len(role_calls)
        ),
        frozenset({("account", "prod"), ("source", "oidc_role_arn"), ("code", "OK")}): float(
            len(oidc_calls)
        ),
    }
    expiry = procs.select(
        samples, "alb_exporter_credentials_expiry_timestamp_seconds", source="ram_role_arn"
    )
    assert list(expiry.values()) == [float(role_calls[-1]["expiration"])]
    codes = procs.select(samples, "alb_exporter_api_requests_total", account="prod")
    assert {dict(lbl)["code"] for lbl, v in codes.items() if v > 0} == {"OK"}


# --- each source of the default chain, and explicit types --------------------------------


def write_json(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def scenario(
    name: str, sim: procs.Proc, tmp: Path
) -> tuple[Credentials | None, dict[str, str], str, str]:
    """(credentials, None for the default chain; env; expected source; role ARN)."""
    env = base_env(sim, tmp)
    token_file = tmp / "token"
    token_file.write_text(OIDC_TOKEN)
    target = role(f"reader-{name}")
    if name == "env":
        sts = loopback.post(sim.url + "/_sim/sts", json={"ttl": 600}, timeout=10).json()
        env |= {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": sts["AccessKeyId"],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": sts["AccessKeySecret"],
            "ALIBABA_CLOUD_SECURITY_TOKEN": sts["SecurityToken"],
        }
        return None, env, "", ""
    if name == "oidc":
        return None, env | oidc_env(token_file), "oidc_role_arn", OIDC_ROLE
    if name == "cli_profile":
        write_json(
            tmp / ".aliyun" / "config.json",
            {
                "current": "exporter",
                "profiles": [
                    {
                        "name": "exporter",
                        "mode": "RamRoleArn",
                        "access_key_id": KEY_ID,
                        "access_key_secret": SECRET,
                        "ram_role_arn": target,
                        "ram_session_name": "cli-profile",
                    }
                ],
            },
        )
        return None, env, "ram_role_arn", target
    if name == "credentials_file":
        ini = tmp / "creds.ini"
        ini.write_text(
            f"[prod]\ntype = oidc_role_arn\nrole_arn = {target}\n"
            f"oidc_provider_arn = {OIDC_PROVIDER}\noidc_token_file_path = {token_file}\n"
        )
        env |= {"ALIBABA_CLOUD_CREDENTIALS_FILE": str(ini), "ALIBABA_CLOUD_PROFILE": "prod"}
        return None, env, "oidc_role_arn", target
    if name == "ecs_metadata":
        identity(sim, imds_role="ExporterEcsRole", imds_v1=False)
        return None, env | {"ALIBABA_CLOUD_ECS_METADATA_ENDPOINT": sim.url}, "ecs_ram_role", ""
    if name == "credentials_uri":
        # The metadata stand-in's credentials document has the URI format exactly.
        identity(sim, imds_role="UriRole")
        env |= {
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
            "ALIBABA_CLOUD_CREDENTIALS_URI": f"{sim.url}/latest/meta-data/ram/"
            "security-credentials/UriRole",
        }
        return None, env, "credentials_uri", ""
    if name == "explicit_oidc":
        block = oidc_role(target, token_file, sts_endpoint=f"{sim.url}/sts/")
        return block, {"HOME": str(tmp)}, "oidc_role_arn", target
    if name == "explicit_ram_role_on_access_key":
        source = {"type": "access_key", **static_keys()}
        block = assumed_role(target, duration="15m", source=source)
        return block, env | {"E2E_SECRET": SECRET}, "ram_role_arn", target
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name",
    [
        "env",
        "oidc",
        "cli_profile",
        "credentials_file",
        "ecs_metadata",
        "credentials_uri",
        "explicit_oidc",
        "explicit_ram_role_on_access_key",
    ],
)
def test_each_source(sim: procs.Proc, tmp_path: Path, name: str) -> None:
    block, env, source, target = scenario(name, sim, tmp_path)
    started = time.time()
    code, output = run_once(cred_config(tmp_path, account(sim, "prod", REGIONS, block)), env)

    assert code == 0, output
    samples = exposition(output)
    assert up(samples, "prod") == {r: 1.0 for r in REGIONS}
    refreshes = procs.select(samples, "alb_exporter_credential_refreshes_total", account="prod")
    if not source:  # long-lived keys: nothing fetched, no expiry exposed
        assert refreshes == {}
        return
    # One fetch for the account, shared by both regions.
    assert refreshes == {frozenset({("account", "prod"), ("source", source), ("code", "OK")}): 1.0}
    expiry = procs.select(samples, "alb_exporter_credentials_expiry_timestamp_seconds")
    assert list(expiry) == [frozenset({("account", "prod"), ("source", source)})]
    assert started < next(iter(expiry.values())) <= time.time() + 6 * 3600
    if target:
        (call,) = [c for c in sts_calls(sim, target) if c["time"] >= started]
        assert call["code"] == "OK"


# --- failures stay with their account; secrets never show --------------------------------


def test_failing_sources_only_affect_their_account_and_leak_nothing(
    sim: procs.Proc, tmp_path: Path, start_exporter: procs.Exporters
) -> None:
    denied = role("denied")
    identity(sim, deny_roles=[denied], sts_ttl=600)
    token_file = tmp_path / "token"
    token_file.write_text(OIDC_TOKEN)
    missing_token = tmp_path / "absent" / "token"
    good = assumed_role(
        role("good"), external_id=EXTERNAL_ID, source=oidc_role(OIDC_ROLE, token_file)
    )
    denied_role = assumed_role(denied, source={"type": "access_key", **static_keys()})
    config = cred_config(
        tmp_path,
        account(sim, "good", REGIONS, good),
        account(sim, "static", ["cn-hangzhou"], static_keys()),
        account(sim, "no-token", ["cn-hangzhou"], oidc_role(role("no-token"), missing_token)),
        account(sim, "denied", ["cn-hangzhou"], denied_role),
    )
    env = {**base_env(sim, tmp_path), "E2E_SECRET": SECRET}
    answers: list[str] = []
    with start_exporter(config, env=env) as exporter:
        for path in ("/metrics", "/", "/-/ready", "/probe?account=no-token&region=cn-hangzhou"):
            answers.append(loopback.get(exporter.url + path, timeout=30).text)
        text, samples = procs.scrape(exporter.url)
        answers.append(text)
        exporter.stop()
        output = exporter.output()

    assert up(samples, "good") == {r: 1.0 for r in REGIONS}
    assert up(samples, "static") == {"cn-hangzhou": 1.0}
    assert up(samples, "no-token") == {"cn-hangzhou": 0.0}
    assert up(samples, "denied") == {"cn-hangzhou": 0.0}
    assert (
        f'account no-token: oidc_role_arn: cannot read the OIDC token file "{missing_token}": '
        "No such file or directory" in output.replace('\\"', '"')  # logfmt escapes quotes
    )
    assert re.search(
        rf"account denied: ram_role_arn: role {re.escape(denied)}: STS AssumeRole failed: "
        r"NoPermission: ",
        output,
    )
    refreshes = procs.select(samples, "alb_exporter_credential_refreshes_total")
    assert (
        refreshes[
            frozenset(
                {("account", "no-token"), ("source", "oidc_role_arn"), ("code", "TokenFileError")}
            )
        ]
        >= 1
    )
    assert (
        refreshes[
            frozenset({("account", "denied"), ("source", "ram_role_arn"), ("code", "NoPermission")})
        ]
        >= 1
    )
    # Debug logs, every page and the metrics: no secret key, no STS secret or token, no
    # OIDC token, no external id.
    secrets = [SECRET, OIDC_TOKEN, EXTERNAL_ID, *issued_secrets(sim)]
    assert len(secrets) > 6
    for blob in (output, *answers):
        for secret in secrets:
            assert secret not in blob


def test_metadata_unreachable_only_affects_its_account(sim: procs.Proc, tmp_path: Path) -> None:
    config = cred_config(
        tmp_path,
        account(sim, "ecs", ["cn-hangzhou"], {"type": "ecs_ram_role"}),
        account(sim, "static", ["cn-hangzhou"], static_keys()),
    )
    # Port 9 on loopback: nothing listens (discard service is not run in test images).
    env = {
        "HOME": str(tmp_path),
        "E2E_SECRET": SECRET,
        "ALIBABA_CLOUD_ECS_METADATA_ENDPOINT": "http://127.0.0.1:9",
    }
    code, output = run_once(config, env)
    assert code == 1
    samples = exposition(output)
    assert up(samples, "ecs") == {"cn-hangzhou": 0.0}
    assert up(samples, "static") == {"cn-hangzhou": 1.0}
    assert (
        "account ecs: ecs_ram_role: ECS instance metadata http://127.0.0.1:9: unreachable "
        "(ConnectError)" in output
    )
    assert SECRET not in output


def test_no_source_found_lists_what_was_tried(sim: procs.Proc, tmp_path: Path) -> None:
    config = cred_config(tmp_path, account(sim, "nothing", ["cn-hangzhou"]))
    env = {"HOME": str(tmp_path), "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}
    code, output = run_once(config, env)
    assert code == 1
    assert up(exposition(output), "nothing") == {"cn-hangzhou": 0.0}
    assert (
        "account nothing: no credentials found; tried: config 'credentials' (not set), "
        "environment ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET (not set), "
        in output
    )
    assert "ECS instance metadata (disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED)" in output
