"""The quick-start values with TLS and basic auth on: the chart renders the exporter's
web config, and the ServiceMonitor (or PodMonitor) and the kubelet probes must agree with
it, or Prometheus and the kubelet get 401s and TLS errors from a healthy pod.

The rendered objects go through kubernetes-validate (built-in kinds) and prometheus-
operator's own CRD schemas, strictly (ci/validate_monitors.py); then the real exporter
runs with the web config the chart rendered, and the probes' own commands and a client
set up as the ServiceMonitor says (scheme, CA, server name, user and password Secret)
are run against it.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from tests.support import procs, tlsutil
from tests.support.artifacts import CHART, REPO
from tests.tools.test_artifacts import TOOLS_BIN, by_kind, run, tool

pytestmark = pytest.mark.tools

QUICKSTART = CHART / "ci" / "quickstart-values.yaml"
PASSWORD = "Chart-e2e-Scrape-Secret-51c3"
WRONG = "Chart-e2e-Wrong-Guess-9e0d"
SCRAPE_SECRET = "alb-jobs-exporter-scrape"
TLS_SECRET = "alb-jobs-exporter-tls"
NAMESPACE = "monitoring"


def render(values: Path, *args: str) -> tuple[str, list[dict[str, Any]]]:
    r = run(tool("helm"), "template", "rel", CHART, "--namespace", NAMESPACE, "-f", values, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout, [d for d in yaml.safe_load_all(r.stdout) if d]


def secured(password_hash: str) -> list[str]:
    return [
        "--set",
        "web.tls.enabled=true",
        "--set",
        f"web.tls.secretName={TLS_SECRET}",
        "--set",
        "web.basicAuth.enabled=true",
        "--set-string",
        f"web.basicAuth.passwordHash={password_hash}",
        "--set",
        f"web.basicAuth.secretName={SCRAPE_SECRET}",
    ]


def validate(rendered: str, tmp_path: Path) -> None:
    """kubernetes-validate --strict on the built-in kinds, the CRD schemas on the monitors."""
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    builtin = tmp_path / "builtin.yaml"
    builtin.write_text(
        yaml.safe_dump_all(
            [d for d in docs if d["kind"] not in ("ServiceMonitor", "PodMonitor", "PrometheusRule")]
        )
    )
    r = run(tool("kubernetes-validate"), "--strict", "--quiet", "-k", "1.30.0", builtin)
    assert r.returncode == 0, r.stdout + r.stderr
    everything = tmp_path / "rendered.yaml"
    everything.write_text(rendered)
    r = run(tools_python(), REPO / "ci" / "validate_monitors.py", everything)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("valid against prometheus-operator") == len(
        [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    )


def tools_python() -> Path:
    """The kubernetes-validate venv's python: it has jsonschema, the project's has not."""
    python = TOOLS_BIN.parent / "venv" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} not found: run ci/install-tools.sh")
    return python


class Pod:
    """What the rendered Deployment gives the exporter container."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        (deploy,) = by_kind(docs, "Deployment")
        self.spec = deploy["spec"]["template"]["spec"]
        (self.container,) = self.spec["containers"]
        self.volumes = {v["name"]: v for v in self.spec["volumes"]}
        self.mounts = {m["mountPath"]: m["name"] for m in self.container["volumeMounts"]}
        self.secrets = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}

    def flag(self, name: str) -> str | None:
        for arg in self.container["args"]:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]  # type: ignore[no-any-return]
        return None

    def secret_file(self, path: str) -> tuple[str, str]:
        """(Secret name, key) behind a file path in the container, through the mounts."""
        folder, _, file = path.rpartition("/")
        volume = self.volumes[self.mounts[folder]]
        if "secret" in volume:
            sources = [{"secret": volume["secret"]}]
        else:
            sources = volume["projected"]["sources"]
        for source in sources:
            secret = source["secret"]
            for item in secret.get("items", [{"key": file, "path": file}]):
                if item["path"] == file:
                    return secret["secretName" if "secretName" in secret else "name"], item["key"]
        raise AssertionError(f"{path}: no Secret behind it")

    def web_config(self) -> dict[str, Any]:
        path = self.flag("--web.config.file")
        assert path, "no --web.config.file"
        name, key = self.secret_file(path)
        return yaml.safe_load(self.secrets[name]["stringData"][key])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def password_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def rendered(password_hash: str) -> tuple[str, list[dict[str, Any]]]:
    return render(QUICKSTART, *secured(password_hash))


