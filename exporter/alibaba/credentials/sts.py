"""STS: AssumeRole (signed with another provider's credentials) and AssumeRoleWithOIDC
(RRSA, unsigned, with a token file that rotates), and where STS is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from exporter.alibaba.credentials.base import (
    ENV_STS_ENDPOINT,
    ENV_STS_REGION,
    ENV_VPC_ENDPOINT_ENABLED,
    CredentialProvider,
    Options,
    SecretFile,
    credential_from,
    http_request,
    json_object,
    resolve,
    scrub,
    url_problem,
)
from exporter.alibaba.signing import (
    Credential,
    canonical_query,
    format_timestamp,
    new_nonce,
    v1_signature,
)
from exporter.config import CredentialsConfig
from exporter.errors import CredentialsError, FetchError

STS_VERSION = "2015-04-01"
DEFAULT_DURATION = 3600.0  # STS DurationSeconds when the config does not say
DEFAULT_SESSION_NAME = "alb-jobs-exporter"
STS_TIMEOUT = 10.0


def sts_endpoint(explicit: str | None, env: Mapping[str, str]) -> str:
    """The STS URL: explicit (config), else env, else `sts[-vpc].<region>.aliyuncs.com`."""
    if explicit:
        return explicit
    override = env.get(ENV_STS_ENDPOINT, "").strip()
    if override:
        url = override if "://" in override else f"https://{override}"
        problem = url_problem(url)
        if problem:
            raise CredentialsError(f"environment {ENV_STS_ENDPOINT}: {problem}")
        return url
    region = env.get(ENV_STS_REGION, "").strip()
    if not region:
        return "https://sts.aliyuncs.com"
    vpc = env.get(ENV_VPC_ENDPOINT_ENABLED, "").strip().lower() == "true"
    return f"https://{'sts-vpc' if vpc else 'sts'}.{region}.aliyuncs.com"


def _sts_call(
    options: Options,
    endpoint: str,
    action: str,
    params: Mapping[str, str],
    signer: Credential | None,
    *,
    secrets: tuple[str | None, ...] = (),
) -> Credential:
    """One STS call, parameters in a form body (never in the URL, where proxies log them).

    AssumeRole is V1-signed by `signer`; AssumeRoleWithOIDC is not signed at all.
    """
    what = f"STS {action}"
    form = {
        "Action": action,
        "Version": STS_VERSION,
        "Format": "JSON",
        "Timestamp": format_timestamp(options.clock()),
        "SignatureNonce": new_nonce(),
        **params,
    }
    if signer is not None:
        form.update(
            {
                "AccessKeyId": signer.access_key_id,
                "SignatureMethod": "HMAC-SHA1",
                "SignatureVersion": "1.0",
            }
        )
        if signer.security_token:
            form["SecurityToken"] = signer.security_token
        form["Signature"] = v1_signature("POST", form, signer.access_key_secret)
        secrets = (*secrets, signer.access_key_secret, signer.security_token)
    response = http_request(
        options,
        what,
        "POST",
        endpoint,
        timeout=options.timeout,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "accept": "application/json",
        },
        content=canonical_query(form).encode("ascii"),
    )
    body = json_object(response, what)
    code = body.get("Code")
    if response.status_code != 200 or (
        isinstance(code, str) and code and "Credentials" not in body
    ):
        code_text = code if isinstance(code, str) and code else f"HTTP{response.status_code}"
        message = body.get("Message") if isinstance(body.get("Message"), str) else ""
        request_id = body.get("RequestId") if isinstance(body.get("RequestId"), str) else ""
        detail = f"{code_text}: {scrub(str(message), *secrets)}" if message else code_text
        raise FetchError(
            f"{what} failed: {detail} (HTTP {response.status_code}"
            + (f", RequestId {request_id})" if request_id else ")"),
            code_text[:100],
        )
    credentials = body.get("Credentials")
    if not isinstance(credentials, dict):
        raise FetchError(f"{what}: the answer has no Credentials object", "MalformedResponse")
    return credential_from(credentials, what)


def duration_seconds(config: CredentialsConfig | None) -> str:
    """STS DurationSeconds for a config block (or none): its duration, else one hour."""
    seconds = config.duration if config is not None and config.duration else DEFAULT_DURATION
    return str(int(seconds))


@dataclass(frozen=True)
class Role:
    """The role to assume and how, alike for AssumeRole and AssumeRoleWithOIDC."""

    arn: str
    session_name: str | None = None
    policy: str | None = None  # an inline RAM policy narrowing the role's permissions
    duration: str = str(int(DEFAULT_DURATION))  # DurationSeconds
    endpoint: str | None = None  # None: the environment's, else sts.aliyuncs.com


class _StsRole:
    """What AssumeRole and AssumeRoleWithOIDC share: the role's parameters, the endpoint,
    and errors that name the role."""

    action: ClassVar[str]  # the STS Action

    def __init__(self, options: Options, role: Role, extra: Mapping[str, str]) -> None:
        self._options = options
        self.role_arn = role.arn
        self._params = {
            "RoleArn": role.arn,
            **extra,
            "RoleSessionName": role.session_name or DEFAULT_SESSION_NAME,
            "DurationSeconds": role.duration,
        }
        if role.policy:
            self._params["Policy"] = role.policy
        self._endpoint = sts_endpoint(role.endpoint, options.env)

    def _assume(
        self,
        params: Mapping[str, str],
        signer: Credential | None,
        secrets: tuple[str | None, ...],
    ) -> Credential:
        """One STS call with the role's parameters plus `params`; FetchError names the role."""
        try:
            return _sts_call(
                self._options,
                self._endpoint,
                self.action,
                {**self._params, **params},
                signer,
                secrets=secrets,
            )
        except FetchError as exc:
            raise FetchError(f"role {self.role_arn}: {exc}", exc.code) from None


