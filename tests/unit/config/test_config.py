"""Tests for exporter.config: the YAML contract of SPEC.md, one fixture per invalid case.

Each fixtures/invalid/NAME.yaml has a sibling NAME.expected holding the exact
problem lines, in order. Fixture values containing SUPERSECRET stand for secrets: they
must never show up in a message.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import (
    DEFAULT_ENDPOINT,
    TOP_LEVEL_KEYS,
    AccountConfig,
    Config,
    CredentialsConfig,
    DiscoveryConfig,
    Filters,
    MetricsConfig,
    ResourceDirectoryConfig,
    format_duration,
    load,
    mask_access_key_id,
    parse,
    summary,
)
from exporter.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
INVALID = Path(__file__).resolve().parent / "fixtures" / "invalid"
SECRET_MARK = "SUPERSECRET"
FIXTURE_ENV = {"ALB_TEST_SECRET": "env-SUPERSECRET-value", "ALB_TEST_EMPTY": ""}
ACCOUNT = "accounts:\n  - name: prod\n    regions: [cn-hangzhou]\n"

# A problem starts with a key path (`lookback`, `accounts[1].regions[0]`, `["a b"]`) or the
# source name, then ": ".
_SEGMENT = r'(?:[A-Za-z0-9_-]+|\[\d+\]|\["(?:[^"\\]|\\.)*"\])'
KEY_PATH = re.compile(rf"{_SEGMENT}(?:\.[A-Za-z0-9_-]+|\[\d+\]|\[\"(?:[^\"\\]|\\.)*\"\])*: ")


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse(text, env or {}, "config.yaml")
    return excinfo.value.problems


# --- invalid configs: one fixture file per case ----------------------------------------


def invalid_cases() -> list[str]:
    return sorted(path.stem for path in INVALID.glob("*.yaml"))


def test_every_invalid_fixture_has_its_expected_file() -> None:
    assert len(invalid_cases()) > 50
    expected = {path.stem for path in INVALID.glob("*.expected")}
    assert expected == set(invalid_cases())


@pytest.mark.parametrize("name", invalid_cases())
def test_invalid_config_reports_exact_problems(name: str) -> None:
    text = (INVALID / f"{name}.yaml").read_text()
    expected = (INVALID / f"{name}.expected").read_text().splitlines()

    problems = problems_of(text, FIXTURE_ENV)

    assert problems == expected
    for problem in problems:
        assert SECRET_MARK not in problem
        assert "\n" not in problem
        assert problem.startswith("config.yaml: ") or KEY_PATH.match(problem), problem


def test_multiple_problems_are_reported_at_once() -> None:
    text = (INVALID / "multiple_problems.yaml").read_text()
    with pytest.raises(ConfigError) as excinfo:
        parse(text, {}, "config.yaml")
    assert len(excinfo.value.problems) == 11
    # The exception text carries them all, for callers that only print str(exc).
    assert all(problem in str(excinfo.value) for problem in excinfo.value.problems)


def test_unknown_key_gets_a_spelling_hint() -> None:
    problems = problems_of(
        ACCOUNT + "    credentials:\n      access_key_id: a\n      acess_key_secret: b\n"
    )
    assert (
        "accounts[0].credentials.acess_key_secret: unknown key (did you mean access_key_secret?)"
        in problems
    )


# --- valid configs ----------------------------------------------------------------------


def test_full_config(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sts-token\n")
    text = f"""
lookback: 2h
cache_ttl: 1m
page_size: 50
request_timeout: 5s
max_pages: 20
recent_failures: 0
state_file: /var/lib/alb-jobs-exporter/state.json
accounts:
  - name: prod
    regions: [cn-hangzhou, cn-shanghai]
    endpoint: https://alb-vpc.{{region}}.aliyuncs.com
    signature: v1
    credentials:
      access_key_id: LTAI5tEXAMPLE1234
      access_key_secret: ${{PROD_SECRET}}
      security_token_file: {token_file}
    filters:
      resource_types: [loadbalancer, servergroup]
      api_names: [CreateListener]
      resource_ids: [alb-1, alb-2]
  - name: staging
    regions: [ap-southeast-1]
