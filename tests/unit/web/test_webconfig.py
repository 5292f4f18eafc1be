"""The web config file: strict parsing, TLS contexts, basic auth and reload on change.

Each tests/fixtures/webconfig/invalid/NAME.yaml has a sibling NAME.expected holding the
exact problem lines, with `web.yml` as the source name.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.errors import ConfigError
from exporter.web import basic_auth, webconfig
from tests.support import procs, tlsutil

PASSWORD = "s3cret-Scrape-Pw"
INVALID = Path(__file__).resolve().parent / "fixtures" / "invalid"


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[tlsutil.CA, tlsutil.Issued]]:
    folder = tmp_path_factory.mktemp("pki")
    ca = tlsutil.make_ca(folder)
    yield ca, ca.issue(folder, "server", server=True)


def _problems(text: str, base_dir: str = "/etc/exporter") -> list[str]:
    with pytest.raises(ConfigError) as info:
        webconfig.parse(text, source="web.yml", base_dir=base_dir)
    return info.value.problems


# --- parsing ----------------------------------------------------------------------------


def test_full_config_parses_with_paths_relative_to_the_file() -> None:
    hashed = _hash(PASSWORD)
    cfg = webconfig.parse(
        f"""
tls_server_config:
  cert_file: server.crt
  key_file: /abs/server.key
  client_ca_file: ca.crt
  client_auth_type: RequireAndVerifyClientCert
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: true
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  alice: '{hashed}'
""",
        base_dir="/etc/exporter",
    )
    assert cfg.tls == webconfig.TLSServerConfig(
        cert_file="/etc/exporter/server.crt",
        key_file="/abs/server.key",
        client_ca_file="/etc/exporter/ca.crt",
        client_auth_type="RequireAndVerifyClientCert",
        min_version="TLS13",
        max_version="TLS13",
        cipher_suites=("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",),
    )
    assert dict(cfg.users) == {"alice": hashed}
    assert cfg.headers == (
        ("X-Frame-Options", "deny"),
        ("Strict-Transport-Security", "max-age=31536000"),
    )
    assert hashed not in repr(cfg)


@pytest.mark.parametrize(
    "text", ["", "# nothing\n", "tls_server_config:\n", "basic_auth_users: {}\n"]
)
def test_empty_sections_mean_plain_http_without_auth(text: str) -> None:
    assert webconfig.parse(text) == webconfig.WebConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tls_server_confg: {}\n",
            ["tls_server_confg: unknown key (did you mean tls_server_config?)"],
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  keyfile: c\n",
            ["tls_server_config.keyfile: unknown key (did you mean key_file?)"],
        ),
        (
            "tls_server_config:\n  cert_file: a.crt\n",
            ["tls_server_config.key_file: required when TLS is configured"],
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAnyClientCert\n",
            [
                "tls_server_config.client_auth_type: RequireAnyClientCert is not supported: "
                "Python's ssl module cannot request a client certificate without verifying it; "
                "use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
            ],
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
            [
                "tls_server_config.client_auth_type: must be one of NoClientCert, "
                "VerifyClientCertIfGiven, RequireAndVerifyClientCert, got 'Sometimes'"
            ],
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            [
                "tls_server_config.client_ca_file: required by client_auth_type "
                "RequireAndVerifyClientCert"
            ],
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca\n",
            [
                "tls_server_config.client_ca_file: set, but client_auth_type NoClientCert "
                "never asks for client certificates"
            ],
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n",
            [
                "tls_server_config.min_version: TLS11 is not supported: "
                "TLS 1.0 and 1.1 are insecure and not supported"
            ],
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n"
            "  max_version: TLS12\n",
            ["tls_server_config.min_version: TLS13 is above max_version TLS12"],
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            [
                "tls_server_config.cipher_suites[0]: unsupported cipher suite "
                "'TLS_RSA_WITH_RC4_128_SHA'; supported: " + ", ".join(webconfig.CIPHER_SUITES)
            ],
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [X25519]\n",
            [
                "tls_server_config.curve_preferences: "
                "curve preferences is not supported by this exporter"
            ],
        ),
        (
            "rate_limit: {burst: 1}\n",
            ["rate_limit: rate limiting is not supported by this exporter"],
        ),
        (
            "http_server_config:\n  headers:\n    X-Powered-By: me\n",
            ["http_server_config.headers['X-Powered-By']: this header cannot be configured"],
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            ["http_server_config.headers['X-Frame-Options']: must be one of deny, sameorigin"],
        ),
        (
            "http_server_config:\n  http2: maybe\n",
            ["http_server_config.http2: must be true or false"],
        ),
        (
            "basic_auth_users:\n  alice: not-a-hash-but-maybe-a-password\n",
            ["basic_auth_users.alice: must be a bcrypt hash ($2a$, $2b$ or $2y$, cost 4 to 31)"],
        ),
        (
            "basic_auth_users: [alice]\n",
            ["basic_auth_users: must be a mapping of user name to bcrypt hash, got list"],
        ),
        ("- a\n", ["web.yml: the top level must be a mapping"]),
        (
            "a: [\n",
            [
                "web.yml: YAML syntax error at line 2 column 1: "
                "while parsing a flow node; expected the node content, but found '<stream end>'"
            ],
        ),
    ],
)
def test_invalid_config_names_the_key(text: str, expected: list[str]) -> None:
    assert _problems(text) == expected


def invalid_cases() -> list[str]:
    return sorted(path.stem for path in INVALID.glob("*.yaml"))


def _expected(name: str, source: str = "web.yml") -> list[str]:
    lines = (INVALID / f"{name}.expected").read_text().splitlines()
    return [
        f"{source}: {line.removeprefix('web.yml: ')}" if line.startswith("web.yml: ") else line
        for line in lines
    ]


def test_every_invalid_fixture_has_its_expected_file() -> None:
    assert len(invalid_cases()) >= 6
    assert {path.stem for path in INVALID.glob("*.expected")} == set(invalid_cases())


@pytest.mark.parametrize("name", invalid_cases())
def test_invalid_fixture_reports_exact_problems(name: str) -> None:
    text = (INVALID / f"{name}.yaml").read_text(encoding="utf-8")
    assert _problems(text) == _expected(name)


def test_merge_keys_are_not_duplicate_keys() -> None:
    hashed = _hash(PASSWORD)
    cfg = webconfig.parse(f"basic_auth_users:\n  <<: {{alice: &h '{hashed}'}}\n  <<: {{bob: *h}}\n")
    assert dict(cfg.users) == {"alice": hashed, "bob": hashed}


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems(
        "tls_server_config:\n  cert_file: a\n  min_version: TLS9\n"
        "basic_auth_users:\n  bob: x\nextra: 1\n"
    )
    assert [p.split(":")[0] for p in problems] == [
        "extra",
        "tls_server_config.min_version",
        "tls_server_config.key_file",
        "basic_auth_users.bob",
    ]


def test_a_bad_hash_or_password_like_value_is_never_echoed() -> None:
    text = "basic_auth_users:\n  alice: hunter2-plaintext\n"
    assert "hunter2" not in "\n".join(_problems(text))
    text = "basic_auth_users:\n  alice: ok\n  alice: hunter2-plaintext\n"
    assert "hunter2" not in "\n".join(_problems(text))


# --- property: parse() never fails with anything but ConfigError --------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["TLS12", "NoClientCert", "deny", "2024-13-45", "a\0b", "$2b$04$x"]),
)
_keys = st.one_of(
    st.sampled_from(
        [
            *webconfig.TOP_LEVEL_KEYS,
            *webconfig.TLS_KEYS,
            *webconfig.HTTP_KEYS,
            *webconfig.ALLOWED_HEADERS,
            "<<",
        ]
    ),
    st.text(max_size=10),
    st.integers(),
)
_documents = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=6)
    ),
    max_leaves=25,
)


def _parses_or_config_error(text: str) -> None:
    try:
        result = webconfig.parse(text, source="web.yml")
    except ConfigError as exc:
        assert exc.problems
        assert all("\n" not in problem for problem in exc.problems)
    else:
        assert isinstance(result, webconfig.WebConfig)


@pytest.mark.slow
@settings(max_examples=300)
@given(_documents)
def test_any_yaml_document_parses_or_raises_config_error(document: object) -> None:
    _parses_or_config_error(yaml.safe_dump(document))


@settings(max_examples=300)
@given(st.text())
def test_any_text_parses_or_raises_config_error(text: str) -> None:
    _parses_or_config_error(text)


@settings(max_examples=200)
@given(st.text(alphabet=":-[]{}&*!|>'\"%@`#,?\n\t ab1$<\x07", max_size=60))
def test_yaml_punctuation_parses_or_raises_config_error(text: str) -> None:
    _parses_or_config_error(text)


# --- startup: a bad file is one line per problem and exit 2 --------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("name", invalid_cases())
def test_bad_web_config_at_startup_exits_2_without_a_traceback(tmp_path: Path, name: str) -> None:
    web_file = tmp_path / "web.yml"
    web_file.write_bytes((INVALID / f"{name}.yaml").read_bytes())
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--demo",
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.config.file",
            str(web_file),
        ],
        capture_output=True,
        text=True,
        cwd=procs.REPO,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        f"alb-jobs-exporter: error: --web.config.file: {problem}"
        for problem in _expected(name, str(web_file))
    ]


# --- TLS context ---------------------------------------------------------------------------


def test_ssl_context_loads_and_verifies_clients(pki: tuple[tlsutil.CA, tlsutil.Issued]) -> None:
    ca, server = pki
    tls = webconfig.TLSServerConfig(
        str(server.cert), str(server.key), str(ca.cert), "RequireAndVerifyClientCert", "TLS12"
    )
    ctx = webconfig.build_ssl_context(tls)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3


def test_ssl_context_errors_name_the_key(
    pki: tuple[tlsutil.CA, tlsutil.Issued], tmp_path: Path
) -> None:
    _, server = pki
    other = tlsutil.make_ca(tmp_path, "other").issue(tmp_path, "other-server", server=True)
    with pytest.raises(ConfigError) as info:
        webconfig.build_ssl_context(
            webconfig.TLSServerConfig(str(server.cert), str(tmp_path / "missing.key"))
        )
    assert info.value.problems == [
        f'tls_server_config.key_file: cannot read "{tmp_path}/missing.key"'
    ]
    with pytest.raises(
        ConfigError,
        match=r"^tls_server_config.cert_file: cannot load the certificate with key_file: ",
    ):
        webconfig.build_ssl_context(webconfig.TLSServerConfig(str(server.cert), str(other.key)))
    with pytest.raises(ConfigError, match=r"^tls_server_config.client_ca_file: cannot load CA"):
        webconfig.build_ssl_context(
            webconfig.TLSServerConfig(
                str(server.cert), str(server.key), str(server.key), "VerifyClientCertIfGiven"
            )
        )


# --- basic auth -----------------------------------------------------------------------------


def _environ(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


class CountingCheck:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls += 1
        return bcrypt.checkpw(password, hashed)


def test_basic_auth_accepts_only_the_right_password() -> None:
    auth = basic_auth.BasicAuth({"alice": _hash(PASSWORD)})
    assert auth(_environ("alice", PASSWORD))
    assert not auth(_environ("alice", PASSWORD + "x"))
    assert not auth(_environ("mallory", PASSWORD))
    assert not auth({})
    assert not auth({"HTTP_AUTHORIZATION": "Bearer abc"})
    assert not auth({"HTTP_AUTHORIZATION": "Basic !!!"})
    assert not auth(_environ("alice", "x" * 100))  # beyond bcrypt's 72 bytes


def test_successes_are_cached_failures_are_not() -> None:
    check = CountingCheck()
    auth = basic_auth.BasicAuth({"alice": _hash(PASSWORD)}, checkpw=check)
    for _ in range(5):
        assert auth.check("alice", PASSWORD)
    assert check.calls == 1
    for _ in range(3):
        assert not auth.check("alice", "wrong")
    assert check.calls == 4
    # An unknown user still costs a bcrypt check, so timing does not reveal names.
    assert not auth.check("nobody", PASSWORD)
    assert check.calls == 5


def test_cache_is_bounded_and_holds_no_plaintext() -> None:
    # User names long enough that a digest (random-looking bytes) cannot hold one by
    # chance: "u3" turned up in a 32-byte digest about once in 2,000 runs.
    users = {f"operator-{i}": _hash(f"pw-{i}-{PASSWORD}") for i in range(4)}
    auth = basic_auth.BasicAuth(users, cache_size=2)
    for i in range(4):
        assert auth.check(f"operator-{i}", f"pw-{i}-{PASSWORD}")
    entries = list(auth._cache)
    assert len(entries) == 2
    for entry in entries:
        assert PASSWORD.encode() not in entry and b"operator-3" not in entry


def test_parse_basic() -> None:
    assert basic_auth.parse_basic("Basic " + base64.b64encode(b"a:b:c").decode()) == ("a", "b:c")
    assert basic_auth.parse_basic("basic " + base64.b64encode(b"a:").decode()) == ("a", "")
    assert basic_auth.parse_basic("Basic " + base64.b64encode(b"nocolon").decode()) is None
    assert basic_auth.parse_basic(None) is None


# --- reload on change ----------------------------------------------------------------------


def _touch_later(path: Path) -> None:
    # Some file systems keep coarse mtimes: make the change visible regardless.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_live_config_picks_up_new_users_and_keeps_the_old_on_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: '{_hash(PASSWORD)}'\n")
    live = webconfig.LiveWebConfig(str(path))
    assert not live.tls_enabled
    assert live.authenticate(_environ("alice", PASSWORD))
    assert not live.authenticate(_environ("bob", "bob-pw"))

    path.write_text(f"basic_auth_users:\n  bob: '{_hash('bob-pw')}'\n")
    _touch_later(path)
    assert live.authenticate(_environ("bob", "bob-pw"))
    assert not live.authenticate(_environ("alice", PASSWORD))

    with caplog.at_level(logging.ERROR, logger="exporter.web.webconfig"):
        path.write_text("basic_auth_users:\n  bob: [broken\n")
        _touch_later(path)
        for _ in range(3):
            assert live.authenticate(_environ("bob", "bob-pw"))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "a broken file is reported once, not on every request"
    assert "keeping the running one" in errors[0].getMessage()


@pytest.mark.parametrize("name", invalid_cases())
def test_live_config_keeps_serving_the_old_config_when_the_file_goes_bad(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        f"basic_auth_users:\n  bob: '{_hash('bob-pw')}'\n"
    )
    live = webconfig.LiveWebConfig(str(path))
    assert live.authenticate(_environ("bob", "bob-pw"))

    with caplog.at_level(logging.ERROR, logger="exporter.web.webconfig"):
        path.write_bytes((INVALID / f"{name}.yaml").read_bytes())
        _touch_later(path)
        for _ in range(3):
            assert live.authenticate(_environ("bob", "bob-pw"))
            assert not live.authenticate(_environ("alice", PASSWORD))
            assert live.headers() == (("X-Frame-Options", "deny"),)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    problems = "; ".join(_expected(name, str(path)))
    assert errors == [f"web config {path} not reloaded, keeping the running one: {problems}"]


def test_live_config_refuses_to_switch_tls_on(
    tmp_path: Path, pki: tuple[tlsutil.CA, tlsutil.Issued], caplog: pytest.LogCaptureFixture
) -> None:
    _, server = pki
    path = tmp_path / "web.yml"
    path.write_text("")
    live = webconfig.LiveWebConfig(str(path))
    path.write_text(f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n")
    _touch_later(path)
    with caplog.at_level(logging.ERROR, logger="exporter.web.webconfig"):
        live.refresh()
    assert not live.tls_enabled
    assert "turning TLS on or off needs a restart" in caplog.text


def test_live_config_reloads_a_rotated_certificate(
    tmp_path: Path, pki: tuple[tlsutil.CA, tlsutil.Issued]
) -> None:
    ca, server = pki
    cert, key = tmp_path / "s.crt", tmp_path / "s.key"
    cert.write_bytes(server.cert.read_bytes())
    key.write_bytes(server.key.read_bytes())
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n")
    live = webconfig.LiveWebConfig(str(path))
    first = live.ssl_context()
    assert live.ssl_context() is first  # unchanged files: no rebuild
    rotated = ca.issue(tmp_path / "new", "server2", server=True)
    cert.write_bytes(rotated.cert.read_bytes())
    key.write_bytes(rotated.key.read_bytes())
    _touch_later(cert)
    assert live.ssl_context() is not first