def test_quickstart_with_tls_and_basic_auth_validates(
    rendered: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    validate(rendered[0], tmp_path)


def test_quickstart_as_documented_validates(tmp_path: Path) -> None:
    text, docs = render(QUICKSTART)
    validate(text, tmp_path)
    pod = Pod(docs)
    assert pod.flag("--web.config.file") is None
    assert pod.container["readinessProbe"]["httpGet"] == {
        "path": "/-/ready",
        "port": "http-metrics",
    }
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["scheme"] == "http"
    assert {"basicAuth", "tlsConfig"}.isdisjoint(sm["spec"]["endpoints"][0])
    assert by_kind(docs, "PrometheusRule") and [
        c for c in by_kind(docs, "ConfigMap") if "alb-jobs-exporter.json" in c.get("data", {})
    ]


def test_monitor_probes_and_web_config_agree(
    rendered: tuple[str, list[dict[str, Any]]], password_hash: str
) -> None:
    docs = rendered[1]
    pod = Pod(docs)
    web = pod.web_config()
    (sm,) = by_kind(docs, "ServiceMonitor")
    (endpoint,) = sm["spec"]["endpoints"]
    (service,) = by_kind(docs, "Service")
    # scheme: https exactly when the exporter serves TLS, from the mounted TLS Secret
    assert endpoint["scheme"] == "https"
    for key in ("cert_file", "key_file"):
        assert pod.secret_file(web["tls_server_config"][key]) == (
            TLS_SECRET,
            key.replace("_file", "").replace("cert", "tls.crt").replace("key", "tls.key"),
        )
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": TLS_SECRET, "key": "ca.crt"}},
        "serverName": f"{service['metadata']['name']}.{NAMESPACE}.svc",
    }
    # auth: the monitor's user is the web config's only user, its password the probes'
    ((user, hashed),) = web["basic_auth_users"].items()
    assert hashed == password_hash
    username_ref = endpoint["basicAuth"]["username"]
    assert pod.secrets[username_ref["name"]]["stringData"][username_ref["key"]] == user
    password_ref = endpoint["basicAuth"]["password"]
    assert (password_ref["name"], password_ref["key"]) == (SCRAPE_SECRET, "password")
    for probe_name, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        probe = pod.container[probe_name]
        assert "httpGet" not in probe, "the kubelet's httpGet cannot send the password"
        _, _, _, url, folder = probe["exec"]["command"]
        assert url == f"https://127.0.0.1:9868{path}"
        assert pod.secret_file(f"{folder}/username") == (username_ref["name"], username_ref["key"])
        assert pod.secret_file(f"{folder}/password") == (SCRAPE_SECRET, "password")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[tlsutil.CA, tlsutil.Issued]:
    folder = tmp_path_factory.mktemp("pki")
    ca = tlsutil.make_ca(folder / "ca")
    server = ca.issue(
        folder / "server",
        "server",
        server=True,
        dns_names=(f"rel-alb-jobs-exporter.{NAMESPACE}.svc",),
    )
    return ca, server