"""
    config = parse(text, {"PROD_SECRET": "s3cret"})

    assert config == Config(
        lookback=7200.0,
        cache_ttl=60.0,
        page_size=50,
        request_timeout=5.0,
        max_pages=20,
        recent_failures=0,
        state_file="/var/lib/alb-jobs-exporter/state.json",
        accounts=(
            AccountConfig(
                name="prod",
                regions=("cn-hangzhou", "cn-shanghai"),
                endpoint="https://alb-vpc.{region}.aliyuncs.com",
                signature="v1",
                credentials=CredentialsConfig(
                    access_key_id="LTAI5tEXAMPLE1234",
                    access_key_secret="s3cret",
                    security_token_file=str(token_file),
                ),
                filters=Filters(
                    resource_types=("loadbalancer", "servergroup"),
                    api_names=("CreateListener",),
                    resource_ids=("alb-1", "alb-2"),
                ),
            ),
            AccountConfig(name="staging", regions=("ap-southeast-1",)),
        ),
    )
    assert (
        config.accounts[0].endpoint_for("cn-shanghai") == "https://alb-vpc.cn-shanghai.aliyuncs.com"
    )


def test_defaults() -> None:
    config = parse(ACCOUNT, {})

    assert config == Config(accounts=(AccountConfig(name="prod", regions=("cn-hangzhou",)),))
    assert (config.lookback, config.cache_ttl, config.page_size) == (3600.0, 30.0, 100)
    assert (config.request_timeout, config.max_pages, config.recent_failures) == (10.0, 500, 10)
    account = config.accounts[0]
    assert (account.signature, account.credentials, account.filters) == ("v3", None, Filters())
    assert account.endpoint_for("cn-beijing") == DEFAULT_ENDPOINT.replace("{region}", "cn-beijing")


def test_metrics_block() -> None:
    text = (
        "metrics:\n  duration_buckets: [0.5, 5, 30s, 2m]\n"
        "  duration_labels: [api_name, status]\n  disable: [alb_async_jobs_failed]\n" + ACCOUNT
    )
    metrics = parse(text, {}).metrics
    assert metrics == MetricsConfig(
        duration_buckets=(0.5, 5.0, 30.0, 120.0),
        duration_labels=("status", "api_name"),  # exposition order, whatever the file's
        disable=("alb_async_jobs_failed",),
    )
    assert metrics.disabled() == {"alb_async_jobs_failed"}
    assert parse(ACCOUNT, {}).metrics == MetricsConfig()


def test_empty_duration_buckets_disable_the_histogram() -> None:
    metrics = parse("metrics:\n  duration_buckets: []\n" + ACCOUNT, {}).metrics
    assert metrics.duration_buckets == ()
    assert metrics.disabled() == {"alb_async_job_duration_seconds"}
    # Omitted or null: the defaults, not "none".
    assert parse("metrics:\n  duration_buckets:\n" + ACCOUNT, {}).metrics == MetricsConfig()


def test_null_and_empty_optional_values_mean_default() -> None:
    text = (
        "lookback:\nstate_file:\naccounts:\n  - name: prod\n    regions: [cn-hangzhou]\n"
        "    endpoint: ''\n    signature:\n    credentials:\n    filters:\n"
        "      resource_types:\n"
    )
    assert parse(text, {}) == parse(ACCOUNT, {})


def test_empty_accounts_are_left_to_the_cli() -> None:
    # Accepted here on purpose: --demo brings its own accounts; the CLI refuses an empty list.
    assert parse("accounts: []\n", {}) == Config()
    assert parse("lookback: 1h\n", {}) == Config()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 93784.0),
        ("1.5h", 5400.0),
        ("45", 45.0),
        ("2.5", 2.5),
        ('"90"', 90.0),
        ('"90s"', 90.0),
        ("0.25", 0.25),
    ],
)
def test_duration_forms(value: str, seconds: float) -> None:
    # processing_max_age, not lookback: a lookback this short needs a shorter resync too.
    text = f"processing_max_age: {value}\nrequest_timeout: {value}\ncache_ttl: {value}\n"
    config = parse(text, {})
    assert (config.processing_max_age, config.request_timeout, config.cache_ttl) == (seconds,) * 3


@pytest.mark.parametrize("value", ["0", "0s", "0.0"])
def test_cache_ttl_zero_means_no_cache(value: str) -> None:
    assert parse(f"cache_ttl: {value}\n", {}).cache_ttl == 0.0


@given(st.integers(min_value=1, max_value=10**9))
def test_format_duration_is_read_back_exactly(seconds: int) -> None:
    text = f"processing_max_age: {format_duration(seconds)}\n"
    assert parse(text, {}).processing_max_age == seconds


def test_format_duration_examples() -> None:
    assert [format_duration(s) for s in (3600.0, 5400.0, 1.5, 0.0, 90061.0)] == [
        "1h",
        "1h30m",
        "1.5s",
        "0s",
        "1d1h1m1s",
    ]


# --- environment expansion -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${VAR}", {"VAR": "x"}, "x"),
        ("a-${VAR}-b", {"VAR": "x"}, "a-x-b"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("${VAR:-fallback}", {}, "fallback"),
        ("${VAR:-fallback}", {"VAR": ""}, "fallback"),
        ("${VAR:-fallback}", {"VAR": "set"}, "set"),
        ("${VAR:-}", {}, ""),
        ("${VAR:-a:-b}", {}, "a:-b"),
        ("$$", {}, "$"),
        ("$${VAR}", {"VAR": "x"}, "${VAR}"),
        ("$$$${VAR}", {"VAR": "x"}, "$${VAR}"),
        ("$$${VAR}", {"VAR": "x"}, "$x"),
        ("cost $5", {}, "cost $5"),
        ("trailing $", {}, "trailing $"),
        # A value is inserted as text, never parsed as YAML.
        ("${VAR}", {"VAR": "[a, b]\nkey: {c: d}"}, "[a, b]\nkey: {c: d}"),
        ("${VAR}", {"VAR": "${OTHER}"}, "${OTHER}"),
    ],
)
def test_env_expansion(value: str, env: dict[str, str], expected: str) -> None:
    config = parse(f"state_file: '{value}'\n", env)
    assert config.state_file == expected


def test_env_expansion_reaches_every_string_value() -> None:
    text = """
