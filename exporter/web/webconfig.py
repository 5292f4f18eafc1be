"""`--web.config.file`: TLS and basic auth in the Prometheus exporter-toolkit format.

`load(path)` parses the file with the main config's strict YAML layer (`yamlstrict`:
unknown keys are errors, each problem one line with its key path or position) and builds
what the server needs: an `ssl.SSLContext`, a basic-auth check and extra response
headers. `LiveWebConfig` serves them and re-reads the file, and the certificate files it
names, when they change.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from exporter import yamlstrict
from exporter.errors import ConfigError
from exporter.web.basic_auth import BasicAuth

log = logging.getLogger(__name__)

TOP_LEVEL_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
)
HTTP_KEYS = ("http2", "headers")
# Toolkit keys this exporter does not implement: named as such rather than "unknown".
_UNSUPPORTED = {
    "rate_limit": "rate limiting",
    "tls_server_config.cert": "an inline certificate (use cert_file)",
    "tls_server_config.key": "an inline key (use key_file)",
    "tls_server_config.client_ca": "inline client CAs (use client_ca_file)",
    "tls_server_config.curve_preferences": "curve preferences",
    "tls_server_config.client_allowed_sans": "client SAN matching",
}

#: client_auth_type -> verify mode. Python's ssl module cannot ask for a client
#: certificate without verifying it, so the toolkit's RequestClientCert and
#: RequireAnyClientCert (which accept any, unverified certificate) are refused.
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
#: Go cipher-suite names (TLS 1.2, AEAD only) -> OpenSSL names.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
#: TLS 1.3 suites are not configurable (as in Go): accepted and ignored.
TLS13_CIPHER_SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)
#: The headers the toolkit lets users set, with the allowed values where it restricts them.
ALLOWED_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class TLSServerConfig:
    """File paths are absolute (relative ones are resolved against the web config's folder)."""

    cert_file: str
    key_file: str
    client_ca_file: str = ""
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)


@dataclass(frozen=True)
class WebConfig:
    tls: TLSServerConfig | None = None
    # user -> bcrypt hash; read-only so a shared WebConfig cannot be changed under a reader.
    users: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    headers: tuple[tuple[str, str], ...] = ()


# --- parsing -----------------------------------------------------------------------------


def parse(text: str, source: str = "<web config>", base_dir: str = ".") -> WebConfig:
    """Parse the YAML `text`; relative file paths are taken relative to `base_dir`.

    Raises ConfigError carrying every problem found. Certificate files are not read here
    (see `build_ssl_context`).
    """
    raw, problems = yamlstrict.load(text, source)
    if raw is None:
        raw = {}  # an empty file is valid: plain HTTP, no auth (as in the toolkit)
    if not isinstance(raw, dict):
        raise ConfigError([*problems, f"{source}: the top level must be a mapping"])
    ctx = _Context(problems, base_dir)
    config = _config(ctx, raw)
    if ctx.problems or config is None:
        raise ConfigError(ctx.problems)
    return config