@pytest.fixture(scope="module")
def pod_files(
    rendered: tuple[str, list[dict[str, Any]]],
    pki: tuple[tlsutil.CA, tlsutil.Issued],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """The container's files, as the kubelet would mount them, under a temp folder:
    the rendered web config (its paths moved there) and the Secrets' contents."""
    pod = Pod(rendered[1])
    root = tmp_path_factory.mktemp("pod")
    secrets: dict[tuple[str, str], bytes] = {
        (TLS_SECRET, "tls.crt"): pki[1].cert.read_bytes(),
        (TLS_SECRET, "tls.key"): pki[1].key.read_bytes(),
        (TLS_SECRET, "ca.crt"): pki[0].cert.read_bytes(),
        (SCRAPE_SECRET, "password"): PASSWORD.encode() + b"\n",
    }
    for name, secret in pod.secrets.items():
        for key, value in secret.get("stringData", {}).items():
            secrets[(name, key)] = value.encode()
        for key, value in secret.get("data", {}).items():
            secrets[(name, key)] = base64.b64decode(value)
    files: dict[str, Path] = {}
    for mount in pod.mounts:
        volume = pod.volumes[pod.mounts[mount]]
        if "secret" not in volume and "projected" not in volume:
            continue
        folder = root / mount.strip("/")
        folder.mkdir(parents=True)
        files[mount] = folder
        sources = (
            [{"secret": volume["secret"]}] if "secret" in volume else volume["projected"]["sources"]
        )
        for source in sources:
            secret = source["secret"]
            name = secret.get("secretName", secret.get("name"))
            items = secret.get("items") or [
                {"key": k, "path": k} for (n, k) in secrets if n == name
            ]
            for item in items:
                (folder / item["path"]).write_bytes(secrets[(name, item["key"])])
    web_path = pod.flag("--web.config.file")
    assert web_path
    text = (root / web_path.strip("/")).read_text()
    for mount, folder in files.items():
        text = text.replace(mount + "/", f"{folder}/")
    (root / "web.yaml").write_text(text)
    files["web.yaml"] = root / "web.yaml"
    return files


@pytest.fixture(scope="module")
def exporter(pod_files: dict[str, Path]) -> Iterator[procs.Proc]:
    args = procs.exporter_args(None, "--demo", "--web.config.file", str(pod_files["web.yaml"]))
    with procs.start(args) as proc:
        yield proc


def probe_command(
    rendered: tuple[str, list[dict[str, Any]]], name: str, pod_files: dict[str, Path], url: str
) -> list[str]:
    """The probe's exec command, run here: the image's python3 is this interpreter, the
    URL's port the test exporter's, the folder the test's copy of the mounted Secrets."""
    python, flag, script, probe_url, folder = Pod(rendered[1]).container[name]["exec"]["command"]
    assert python == "python3"
    path = probe_url.split("9868", 1)[1]
    return [sys.executable, flag, script, url + path, str(pod_files[folder])]


@pytest.mark.e2e
def test_the_probes_and_the_monitor_get_through_to_the_exporter(
    rendered: tuple[str, list[dict[str, Any]]],
    pod_files: dict[str, Path],
    pki: tuple[tlsutil.CA, tlsutil.Issued],
    exporter: procs.Proc,
) -> None:
    assert exporter.url.startswith("https://")
    for name in ("livenessProbe", "readinessProbe"):
        command = probe_command(rendered, name, pod_files, exporter.url)
        procs.wait_until(lambda c=command: run(*c).returncode == 0, timeout=30)
    # and the probe really checks: the wrong password fails it
    folder = pod_files["/etc/alb-jobs-exporter-probe"]
    (folder / "password").write_text(WRONG)
    try:
        r = run(*probe_command(rendered, "livenessProbe", pod_files, exporter.url))
        assert r.returncode != 0 and "401" in r.stderr
    finally:
        (folder / "password").write_text(PASSWORD)
    # Prometheus, configured as the ServiceMonitor says: https, the Secret's CA, the
    # service's name as the server name, the user and password from their Secrets.
    (sm,) = by_kind(rendered[1], "ServiceMonitor")
    (endpoint,) = sm["spec"]["endpoints"]
    user_ref = endpoint["basicAuth"]["username"]
    user = Pod(rendered[1]).secrets[user_ref["name"]]["stringData"][user_ref["key"]]
    ca = pki[0]
    with httpx.Client(verify=tlsutil.client_context(ca), timeout=10) as client:
        url = exporter.url.replace("https://", f"{endpoint['scheme']}://") + endpoint["path"]
        sni = {"sni_hostname": endpoint["tlsConfig"]["serverName"]}
        ok = client.get(url, auth=(user, PASSWORD), extensions=sni)
        assert ok.status_code == 200 and "alb_exporter_up" in ok.text
        assert client.get(url, extensions=sni).status_code == 401
