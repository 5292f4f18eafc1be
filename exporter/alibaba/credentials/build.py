"""One builder per credential type, `{type: builder}`, shared by every place a source is
spelled: the config's `credentials` block (`chain.py`), and the profiles of the aliyun CLI
and of the SDKs' credentials file (`profile.py`), which translate their own spellings
(modes, key names) into a `CredentialsConfig` first.

Builds without network I/O; temporary credentials are fetched on the first `get()`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from exporter.alibaba.credentials.base import CredentialProvider, Options, SecretFile
from exporter.alibaba.credentials.metadata import EcsRamRole
from exporter.alibaba.credentials.refreshing import RefreshingProvider
from exporter.alibaba.credentials.static import StaticProvider
from exporter.alibaba.credentials.sts import AssumeRole, AssumeRoleWithOidc, Role, duration_seconds
from exporter.config import CredentialsConfig
from exporter.errors import CredentialsError

# The identity a role is assumed with: built when the role's provider is.
Source = Callable[[], CredentialProvider]


def _static(
    config: CredentialsConfig, options: Options, where: str, source: Source | None, key_path: str
) -> CredentialProvider:
    return StaticProvider(config, context=where)


def _ram_role_arn(
    config: CredentialsConfig, options: Options, where: str, source: Source | None, key_path: str
) -> CredentialProvider:
    if source is None:
        raise CredentialsError(f"{where}: ram_role_arn without a source identity")
    return RefreshingProvider(
        "ram_role_arn",
        AssumeRole(
            options,
            source(),
            _role(config),
            external_id=(
                # Named by its key path under the account, as the config's problems are.
                SecretFile(config.external_id_file, f"{key_path}.external_id_file")
                if config.external_id_file
                else config.external_id
            ),
        ),
        options,
    )


def _oidc_role_arn(
    config: CredentialsConfig, options: Options, where: str, source: Source | None, key_path: str
) -> CredentialProvider:
    return RefreshingProvider(
        "oidc_role_arn",
        AssumeRoleWithOidc(
            options,
            _role(config),
            config.oidc_provider_arn or "",
            config.oidc_token_file or "",
        ),
        options,
    )


def _role(config: CredentialsConfig) -> Role:
    return Role(
        config.role_arn or "",
        session_name=config.role_session_name,
        policy=config.policy,
        duration=duration_seconds(config),
        endpoint=config.sts_endpoint,
    )


def _ecs_ram_role(
    config: CredentialsConfig, options: Options, where: str, source: Source | None, key_path: str
) -> CredentialProvider:
    return RefreshingProvider("ecs_ram_role", EcsRamRole(options, config.role_name), options)


Builder = Callable[[CredentialsConfig, Options, str, "Source | None", str], CredentialProvider]

BUILDERS: Mapping[str, Builder] = {
    "access_key": _static,
    "sts": _static,
    "ram_role_arn": _ram_role_arn,
    "oidc_role_arn": _oidc_role_arn,
    "ecs_ram_role": _ecs_ram_role,
}


def build(
    config: CredentialsConfig,
    options: Options,
    where: str,
    source: Source | None = None,
    key_path: str = "credentials",
) -> CredentialProvider:
    """The provider of `config` (its `kind` one of BUILDERS'); `where` prefixes its
    messages; `source` is the identity a ram_role_arn is assumed with; `key_path` the
    block's place in the config (`credentials.source`), which names its secret files."""
    return BUILDERS[config.kind](config, options, where, source, key_path)
