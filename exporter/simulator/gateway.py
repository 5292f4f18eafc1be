"""What Alibaba's API gateway checks before a request reaches a service: the key store
(long-lived keys, STS keys and their security tokens), V1 and V3 signatures, timestamps
and nonces. The checks use the gateway clock: the real clock plus the `clock_skew` knob."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import unquote

from exporter.alibaba import signing
from exporter.simulator.faults import FaultBoard
from exporter.simulator.messages import Reject, SimRequest, missing
from exporter.wire import ACTION, API_VERSION

# The demo key pair: `--demo` and the standalone simulator accept it unless told otherwise.
DEMO_ACCESS_KEY_ID = "LTAIdemo0000000000000000"
DEMO_ACCESS_KEY_SECRET = "demo-secret-not-real"

# The gateway rejects timestamps more than 15 minutes off and remembers nonces for as long.
TIMESTAMP_TOLERANCE_SECONDS = 15 * 60
NONCE_WINDOW_SECONDS = 15 * 60


def _incomplete(detail: str) -> Reject:
    return Reject(
        400,
        "IncompleteSignature",
        f"The request signature does not conform to Aliyun standards. {detail}",
    )


def _parse_timestamp(value: str, name: str) -> float:
    try:
        parsed = datetime.strptime(value, signing.TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise Reject(
            400,
            "InvalidTimeStamp.Format",
            f"Specified time stamp or date value is not well formatted: {name}.",
        ) from None
    return parsed.timestamp()


def credential_of(authorization: str) -> str | None:
    """The AccessKeyId of a V3 Authorization header (for the request log), if it names one."""
    match = re.search(r"Credential=([^,\s]*)", authorization)
    return match.group(1) if match else None


class Keys:
    """The accepted keys: long-lived ones and the temporary ones `issue` hands out."""

    def __init__(
        self,
        lock: threading.RLock,
        clock: Callable[[], float],
        credentials: Mapping[str, str] | None,
    ) -> None:
        self._lock = lock
        self._clock = clock
        # AccessKeyId -> secret of long-lived keys. Public so tests may add or revoke keys.
        self.credentials: dict[str, str] = dict(
            credentials if credentials is not None else {DEMO_ACCESS_KEY_ID: DEMO_ACCESS_KEY_SECRET}
        )
        # SecurityToken -> (AccessKeyId, secret, expires_at): temporary keys from issue().
        self.sts_tokens: dict[str, tuple[str, str, float]] = {}
        self._sts_ids: dict[str, str] = {}  # STS AccessKeyId -> its token

    def issue(self, ttl: float) -> tuple[str, str, str, float]:
        """Issue temporary credentials: (AccessKeyId, secret, SecurityToken, expires_at)."""
        access_key_id = "STS.NT" + "".join(
            secrets.choice(string.ascii_letters + string.digits) for _ in range(22)
        )
        secret = secrets.token_urlsafe(33)
        token = "CAIS" + base64.b64encode(secrets.token_bytes(240)).decode()
        with self._lock:
            expires_at = self._clock() + ttl
            self.sts_tokens[token] = (access_key_id, secret, expires_at)
            self._sts_ids[access_key_id] = token
        return access_key_id, secret, token, expires_at

    def secret_for(self, access_key_id: str, token: str | None) -> str:
        """The secret a request signed with this key must use; the token is checked too."""
        secret = self.credentials.get(access_key_id)
        token_required = False
        if secret is None and access_key_id in self._sts_ids:
            secret = self.sts_tokens[self._sts_ids[access_key_id]][1]
            token_required = True
        if secret is None:
            raise Reject(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if token:
            entry = self.sts_tokens.get(token)
            if entry is None:
                raise Reject(
                    400,
                    "InvalidSecurityToken.Malformed",
                    "The security token you provided is malformed.",
                )
            if entry[0] != access_key_id:
                raise Reject(
                    400,
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "The security token you provided does not match your access key.",
                )
            if entry[2] <= self._clock():
                raise Reject(
                    400,
                    "InvalidSecurityToken.Expired",
                    "The security token you provided has expired.",
                )
        elif token_required:
            raise Reject(
                400,
                "MissingSecurityToken",
                "The security token is mandatory for a temporary access key.",
            )
        return secret


class Gateway:
    """Authenticates ALB and STS requests; remembers the nonces of the last 15 minutes.
    Its callers hold the simulator's lock."""

    def __init__(self, clock: Callable[[], float], keys: Keys, faults: FaultBoard) -> None:
        self._clock = clock
        self._keys = keys
        self._faults = faults
        self._nonces: OrderedDict[tuple[str, str], float] = OrderedDict()

    def _gateway_time(self, region: str) -> float:
        return self._clock() + self._faults.effective(region).clock_skew

    def _check_action(
        self, action: str | None, version: str | None, names: tuple[str, str]
    ) -> None:
        if not action:
            raise missing(names[0])
        if not version:
            raise missing(names[1])
        if action != ACTION:
            raise Reject(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        if version != API_VERSION:
            raise Reject(404, "InvalidVersion", "Specified parameter Version is not valid.")

    def _check_time(self, timestamp: float, region: str) -> None:
        if abs(timestamp - self._gateway_time(region)) > TIMESTAMP_TOLERANCE_SECONDS:
            raise Reject(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )

    def _use_nonce(self, access_key_id: str, nonce: str, region: str) -> None:
        # Checked only once the signature is valid, so forged requests cannot burn nonces.
        now = self._gateway_time(region)
        while self._nonces:
            _, seen = next(iter(self._nonces.items()))
            if seen >= now - NONCE_WINDOW_SECONDS:
                break
            self._nonces.popitem(last=False)
        key = (access_key_id, nonce)
        if key in self._nonces:
            raise Reject(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces[key] = now

    def _mismatch(self, string_to_sign: str, extra: str = "") -> Reject:
        # Like the real gateway: the message shows the server's string to sign (no secret in
        # it), which is how users debug canonicalisation differences.
        return Reject(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. "
            f"server string to sign is:{string_to_sign}{extra}",
        )

    def verify_v1(
        self,
        request: SimRequest,
        params: Mapping[str, str],
        region: str,
        *,
        check_action: bool = True,
    ) -> str:
        """A V1 (HMAC-SHA1) request, checked as the gateway does for ALB and for STS
        AssumeRole (`check_action=False`: STS routes on its own actions); the AccessKeyId."""
        for name in (
            "AccessKeyId",
            "SignatureMethod",
            "SignatureVersion",
            "SignatureNonce",
            "Timestamp",
        ):
            if not params.get(name):
                raise missing(name)
        if "Signature" not in params:
            raise _incomplete("The Signature parameter is missing.")
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise _incomplete("SignatureMethod must be HMAC-SHA1 and SignatureVersion 1.0.")
        if check_action:
            self._check_action(params.get("Action"), params.get("Version"), ("Action", "Version"))
        self._check_time(_parse_timestamp(params["Timestamp"], "Timestamp"), region)
        access_key_id = params["AccessKeyId"]
        secret = self._keys.secret_for(access_key_id, params.get("SecurityToken"))
        signed = {k: v for k, v in params.items() if k != "Signature"}
        expected = signing.v1_signature(request.method, signed, secret)
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            raise self._mismatch(signing.v1_string_to_sign(request.method, signed))
        self._use_nonce(access_key_id, params["SignatureNonce"], region)
        return access_key_id

    def verify_v3(
        self,
        request: SimRequest,
        path: str,
        query: Mapping[str, str],
        authorization: str,
        region: str,
    ) -> str:
        """A V3 (ACS3-HMAC-SHA256) request, checked as the gateway does; the AccessKeyId."""
        algorithm, _, rest = authorization.strip().partition(" ")
        if algorithm != signing.V3_ALGORITHM:
            raise _incomplete(f"Unsupported signature algorithm {algorithm!r}.")
        parts: dict[str, str] = {}
        for item in rest.split(","):
            name, sep, value = item.strip().partition("=")
            if sep:
                parts[name] = value
        access_key_id = parts.get("Credential", "")
        signed_names = [h.strip().lower() for h in parts.get("SignedHeaders", "").split(";")]
        signed_names = [h for h in signed_names if h]
        signature = parts.get("Signature", "")
        if not (access_key_id and signed_names and signature):
            raise _incomplete("Authorization needs Credential, SignedHeaders and Signature.")
        sent = {k.lower() for k, _ in request.headers}
        unsigned = sorted(h for h in sent if h.startswith("x-acs-") and h not in signed_names)
        if "host" not in signed_names:
            unsigned.insert(0, "host")
        if unsigned:
            raise _incomplete(f"These headers must be signed: {', '.join(unsigned)}.")
        for name in ("x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"):
            if not request.header(name):
                raise missing(name)
        absent = [h for h in signed_names if h not in sent]
        if absent:
            raise _incomplete(f"Signed headers are missing from the request: {', '.join(absent)}.")
        self._check_action(
            request.header("x-acs-action"),
            request.header("x-acs-version"),
            ("x-acs-action", "x-acs-version"),
        )
        self._check_time(_parse_timestamp(request.header("x-acs-date") or "", "x-acs-date"), region)
        secret = self._keys.secret_for(access_key_id, request.header("x-acs-security-token"))
        content_sha = (request.header("x-acs-content-sha256") or "").lower()
        if content_sha != hashlib.sha256(request.body).hexdigest():
            raise Reject(
                400,
                "SignatureDoesNotMatch",
                "The x-acs-content-sha256 header does not match the request body.",
            )
        # Repeated headers are signed as their sorted values joined by commas.
        headers = {h: ",".join(sorted(request.header_values(h))) for h in signed_names}
        # The canonical URI is the raw path; `v3_canonical_request` percent-encodes the
        # decoded path again, which reproduces it for every well-formed request.
        decoded_path = unquote(path)
        expected = signing.v3_authorization(
            request.method, decoded_path, query, headers, content_sha, access_key_id, secret
        )
        expected_signature = expected.rpartition("Signature=")[2]
        if not hmac.compare_digest(expected_signature.encode(), signature.lower().encode()):
            canonical, _ = signing.v3_canonical_request(
                request.method, decoded_path, query, headers, content_sha
            )
            hashed = hashlib.sha256(canonical.encode()).hexdigest()
            raise self._mismatch(
                f"{signing.V3_ALGORITHM}\n{hashed}", f" canonical request is:{canonical}"
            )
        self._use_nonce(access_key_id, request.header("x-acs-signature-nonce") or "", region)
        return access_key_id
