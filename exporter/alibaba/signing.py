"""Alibaba Cloud request signing: V3 (ACS3-HMAC-SHA256) and V1 (RPC HMAC-SHA1), as httpx.Auth.

The pure functions are shared with the simulator, which verifies what the signers produce
exactly as the real gateway does. A signer's output depends only on the request, the
credential, the clock and the nonce (both injectable), and it does no I/O: the credential
is obtained from a callable so that refreshing providers can sit behind it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import KW_ONLY, dataclass, field
from urllib.parse import parse_qsl, quote

import httpx

V3_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Credential:
    """One access key, possibly temporary. Secrets are kept out of repr()."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    # Unix time at which temporary credentials stop working; None for long-lived keys.
    expiration: float | None = None


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as both schemes require: only A-Z a-z 0-9 - _ . ~ stay literal."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """Sorted `k=v` pairs joined by `&`; also the exact query string our client sends."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def query_params(raw_query: bytes | str) -> dict[str, str]:
    """Decode a query string to a dict (blank values kept; `+` read as a space, as servers do)."""
    text = raw_query.decode("ascii", "replace") if isinstance(raw_query, bytes) else raw_query
    return dict(parse_qsl(text, keep_blank_values=True))


def format_timestamp(epoch: float) -> str:
    return time.strftime(TIMESTAMP_FORMAT, time.gmtime(epoch))


def new_nonce() -> str:
    return uuid.uuid4().hex


# --- V1 (RPC, HMAC-SHA1) ---------------------------------------------------------------


def v1_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    # The canonical query is percent-encoded a second time; that is the scheme, not a bug.
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def v1_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Base64 HMAC-SHA1 over the string to sign, keyed with `secret + "&"`."""
    params = {k: v for k, v in params.items() if k != "Signature"}
    digest = hmac.new(
        (secret + "&").encode(), v1_string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


# --- V3 (ACS3-HMAC-SHA256) -------------------------------------------------------------


def v3_canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    hashed_payload: str,
) -> tuple[str, str]:
    """Return (CanonicalRequest, SignedHeaders) over exactly the headers given."""
    items = sorted((name.lower(), value.strip()) for name, value in headers.items())
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in items)
    signed_headers = ";".join(name for name, _ in items)
    canonical_uri = quote(path or "/", safe="/-_.~")
    parts = [
        method.upper(),
        canonical_uri,
        canonical_query(query),
        canonical_headers,
        signed_headers,
        hashed_payload,
    ]
    return "\n".join(parts), signed_headers


def v3_signature(canonical_request: str, secret: str) -> str:
    string_to_sign = f"{V3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def v3_authorization(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    hashed_payload: str,
    access_key_id: str,
    secret: str,
) -> str:
    """The `Authorization` header value for the given (already complete) signed headers."""
    canonical, signed_headers = v3_canonical_request(method, path, query, headers, hashed_payload)
    signature = v3_signature(canonical, secret)
    return (
        f"{V3_ALGORITHM} Credential={access_key_id},"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )


# --- httpx.Auth signers ------------------------------------------------------------------


# eq=False: a signer is compared (and hashed) by identity, as any other httpx.Auth.
@dataclass(eq=False)
class Signer(httpx.Auth):
    """What both schemes share: the credential source, the action, the clock and the nonce."""

    credentials: Callable[[], Credential] = field(repr=False)
    _: KW_ONLY
    action: str
    version: str
    clock: Callable[[], float] = time.time
    nonce: Callable[[], str] = new_nonce

    def prepare(self) -> None:
        """Obtain the credential now, so that a slow fetch (STS, instance metadata) happens
        before the caller starts timing the request rather than inside it. The signing
        itself asks again, which is cheap while the provider holds a valid credential."""
        self.credentials()


class V3Signer(Signer):
    """Signs with ACS3-HMAC-SHA256: x-acs-* headers plus an Authorization header.

    A fresh date and nonce are generated on every call of `auth_flow`, so every retry
    attempt is signed anew (the gateway rejects reused nonces).
    """

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        cred = self.credentials()
        body = request.read()
        payload_hash = hashlib.sha256(body).hexdigest()
        signed: dict[str, str] = {
            "host": request.headers["host"],
            "x-acs-action": self.action,
            "x-acs-version": self.version,
            "x-acs-date": format_timestamp(self.clock()),
            "x-acs-signature-nonce": self.nonce(),
            "x-acs-content-sha256": payload_hash,
        }
        if cred.security_token:
            # Like the official SDK: with STS credentials send and sign both headers.
            signed["x-acs-security-token"] = cred.security_token
            signed["x-acs-accesskey-id"] = cred.access_key_id
        for name, value in signed.items():
            if name != "host":
                request.headers[name] = value
        request.headers["Authorization"] = v3_authorization(
            request.method,
            request.url.path,
            query_params(request.url.query),
            signed,
            payload_hash,
            cred.access_key_id,
            cred.access_key_secret,
        )
        yield request


class V1Signer(Signer):
    """Signs with the RPC HMAC-SHA1 scheme: common parameters and `Signature` in the query."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        cred = self.credentials()
        params = query_params(request.url.query)
        params.update(
            {
                "Action": self.action,
                "Version": self.version,
                "Format": "JSON",
                "AccessKeyId": cred.access_key_id,
                "SignatureMethod": "HMAC-SHA1",
                "SignatureVersion": "1.0",
                "SignatureNonce": self.nonce(),
                "Timestamp": format_timestamp(self.clock()),
            }
        )
        if cred.security_token:
            params["SecurityToken"] = cred.security_token
        params["Signature"] = v1_signature(request.method, params, cred.access_key_secret)
        request.url = request.url.copy_with(query=canonical_query(params).encode("ascii"))
        yield request


def make_signer(
    scheme: str,
    credentials: Callable[[], Credential],
    *,
    action: str,
    version: str,
    clock: Callable[[], float] = time.time,
    nonce: Callable[[], str] = new_nonce,
) -> Signer:
    """`scheme` is the config's `signature` value: "v3" or "v1"; anything else is a ValueError
    (a typo must not silently sign with the other scheme)."""
    signers: dict[str, type[Signer]] = {"v3": V3Signer, "v1": V1Signer}
    cls = signers.get(scheme)
    if cls is None:
        raise ValueError(f'unknown signature scheme {scheme!r}: expected "v3" or "v1"')
    return cls(credentials, action=action, version=version, clock=clock, nonce=nonce)