def load(path: str) -> WebConfig:
    """Read and parse the web config file at `path`."""
    text = yamlstrict.read(path)
    return parse(text, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


@dataclass
class _Context:
    problems: list[str]
    base_dir: str

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")


def _config(ctx: _Context, raw: dict[Any, Any]) -> WebConfig | None:
    data = _mapping(ctx, raw, "", TOP_LEVEL_KEYS)
    if data is None:
        return None
    tls = _tls(ctx, data["tls_server_config"]) if "tls_server_config" in data else None
    headers = _http(ctx, data["http_server_config"]) if "http_server_config" in data else ()
    users = _users(ctx, data["basic_auth_users"]) if "basic_auth_users" in data else {}
    if ctx.problems:
        return None
    return WebConfig(tls=tls, users=MappingProxyType(users), headers=headers)


def _tls(ctx: _Context, raw: object) -> TLSServerConfig | None:
    path = "tls_server_config"
    if raw is None:
        return None
    data = _mapping(ctx, raw, path, TLS_KEYS)
    if data is None:
        return None
    files = {
        key: _path(ctx, data.get(key), f"{path}.{key}")
        for key in ("cert_file", "key_file", "client_ca_file")
    }
    auth = _choice(
        ctx,
        data.get("client_auth_type", "NoClientCert"),
        f"{path}.client_auth_type",
        tuple(CLIENT_AUTH_TYPES),
        _UNVERIFIED_CLIENT_AUTH,
        "Python's ssl module cannot request a client certificate without verifying it; "
        "use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file",
    )
    versions = {
        key: _choice(
            ctx,
            data.get(key, default),
            f"{path}.{key}",
            tuple(TLS_VERSIONS),
            ("TLS10", "TLS11"),
            "TLS 1.0 and 1.1 are insecure and not supported",
        )
        for key, default in (("min_version", "TLS12"), ("max_version", "TLS13"))
    }
    ciphers = _ciphers(ctx, data.get("cipher_suites"), f"{path}.cipher_suites")
    prefer = data.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        ctx.problem(f"{path}.prefer_server_cipher_suites", "must be true or false")
    if not any(files.values()) and "client_auth_type" not in data:
        return None  # like the toolkit: no TLS key set means plain HTTP
    cert, key, ca = files["cert_file"], files["key_file"], files["client_ca_file"]
    for name, value in (("cert_file", cert), ("key_file", key)):
        if value == "":
            ctx.problem(f"{path}.{name}", "required when TLS is configured")
    if auth == "NoClientCert" and ca:
        ctx.problem(
            f"{path}.client_ca_file",
            "set, but client_auth_type NoClientCert never asks for client certificates",
        )
    if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and ca == "":
        ctx.problem(f"{path}.client_ca_file", f"required by client_auth_type {auth}")
    low, high = versions["min_version"], versions["max_version"]
    if low and high and TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        ctx.problem(f"{path}.min_version", f"{low} is above max_version {high}")
    if not (cert and key and ca is not None and auth and low and high) or ciphers is None:
        return None
    return TLSServerConfig(cert, key, ca, auth, low, high, ciphers)


def _path(ctx: _Context, raw: object, path: str) -> str | None:
    """An absolute path, "" when not given, None when invalid (reported)."""
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str):
        ctx.problem(path, f"must be a file path, got {yamlstrict.kind(raw)}")
        return None
    if "\0" in raw:
        # os.stat and open() raise ValueError, not OSError, on these: refuse them here.
        ctx.problem(path, "must not contain a NUL character")
        return None
    return os.path.join(ctx.base_dir, raw)


def _choice(
    ctx: _Context,
    raw: object,
    path: str,
    choices: tuple[str, ...],
    refused: tuple[str, ...],
    why: str,
) -> str | None:
    if isinstance(raw, str) and raw in choices:
        return raw
    if isinstance(raw, str) and raw in refused:
        ctx.problem(path, f"{raw} is not supported: {why}")
        return None
    ctx.problem(path, f"must be one of {', '.join(choices)}, got {_shown(raw)}")
    return None


def _shown(raw: object) -> str:
    return repr(raw) if isinstance(raw, str) and len(raw) <= 64 else yamlstrict.kind(raw)


def _ciphers(ctx: _Context, raw: object, path: str) -> tuple[str, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        ctx.problem(path, f"must be a list of cipher suite names, got {yamlstrict.kind(raw)}")
        return None
    out: list[str] = []
    ok = True
    for i, name in enumerate(raw):
        if isinstance(name, str) and name in TLS13_CIPHER_SUITES:
            continue
        if not isinstance(name, str) or name not in CIPHER_SUITES:
            ctx.problem(
                f"{path}[{i}]",
                f"unsupported cipher suite {_shown(name)}; supported: {', '.join(CIPHER_SUITES)}",
            )
            ok = False
            continue
        out.append(name)
    return tuple(out) if ok else None


def _http(ctx: _Context, raw: object) -> tuple[tuple[str, str], ...]:
    path = "http_server_config"
    if raw is None:
        return ()
    data = _mapping(ctx, raw, path, HTTP_KEYS)
    if data is None:
        return ()
    # http2 is accepted for compatibility; this server speaks HTTP/1.1 only.
    if not isinstance(data.get("http2", True), bool):
        ctx.problem(f"{path}.http2", "must be true or false")
    headers = data.get("headers")
    if headers is None:
        return ()
    if not isinstance(headers, dict):
        ctx.problem(f"{path}.headers", f"must be a mapping, got {yamlstrict.kind(headers)}")
        return ()
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        item = f"{path}.headers[{name!r}]" if isinstance(name, str) else f"{path}.headers"
        if not isinstance(name, str) or name not in ALLOWED_HEADERS:
            hint = yamlstrict.hint(name, tuple(ALLOWED_HEADERS)) if isinstance(name, str) else ""
            ctx.problem(item, f"this header cannot be configured{hint}")
            continue
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            ctx.problem(item, "must be a one-line string")
            continue
        allowed = ALLOWED_HEADERS[name]
        if allowed and value not in allowed:
            ctx.problem(item, f"must be one of {', '.join(allowed)}")
            continue
        out.append((name, value))
    return tuple(out)


def _users(ctx: _Context, raw: object) -> dict[str, str]:
    path = "basic_auth_users"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        ctx.problem(
            path, f"must be a mapping of user name to bcrypt hash, got {yamlstrict.kind(raw)}"
        )
        return {}
    users: dict[str, str] = {}
    for user, hashed in raw.items():
        if not isinstance(user, str) or not user or ":" in user:
            ctx.problem(path, "user names must be non-empty strings without ':'")
            continue
        item = (
            f"{path}[{user!r}]" if not re.fullmatch(r"[A-Za-z0-9_-]+", user) else f"{path}.{user}"
        )
        # The hash is never echoed: it is as good as a password against offline guessing.
        match = _BCRYPT_HASH.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None or not 4 <= int(match.group(1)) <= 31:
            ctx.problem(item, "must be a bcrypt hash ($2a$, $2b$ or $2y$, cost 4 to 31)")
            continue
        users[user] = hashed
    return users


def _mapping(
    ctx: _Context, raw: object, path: str, known: tuple[str, ...]
) -> dict[str, Any] | None:
    return yamlstrict.mapping(raw, path, known, ctx.problem, _UNSUPPORTED)


# --- TLS -----------------------------------------------------------------------------------


def build_ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """A server-side context with the certificates loaded; ConfigError names the key."""
    path = "tls_server_config"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    problems = []
    for key, file in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        if not os.access(file, os.R_OK) or not os.path.isfile(file):
            problems.append(f'{path}.{key}: cannot read "{file}"')
    if problems:
        raise ConfigError(problems)
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (ssl.SSLError, OSError) as exc:
        # The library's reason only (never file contents): PEM errors, key mismatch.
        raise ConfigError(
            f"{path}.cert_file: cannot load the certificate with key_file: {_ssl_reason(exc)}"
        ) from None
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f'{path}.client_ca_file: cannot load CA certificates from "{tls.client_ca_file}": '
                f"{_ssl_reason(exc)}"
            ) from None
    ctx.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if tls.cipher_suites:
        try:
            ctx.set_ciphers(":".join(CIPHER_SUITES[name] for name in tls.cipher_suites))
        except ssl.SSLError as exc:
            raise ConfigError(f"{path}.cipher_suites: {_ssl_reason(exc)}") from None
    return ctx


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