lookback: ${LOOKBACK}
page_size: ${PAGE_SIZE:-25}
accounts:
  - name: ${ACCOUNT}
    regions: ["${REGION}", cn-shanghai]
    endpoint: ${ENDPOINT}
    signature: ${SIGNATURE}
    credentials:
      access_key_id: ${ID}
      access_key_secret: p$$ss${SUFFIX}
    filters:
      api_names: ['Create${WHAT}']
"""
    env = {
        "LOOKBACK": "2h",
        "ACCOUNT": "prod",
        "REGION": "cn-hangzhou",
        "ENDPOINT": "http://127.0.0.1:8080/{region}/",
        "SIGNATURE": "v1",
        "ID": "LTAI5tEXAMPLE1234",
        "SUFFIX": "word",
        "WHAT": "Listener",
    }
    config = parse(text, env)

    assert (config.lookback, config.page_size) == (7200.0, 25)
    account = config.accounts[0]
    assert account.name == "prod"
    assert account.regions == ("cn-hangzhou", "cn-shanghai")
    assert account.endpoint_for("cn-hangzhou") == "http://127.0.0.1:8080/cn-hangzhou/"
    assert account.signature == "v1"
    assert account.credentials == CredentialsConfig(
        access_key_id="LTAI5tEXAMPLE1234", access_key_secret="p$ssword"
    )
    assert account.filters.api_names == ("CreateListener",)


def test_env_values_cannot_inject_structure() -> None:
    env = {"NAME": "prod\n    regions: [evil]\n  - name: x"}
    config = parse("accounts:\n  - name: ${NAME}\n    regions: [cn-hangzhou]\n", env)
    assert [a.name for a in config.accounts] == [env["NAME"]]


def test_empty_security_token_from_env_means_none() -> None:
    text = ACCOUNT + (
        "    credentials:\n      access_key_id: id\n      access_key_secret: s\n"
        "      security_token: ${ALIBABA_CLOUD_SECURITY_TOKEN:-}\n"
    )
    credentials = parse(text, {}).accounts[0].credentials
    assert credentials is not None and credentials.security_token is None


def test_unset_variable_error_names_path_and_variable_but_no_value() -> None:
    text = "state_file: ${SET_ONE}/${UNSET_ONE}\n"
    problems = problems_of(text, {"SET_ONE": "value-of-SUPERSECRET"})
    assert problems == [
        "state_file: environment variable UNSET_ONE is not set "
        "(use ${UNSET_ONE:-default} for a default)"
    ]


# --- endpoints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://alb.{region}.aliyuncs.com",
        "https://alb-vpc.{region}.aliyuncs.com/",
        "https://alb.example.com:8443/prefix/{region}",
        "https://203.0.113.7",
        "https://[2001:db8::1]:8443/",
        "http://127.0.0.1:8080/",
        "http://127.10.20.30",
        "http://localhost:9000/{region}/",
        "http://[::1]:9000/",
        "http://[::1]/alb",
        "HTTP://LOCALHOST:1",
    ],
)
def test_endpoint_accepted(endpoint: str) -> None:
    config = parse(ACCOUNT + f"    endpoint: '{endpoint}'\n", {})
    assert config.accounts[0].endpoint == endpoint


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://alb.cn-hangzhou.aliyuncs.com",
        "http://10.1.2.3:8080",
        "http://[2001:db8::1]/",
        "http://128.0.0.1",
        "http://localhost.example.com",
    ],
)
def test_plain_http_to_a_non_loopback_host_is_rejected(endpoint: str) -> None:
    assert problems_of(ACCOUNT + f"    endpoint: '{endpoint}'\n") == [
        "accounts[0].endpoint: http:// is only allowed for loopback hosts "
        "(127.0.0.0/8, ::1, localhost); use https://"
    ]


# --- credential files ------------------------------------------------------------------


def test_credential_files_are_checked_but_not_read(tmp_path: Path) -> None:
    id_file, secret_file = tmp_path / "id", tmp_path / "secret"
    id_file.write_text("LTAI5tEXAMPLE1234\n")
    secret_file.write_text("file-secret\n")
    text = ACCOUNT + (
        f"    credentials:\n      access_key_id_file: {id_file}\n"
        f"      access_key_secret_file: {secret_file}\n"
    )
    credentials = parse(text, {}).accounts[0].credentials

    assert credentials == CredentialsConfig(
        access_key_id_file=str(id_file), access_key_secret_file=str(secret_file)
    )
    assert "file-secret" not in repr(credentials)


def test_missing_credential_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    text = ACCOUNT + (
        f"    credentials:\n      access_key_id: id\n      access_key_secret_file: {missing}\n"
    )
    assert problems_of(text) == [
        f'accounts[0].credentials.access_key_secret_file: cannot read "{missing}": '
        "No such file or directory"
    ]


# --- secrets never leak ----------------------------------------------------------------


def test_secret_from_env_in_a_bad_place_is_not_echoed() -> None:
    secret = "Zx9SUPERSECRETvalue0123456789a"
    env = {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret}
    text = (
        "lookback: ${ALIBABA_CLOUD_ACCESS_KEY_SECRET}\n"
        "page_size: ${ALIBABA_CLOUD_ACCESS_KEY_SECRET}\n"
        "accounts:\n  - name: prod\n    regions: ['${ALIBABA_CLOUD_ACCESS_KEY_SECRET}']\n"
        "    signature: ${ALIBABA_CLOUD_ACCESS_KEY_SECRET}\n"
        "    endpoint: https://x:${ALIBABA_CLOUD_ACCESS_KEY_SECRET}@alb.example.com\n"
        "    filters:\n      resource_types: ['${ALIBABA_CLOUD_ACCESS_KEY_SECRET}']\n"
    )
    with pytest.raises(ConfigError) as excinfo:
        parse(text, env)
    assert len(excinfo.value.problems) == 6
    assert secret not in str(excinfo.value)
    assert "not shown" in str(excinfo.value)


def test_literal_secrets_in_bad_places_are_not_echoed() -> None:
    secret = "Zx9SUPERSECRETvalue0123456789a"
    text = (
        f"access_key_secret: {secret}\n"
        "accounts:\n  - name: prod\n    regions: [cn-hangzhou]\n"
        f"    endpoint: https://alb.example.com/?Signature={secret}\n"
        f"    credentials:\n      access_key_id: [{secret}]\n"
        f"      access_key_secret: {{a: {secret}}}\n"
        f'      security_token: "{secret}\n'
    )
    with pytest.raises(ConfigError) as excinfo:
        parse(text, {})
    assert secret not in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        parse(text + '"\n', {})
    assert len(excinfo.value.problems) == 4
    assert secret not in str(excinfo.value)


def test_summary_shows_no_secrets(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret-value")
    text = f"""
