"""The ECS instance RAM role's credentials from the instance metadata service."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from exporter.alibaba.credentials.base import (
    ENV_ECS_METADATA,
    ENV_ECS_METADATA_ENDPOINT,
    ENV_IMDSV1_DISABLED,
    Options,
    credential_from,
    http_request,
    json_object,
    url_problem,
)
from exporter.alibaba.signing import Credential
from exporter.errors import CredentialsError, FetchError

METADATA_URL = "http://100.100.100.200"
METADATA_TOKEN_TTL = "21600"
METADATA_TIMEOUT = httpx.Timeout(2.0, connect=1.0)


def metadata_base_url(env: Mapping[str, str]) -> str:
    """The metadata service: the link-local address unless the environment says otherwise."""
    override = env.get(ENV_ECS_METADATA_ENDPOINT, "").strip().rstrip("/")
    if not override:
        return METADATA_URL
    problem = url_problem(override, extra_http_host="100.100.100.200")
    if problem:
        raise CredentialsError(f"environment {ENV_ECS_METADATA_ENDPOINT}: {problem}")
    return override


class EcsRamRole:
    """The instance RAM role's credentials from the ECS metadata service.

    Token flow first (PUT /latest/api/token); if the service answers that with an error,
    plain (v1) requests follow unless ALIBABA_CLOUD_IMDSV1_DISABLED=true.
    """

    def __init__(self, options: Options, role_name: str | None) -> None:
        self._options = options
        self._role_name = role_name or options.env.get(ENV_ECS_METADATA, "").strip() or None
        self._base = metadata_base_url(options.env)
        self._v1_disabled = options.env.get(ENV_IMDSV1_DISABLED, "").strip().lower() == "true"

    def __call__(self) -> Credential:
        what = "ECS instance metadata"
        headers: dict[str, str] = {}
        token = self._get(
            "PUT",
            "/latest/api/token",
            {"X-aliyun-ecs-metadata-token-ttl-seconds": METADATA_TOKEN_TTL},
        )
        if token.status_code == 200 and token.text.strip():
            headers["X-aliyun-ecs-metadata-token"] = token.text.strip()
        elif self._v1_disabled:
            raise FetchError(
                f"{what}: no metadata token (HTTP {token.status_code}) and "
                f"{ENV_IMDSV1_DISABLED}=true forbids requests without one",
                f"HTTP{token.status_code}",
            )
        role = self._role_name
        if role is None:
            answer = self._get("GET", "/latest/meta-data/ram/security-credentials/", headers)
            role = answer.text.strip().splitlines()[0] if answer.status_code == 200 else ""
            if answer.status_code == 404 or (answer.status_code == 200 and not role):
                raise FetchError(f"{what}: no RAM role is attached to this instance", "NoRole")
            if answer.status_code != 200:
                raise FetchError(
                    f"{what}: role name lookup failed (HTTP {answer.status_code})",
                    f"HTTP{answer.status_code}",
                )
        answer = self._get("GET", f"/latest/meta-data/ram/security-credentials/{role}", headers)
        if answer.status_code == 404:
            raise FetchError(
                f'{what}: RAM role "{role}" is not attached to this instance', "NoRole"
            )
        if answer.status_code != 200:
            raise FetchError(
                f'{what}: credentials of role "{role}" not available (HTTP {answer.status_code})',
                f"HTTP{answer.status_code}",
            )
        body = json_object(answer, what)
        if body.get("Code") != "Success":
            code = body.get("Code")
            raise FetchError(
                f'{what}: role "{role}" answered Code {code!r}, not "Success"',
                str(code)[:100] if code else "MalformedResponse",
            )
        return credential_from(body, what)

    def _get(self, method: str, path: str, headers: Mapping[str, str]) -> httpx.Response:
        # Link-local: never through an HTTP proxy from the environment.
        return http_request(
            self._options,
            f"ECS instance metadata {self._base}",
            method,
            self._base + path,
            timeout=METADATA_TIMEOUT,
            headers=headers,
            trust_env=False,
        )