class AssumeRole(_StsRole):
    """STS AssumeRole, signed with the credentials of `source` (any other provider).

    The external id is a value, or a `SecretFile` read on every fetch (re-read when the
    file changes, like the access key files).
    """

    action = "AssumeRole"

    def __init__(
        self,
        options: Options,
        source: CredentialProvider,
        role: Role,
        external_id: str | SecretFile | None = None,
    ) -> None:
        super().__init__(options, role, extra={})
        self._source = source
        self._external_id = external_id or None

    def __call__(self) -> Credential:
        try:
            external_id = resolve(self._external_id)
        except CredentialsError as exc:
            raise FetchError(str(exc), "SecretFileError") from None
        signer = self._source.get()
        try:
            return self._assume(
                {"ExternalId": external_id} if external_id else {},
                signer,
                secrets=(external_id,),
            )
        except FetchError as exc:
            if exc.code == "InvalidSecurityToken.Expired":
                self._source.invalidate()  # the next attempt signs with fresh credentials
            raise


class AssumeRoleWithOidc(_StsRole):
    """STS AssumeRoleWithOIDC (RRSA); the token file is read anew on every fetch (it rotates)."""

    action = "AssumeRoleWithOIDC"

    def __init__(self, options: Options, role: Role, provider_arn: str, token_file: str) -> None:
        super().__init__(options, role, extra={"OIDCProviderArn": provider_arn})
        self._token_file = token_file

    def __call__(self) -> Credential:
        token = self._read_token()
        return self._assume({"OIDCToken": token}, None, secrets=(token,))

    def _read_token(self) -> str:
        try:
            with open(self._token_file, "rb") as fh:
                data = fh.read()
            token = data.decode("utf-8").strip()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise FetchError(
                f'cannot read the OIDC token file "{self._token_file}": {reason}', "TokenFileError"
            ) from None
        except UnicodeDecodeError:
            raise FetchError(
                f'the OIDC token file "{self._token_file}" is not UTF-8 text', "TokenFileError"
            ) from None
        if not token:
            raise FetchError(f'the OIDC token file "{self._token_file}" is empty', "TokenFileError")
        return token