accounts:
  - name: prod
    regions: [cn-hangzhou, cn-shanghai]
    credentials:
      access_key_id: LTAI5tEXAMPLE1234
      access_key_secret: inline-secret-value
      security_token: inline-token-value
    filters:
      resource_types: [loadbalancer]
  - name: staging
    regions: [cn-beijing]
    endpoint: http://127.0.0.1:8080/{{region}}/
    signature: v1
    credentials:
      access_key_id: LTAI5tSTAGING5678
      access_key_secret_file: {secret_file}
  - name: dev
    regions: [cn-shenzhen]
"""
    out = summary(parse(text, {}))

    for secret in ("inline-secret-value", "inline-token-value", "file-secret-value"):
        assert secret not in out
    assert "LTAI5tEXAMPLE1234" not in out and "LTAI5tSTAGING5678" not in out
    assert "access_key_id=LTAI****1234" in out
    assert f"access_key_secret from file {secret_file}" in out
    assert "credentials: default chain" in out
    assert "regions: cn-hangzhou, cn-shanghai" in out
    assert "endpoint: http://127.0.0.1:8080/{region}/" in out
    assert "filters: resource_types=loadbalancer" in out
    assert "lookback: 1h" in out and "cache_ttl: 30s" in out


def test_summary_of_the_defaults() -> None:
    assert summary(parse(ACCOUNT, {})) == "\n".join(
        [
            "lookback: 1h",
            "cache_ttl: 30s",
            "page_size: 100",
            "request_timeout: 10s",
            "max_pages: 500",
            "recent_failures: 10",
            "state_file: (none)",
            "overlap: 1m",
            "full_resync_interval: 30m",
            "processing_max_age: 7d",
            "max_concurrent_refreshes: 4",
            "metrics: duration_buckets=2s,5s,10s,20s,30s,1m,2m,5m,10m,30m (default);"
            " duration_labels=status (default); disable=none",
            "job_events: off",
            "discovery: off (every target is listed by hand)",
            "accounts: 1",
            "  - name: prod",
            "    regions: cn-hangzhou",
            "    exclude_regions: none",
            "    endpoint: https://alb.{region}.aliyuncs.com (default)",
            "    signature: v3",
            "    credentials: default chain",
            "    filters: none (all jobs)",
            "    max_requests_per_second: 5",
        ]
    )
    assert "accounts: none" in summary(Config())


def test_summary_of_a_metrics_block() -> None:
    text = (
        "metrics:\n  duration_buckets: []\n  duration_labels: [api_name, status]\n"
        "  disable: [alb_async_jobs, alb_async_jobs_failed]\n" + ACCOUNT
    )
    assert (
        "metrics: duration_buckets=none (no histogram); duration_labels=status,api_name;"
        " disable=alb_async_jobs,alb_async_jobs_failed"
    ) in summary(parse(text, {})).splitlines()
    text = "metrics:\n  duration_buckets: [0.5, 90]\n  duration_labels: []\n" + ACCOUNT
    assert (
        "metrics: duration_buckets=0.5s,1m30s; duration_labels=none (account and region only);"
        " disable=none"
    ) in summary(parse(text, {})).splitlines()


@pytest.mark.parametrize(
    ("key_id", "masked"),
    [("LTAI5tEXAMPLE1234", "LTAI****1234"), ("LTAI5tEXAMPL", "LTAI****AMPL"), ("short", "****")],
)
def test_mask_access_key_id(key_id: str, masked: str) -> None:
    assert mask_access_key_id(key_id) == masked


# --- load() ----------------------------------------------------------------------------


def test_load_reads_the_file_and_names_it_in_document_errors(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("\ufefflookback: 5m\nfull_resync_interval: 2m\n" + ACCOUNT, encoding="utf-8")
    assert load(str(path), {}).lookback == 300.0

    path.write_text("- a\n")
    with pytest.raises(ConfigError) as excinfo:
        load(str(path), {})
    assert excinfo.value.problems == [f"{path}: the top level must be a mapping, got list"]


def test_load_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as excinfo:
        load(str(missing), {})
    assert excinfo.value.problems == [
        f'config.file: cannot read "{missing}": No such file or directory'
    ]

    with pytest.raises(ConfigError) as excinfo:
        load(str(tmp_path), {})
    assert excinfo.value.problems == [f'config.file: cannot read "{tmp_path}": Is a directory']

    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"lookback: \xff\n")
    with pytest.raises(ConfigError) as excinfo:
        load(str(binary), {})
    assert excinfo.value.problems == [
        f'config.file: cannot read "{binary}": not UTF-8 text (byte 10)'
    ]


def test_example_config_loads(tmp_path: Path) -> None:
    (tmp_path / "access_key_id").write_text("LTAI5tSTAGING5678\n")
    (tmp_path / "access_key_secret").write_text("staging-secret\n")
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tEXAMPLE1234",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "prod-secret",
        "ALB_SECRETS_DIR": str(tmp_path),
    }
    config = load(str(REPO / "config.example.yaml"), env)

    assert [a.name for a in config.accounts] == ["prod", "staging", "dev"]
    prod, staging, dev = config.accounts
    assert prod.credentials == CredentialsConfig(
        access_key_id="LTAI5tEXAMPLE1234", access_key_secret="prod-secret"
    )
    assert staging.credentials == CredentialsConfig(
        access_key_id_file=f"{tmp_path}/access_key_id",
        access_key_secret_file=f"{tmp_path}/access_key_secret",
    )
    assert dev.credentials is None
    assert config == Config(accounts=config.accounts)  # the globals shown are the defaults


# Every key a config can have (the fuzz below draws from them too).
CONFIG_KEYS = [
    *TOP_LEVEL_KEYS,
    "name",
    "regions",
    "endpoint",
    "signature",
    "credentials",
    "filters",
    "access_key_id",
    "access_key_secret",
    "security_token",
    "access_key_id_file",
    "access_key_secret_file",
    "security_token_file",
    "resource_types",
    "api_names",
    "resource_ids",
    "exclude_regions",
    *(f.name for f in dataclasses.fields(DiscoveryConfig)),
    *(f.name for f in dataclasses.fields(ResourceDirectoryConfig) if f.name != "member"),
]


def test_example_config_documents_every_key() -> None:
    text = (REPO / "config.example.yaml").read_text()
    for key in CONFIG_KEYS:
        assert re.search(rf"\b{key}\b", text), key


def test_example_config_needs_its_variables() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load(str(REPO / "config.example.yaml"), {})
    assert excinfo.value.problems[:2] == [
        "accounts[0].credentials.access_key_id: environment variable "
        "ALIBABA_CLOUD_ACCESS_KEY_ID is not set (use ${ALIBABA_CLOUD_ACCESS_KEY_ID:-default} "
        "for a default)",
        "accounts[0].credentials.access_key_secret: environment variable "
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET is not set "
        "(use ${ALIBABA_CLOUD_ACCESS_KEY_SECRET:-default} for a default)",
    ]


# --- property: parse() never fails with anything but ConfigError -----------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["1h", "30s", "0", "v1", "cn-hangzhou", "${X}", "${UNSET}", "$$", "http://[::1]/"]
    ),
)
keys = st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=10), st.integers())
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=25,
)
account_like = st.fixed_dictionaries(
    {"name": documents, "regions": documents},
    optional={key: documents for key in ("endpoint", "signature", "credentials", "filters")},
)
config_like = st.fixed_dictionaries(
    {},
    optional={
        **{key: documents for key in TOP_LEVEL_KEYS},
        "accounts": st.lists(st.one_of(account_like, documents), max_size=3),
    },
)


def assert_parses_or_config_error(text: str) -> None:
    try:
        result = parse(text, {"X": "value"}, "source.yaml")
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert "\n" not in problem
            assert problem.startswith("source.yaml: ") or KEY_PATH.match(problem), problem
    else:
        assert isinstance(result, Config)


@pytest.mark.slow
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(documents, config_like))
def test_any_yaml_document_parses_or_raises_config_error(document: object) -> None:
    assert_parses_or_config_error(yaml.safe_dump(document))


@settings(max_examples=300)
@given(st.text())
def test_any_text_parses_or_raises_config_error(text: str) -> None:
    assert_parses_or_config_error(text)


@settings(max_examples=200)
@given(st.text(alphabet=":-[]{}&*!|>'\"%@`#,?\n\t ab1$", max_size=60))
def test_yaml_punctuation_parses_or_raises_config_error(text: str) -> None:
    assert_parses_or_config_error(text)


@pytest.mark.slow  # seconds of CPU in the YAML parser; no real-time bound
def test_pathological_yaml_is_a_config_error() -> None:
    assert_parses_or_config_error("[" * 5000 + "]" * 5000)
    assert_parses_or_config_error("a: &a [*a]\n")
    laughs = "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    assert_parses_or_config_error(laughs + "accounts: *u\n")


# --- typed credentials (issue #5) --------------------------------------------------------


def test_typed_credentials_parse(tmp_path: Path) -> None:
    text = (
        ACCOUNT
        + """    credentials:
      type: ram_role_arn
      role_arn: acs:ram::123456789012:role/alb-reader
      role_session_name: exporter
      external_id: ext-SUPERSECRET
      policy: '{"Version": "1", "Statement": []}'
      duration: 2h
      sts_endpoint: sts-vpc.cn-hangzhou.aliyuncs.com
      source:
        type: oidc_role_arn
        role_arn: acs:ram::111111111111:role/exporter
        oidc_provider_arn: acs:ram::111111111111:oidc-provider/ack-rrsa
        oidc_token_file: /var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token
        sts_endpoint: http://127.0.0.1:8080/sts/