# --- basic auth -----------------------------------------------------------------------------


# --- live config ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Active:
    config: WebConfig
    ssl_context: ssl.SSLContext | None
    auth: BasicAuth
    signature: tuple[object, ...]


_Stat = tuple[int, int, int] | None


def _stat(path: str) -> _Stat:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class LiveWebConfig:
    """The current web config, re-read when its file or a certificate file changes.

    Changes are noticed on the next connection or request (a few `stat` calls). A new
    config replaces the old one whole (TLS context, users, headers) or not at all: a
    broken file is logged once and the running config stays. Turning TLS on or off
    needs a restart (the listening socket's scheme is fixed).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._active = self._build()
        self._rejected: tuple[object, ...] | None = None

    @property
    def tls_enabled(self) -> bool:
        return self._active.ssl_context is not None

    @property
    def config(self) -> WebConfig:
        return self._active.config

    def _build(self) -> _Active:
        before = _stat(self.path)
        config = load(self.path)
        tls = config.tls
        files = tls.files() if tls is not None else ()
        signature = (before, *(_stat(f) for f in files))
        context = build_ssl_context(tls) if tls is not None else None
        return _Active(config, context, BasicAuth(config.users), signature)

    def _signature(self, active: _Active) -> tuple[object, ...]:
        tls = active.config.tls
        files = tls.files() if tls is not None else ()
        return (_stat(self.path), *(_stat(f) for f in files))

    def refresh(self) -> None:
        """Re-read the file if it (or a certificate file) changed since the last read."""
        current = self._signature(self._active)
        if current == self._active.signature or current == self._rejected:
            return
        with self._lock:
            active = self._active
            current = self._signature(active)
            if current in (active.signature, self._rejected):
                return
            try:
                new = self._build()
                if (new.ssl_context is None) != (active.ssl_context is None):
                    raise ConfigError("tls_server_config: turning TLS on or off needs a restart")
            except ConfigError as exc:
                self._rejected = current
                log.error("web config %s not reloaded, keeping the running one: %s", self.path, exc)
                return
            self._active = new
            self._rejected = None
        log.info(
            "web config %s reloaded (tls=%s, users=%d)",
            self.path,
            "on" if new.ssl_context is not None else "off",
            len(new.config.users),
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The context for a new connection (the server's seam; TLS must be enabled)."""
        self.refresh()
        context = self._active.ssl_context
        if context is None:
            raise RuntimeError("TLS is not enabled by this web config")
        return context

    def authenticate(self, environ: Mapping[str, Any]) -> bool:
        """WSGI guard for every route, as in the toolkit (health endpoints included)."""
        self.refresh()
        auth = self._active.auth
        return not auth or auth(environ)

    def headers(self) -> tuple[tuple[str, str], ...]:
        return self._active.config.headers
