"""End to end: `--web.config.file` with real TLS connections to the real exporter process.

Certificates are made at test time by a CA the test creates; the exporter runs in demo
mode (its built-in simulator), which is enough to exercise the web layer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from tests.support import procs, tlsutil

pytestmark = pytest.mark.e2e

PASSWORD = "Tls-e2e-Scrape-Secret-7d1f"
NEW_PASSWORD = "Tls-e2e-Rotated-Secret-42aa"
WRONG_PASSWORD = "Tls-e2e-Wrong-Guess-0b0b"


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


class Pki:
    def __init__(self, folder: Path) -> None:
        self.ca = tlsutil.make_ca(folder / "ca")
        self.server = self.ca.issue(folder / "server", "server", server=True)
        self.client = self.ca.issue(folder / "client", "client", server=False)
        rogue_ca = tlsutil.make_ca(folder / "rogue", "rogue-ca")
        self.rogue_client = rogue_ca.issue(folder / "rogue", "rogue-client", server=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def web_config(
    pki: Pki, users: dict[str, str], client_auth: str = "RequireAndVerifyClientCert"
) -> str:
    lines = [
        "tls_server_config:",
        f"  cert_file: {pki.server.cert}",
        f"  key_file: {pki.server.key}",
        f"  client_ca_file: {pki.ca.cert}",
        f"  client_auth_type: {client_auth}",
        "http_server_config:",
        "  headers:",
        "    X-Frame-Options: deny",
        "basic_auth_users:",
        *(f"  {user}: '{hashed}'" for user, hashed in users.items()),
    ]
    return "\n".join(lines) + "\n"


def demo_args(web_file: Path) -> tuple[str, ...]:
    return ("--demo", "--web.config.file", str(web_file))


@pytest.fixture
def served(
    pki: Pki, tmp_path: Path, start_exporter: procs.Exporters
) -> Iterator[tuple[procs.Proc, Path]]:
    web_file = tmp_path / "web.yml"
    web_file.write_text(web_config(pki, {"prometheus": _hash(PASSWORD)}))
    # Not waited for: /-/ready needs the client certificate and the password too.
    with start_exporter(None, *demo_args(web_file), ready=False) as proc:
        yield proc, web_file


def client(pki: Pki, identity: tlsutil.Issued | None) -> httpx.Client:
    return httpx.Client(verify=tlsutil.client_context(pki.ca, identity), timeout=10)


def test_mutual_tls_and_basic_auth_guard_every_path(
    pki: Pki, served: tuple[procs.Proc, Path]
) -> None:
    proc, _ = served
    assert proc.url.startswith("https://127.0.0.1:")
    with client(pki, pki.client) as c:
        r = c.get(proc.url + "/metrics", auth=("prometheus", PASSWORD))
        assert r.status_code == 200
        assert "alb_exporter_build_info" in r.text
        assert r.headers["X-Frame-Options"] == "deny"
        # As in exporter-toolkit, basic auth covers every path, health endpoints included.
        for path in ("/metrics", "/-/healthy", "/-/ready", "/", "/probe?account=a&region=b"):
            for auth in (None, ("prometheus", WRONG_PASSWORD), ("nobody", PASSWORD)):
                denied = c.get(proc.url + path, auth=auth)
                assert denied.status_code == 401, (path, auth)
                assert denied.headers["WWW-Authenticate"].startswith("Basic")
                assert denied.headers["X-Frame-Options"] == "deny"
        denied = c.post(proc.url + "/-/reload")
        assert denied.status_code == 401
        assert c.get(proc.url + "/-/healthy", auth=("prometheus", PASSWORD)).status_code == 200


def test_client_certificate_is_required_and_verified(
    pki: Pki, served: tuple[procs.Proc, Path]
) -> None:
    proc, _ = served
    for identity in (None, pki.rogue_client):
        with client(pki, identity) as c, pytest.raises(httpx.TransportError):
            c.get(proc.url + "/-/healthy", auth=("prometheus", PASSWORD))
    # The server's certificate is checked against the test CA: a client trusting only
    # another CA refuses it.
    rogue_trust = httpx.Client(verify=tlsutil.client_context(tlsutil_rogue_ca(pki)), timeout=10)
    with rogue_trust, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        rogue_trust.get(proc.url + "/-/healthy")
    # Failed handshakes do not disturb the server.
    with client(pki, pki.client) as c:
        assert c.get(proc.url + "/-/healthy", auth=("prometheus", PASSWORD)).status_code == 200


def tlsutil_rogue_ca(pki: Pki) -> tlsutil.CA:
    return tlsutil.make_ca(pki.rogue_client.cert.parent / "trust", "another-ca")


def test_changed_file_takes_effect_without_restart(
    pki: Pki, served: tuple[procs.Proc, Path]
) -> None:
    proc, web_file = served
    with client(pki, pki.client) as c:
        assert c.get(proc.url + "/metrics", auth=("prometheus", PASSWORD)).status_code == 200
        # Replaced the way Kubernetes updates a mounted secret: a new file renamed over.
        staged = web_file.with_suffix(".new")
        staged.write_text(web_config(pki, {"grafana": _hash(NEW_PASSWORD)}))
        staged.replace(web_file)
        procs.wait_until(
            lambda: c.get(proc.url + "/metrics", auth=("grafana", NEW_PASSWORD)).status_code == 200,
            timeout=10,
        )
        assert c.get(proc.url + "/metrics", auth=("prometheus", PASSWORD)).status_code == 401

        # A broken file is logged and the running config stays.
        staged.write_text(web_config(pki, {"grafana": "not-a-hash"}))
        staged.replace(web_file)
        # Changes are noticed on the next connection or request.
        assert c.get(proc.url + "/metrics", auth=("grafana", NEW_PASSWORD)).status_code == 200
        procs.wait_until(lambda: "not reloaded" in proc.output(), timeout=10)
        assert c.get(proc.url + "/metrics", auth=("grafana", NEW_PASSWORD)).status_code == 200
    assert "basic_auth_users.grafana: must be a bcrypt hash" in proc.output()
    assert proc.stop() == 0


def test_passwords_are_never_logged(pki: Pki, served: tuple[procs.Proc, Path]) -> None:
    proc, _ = served
    with client(pki, pki.client) as c:
        for password in (PASSWORD, WRONG_PASSWORD):
            for path in ("/metrics", "/-/ready", "/nope"):
                c.get(proc.url + path, auth=("prometheus", password))
    time.sleep(0.5)
    assert proc.stop() == 0
    logs = proc.output()
    assert "level=debug" in logs  # the run really logged at debug level
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in logs


def test_verify_if_given_accepts_clients_without_certificates(
    pki: Pki, tmp_path: Path, start_exporter: procs.Exporters
) -> None:
    web_file = tmp_path / "web.yml"
    web_file.write_text(
        web_config(pki, {"prometheus": _hash(PASSWORD)}, client_auth="VerifyClientCertIfGiven")
    )
    with start_exporter(None, *demo_args(web_file), ready=False) as proc:
        with client(pki, None) as c:
            assert c.get(proc.url + "/-/healthy", auth=("prometheus", PASSWORD)).status_code == 200
        with client(pki, pki.client) as c:
            assert c.get(proc.url + "/-/healthy", auth=("prometheus", PASSWORD)).status_code == 200
        with client(pki, pki.rogue_client) as c, pytest.raises(httpx.TransportError):
            c.get(proc.url + "/-/healthy", auth=("prometheus", PASSWORD))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "tls_server_config:\n  cert_file: x.crt\n  key_file: x.key\n"
            "  client_auth_type: Always\n",
            "--web.config.file: tls_server_config.client_auth_type: must be one of",
        ),
        ("basic_auth_users:\n  alice: plain\n", "--web.config.file: basic_auth_users.alice: "),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            '--web.config.file: tls_server_config.cert_file: cannot read "',
        ),
    ],
)
def test_bad_web_config_exits_2_naming_the_key(tmp_path: Path, text: str, problem: str) -> None:
    web_file = tmp_path / "web.yml"
    web_file.write_text(text)
    r = procs.run(procs.exporter_args(None, *demo_args(web_file)), timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"alb-jobs-exporter: error: {problem}"), r.stderr
    assert "plain" not in r.stderr