"""
    )
    credentials = parse(text, {}).accounts[0].credentials
    assert credentials == CredentialsConfig(
        type="ram_role_arn",
        role_arn="acs:ram::123456789012:role/alb-reader",
        role_session_name="exporter",
        external_id="ext-SUPERSECRET",
        policy='{"Version": "1", "Statement": []}',
        duration=7200.0,
        sts_endpoint="https://sts-vpc.cn-hangzhou.aliyuncs.com",
        source=CredentialsConfig(
            type="oidc_role_arn",
            role_arn="acs:ram::111111111111:role/exporter",
            oidc_provider_arn="acs:ram::111111111111:oidc-provider/ack-rrsa",
            oidc_token_file="/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token",
            sts_endpoint="http://127.0.0.1:8080/sts/",
        ),
    )
    out = summary(parse(text, {}))
    assert SECRET_MARK not in out
    assert (
        "credentials: ram_role_arn (role_arn=acs:ram::123456789012:role/alb-reader, "
        "role_session_name=exporter, external_id set, policy set, duration=2h, "
        "sts_endpoint=https://sts-vpc.cn-hangzhou.aliyuncs.com, source: oidc_role_arn ("
        "role_arn=acs:ram::111111111111:role/exporter" in out
    )


@pytest.mark.parametrize(
    ("block", "kind"),
    [
        ("access_key_id: a\n      access_key_secret: b", "access_key"),
        ("access_key_id: a\n      access_key_secret: b\n      security_token: c", "sts"),
        ("type: access_key\n      access_key_id: a\n      access_key_secret: b", "access_key"),
        ("type: ecs_ram_role", "ecs_ram_role"),
        ("type: ecs_ram_role\n      role_name: ExporterRole", "ecs_ram_role"),
        ("type: profile\n      profile: prod", "profile"),
        ("type: ram_role_arn\n      role_arn: acs:ram::1:role/r", "ram_role_arn"),
    ],
)
def test_credentials_kind(block: str, kind: str) -> None:
    credentials = parse(ACCOUNT + f"    credentials:\n      {block}\n", {}).accounts[0].credentials
    assert credentials is not None and credentials.kind == kind


def test_typed_credentials_summaries() -> None:
    text = ACCOUNT.replace("prod", "a") + (
        "    credentials: {type: ecs_ram_role}\n"
        "  - name: b\n    regions: [cn-hangzhou]\n"
        "    credentials: {type: profile, profile: ops}\n"
        "  - name: c\n    regions: [cn-hangzhou]\n"
        "    credentials: {type: ram_role_arn, role_arn: 'acs:ram::1:role/r'}\n"
        "  - name: d\n    regions: [cn-hangzhou]\n"
        "    credentials: {type: sts, access_key_id: STS.abcdefgh1234, "
        "access_key_secret: SUPERSECRET, security_token: SUPERSECRET}\n"
    )
    lines = [line.strip() for line in summary(parse(text, {})).splitlines()]
    assert [line for line in lines if line.startswith("credentials:")] == [
        "credentials: ecs_ram_role (role from instance metadata)",
        "credentials: profile (profile=ops)",
        "credentials: ram_role_arn (role_arn=acs:ram::1:role/r, source: default chain)",
        "credentials: sts (access_key_id=STS.****1234, access_key_secret inline (redacted), "
        "security_token inline (redacted))",
    ]


def test_job_events_block() -> None:
    config = parse("job_events:\n  output: /var/log/alb/events.jsonl\n" + ACCOUNT, {})
    assert (config.job_events.output, config.job_events.statuses) == (
        "/var/log/alb/events.jsonl",
        ("Failed",),
    )
    both = parse("job_events: {output: stdout, statuses: [Failed, Succeeded]}\n" + ACCOUNT, {})
    assert both.job_events.statuses == ("Failed", "Succeeded")
    assert "job_events: stdout (Failed, Succeeded; queue of 10000 lines)" in summary(both)
    assert both.job_events.queue_size == 10_000
    sized = parse("job_events: {output: stdout, queue_size: 500}\n" + ACCOUNT, {})
    assert sized.job_events.queue_size == 500
    with pytest.raises(ConfigError) as caught:
        parse(
            "job_events: {output: stdout, statuses: [Faild], format: json, queue_size: 0}\n"
            + ACCOUNT,
            {},
        )
    assert caught.value.problems == [
        "job_events.format: unknown key",
        'job_events.statuses[0]: must be Failed or Succeeded, got "Faild" (did you mean Failed?)',
        "job_events.queue_size: must be an integer from 1 to 1000000, got 0",
    ]


def test_job_events_link_takes_the_job_id_url_encoded() -> None:
    text = 'job_events:\n  link: "https://grafana.example/explore?q=job_id%3D{job_id}&x={job_id}"\n'
    events = parse(text + ACCOUNT, {}).job_events
    assert events.link_for("365F4154-92F6") == (
        "https://grafana.example/explore?q=job_id%3D365F4154-92F6&x=365F4154-92F6"
    )
    # Whatever the API sends stays inside the one query value.
    hostile = 'a/b?c=d&e"f<g> h#i%j\u00e9'
    assert events.link_for(hostile) == (
        "https://grafana.example/explore?q=job_id%3Da%2Fb%3Fc%3Dd%26e%22f%3Cg%3E%20h%23i%25j%C3%A9"
        "&x=a%2Fb%3Fc%3Dd%26e%22f%3Cg%3E%20h%23i%25j%C3%A9"
    )
    assert events.link_for("lone\ud800surrogate") == ""  # UTF-8 cannot carry it
    assert parse(ACCOUNT, {}).job_events.link_for("j") == ""  # no link configured
    plain = parse('job_events: {link: "http://grafana.internal:3000/{job_id}"}\n' + ACCOUNT, {})
    assert plain.job_events.link_for("j") == "http://grafana.internal:3000/j"
    # The summary names the host only: the rest of a link may carry a token.
    assert "job_events: off; failures link to grafana.example" in summary(
        parse(text.replace("{job_id}", "{job_id}&token=abc") + ACCOUNT, {})
    )
    assert "token" not in summary(parse(text.replace("x=", "token=abc&x=") + ACCOUNT, {}))


def test_a_default_written_in_the_config_is_not_an_environment_value(tmp_path: Path) -> None:
    # A path is not a secret, and a ${VAR:-default} default comes from the config file
    # itself: the user must see which file could not be read. A value that does come from
    # the environment stays hidden (it may be a secret put in the wrong key).
    missing = tmp_path / "nowhere"
    text = (
        "accounts:\n  - name: prod\n    regions: [cn-hangzhou]\n    credentials:\n"
        "      access_key_id: LTAI5tEXAMPLE1234\n"
        f"      access_key_secret_file: ${{ALB_UNSET_DIR:-{missing}}}/secret\n"
    )
    assert problems_of(text) == [
        f'accounts[0].credentials.access_key_secret_file: cannot read "{missing}/secret":'
        " No such file or directory"
    ]
    assert problems_of(text, {"ALB_UNSET_DIR": "env-SUPERSECRET-value"}) == [
        "accounts[0].credentials.access_key_secret_file: cannot read (value from the"
        " environment, not shown): No such file or directory"
    ]
