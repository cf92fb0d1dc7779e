"""The region's Key Vault: each node role's secrets and settings, read with its managed identity.

Like the AWS secrets block, one secret per role holds that role's secrets as JSON (least
privilege: media nodes never see the admin token), and one holds its non-secret settings.
Each role's identity is "Key Vault Secrets User" on its own two secrets only; a vault-wide
assignment would hand media nodes the gateways' secrets. The vault uses RBAC (no access
policies) and admits the network only from the gateway and media subnets; the secrets
themselves are written through Azure Resource Manager, which the vault firewall does not gate.
Custom data carries the vault URI and secret names, never a value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_azure_native as azure_native

from infra.azure.identities import KEY_VAULT_SECRETS_USER, grant, role_definition_id
from infra.spec import ROLE_SECRETS, ROLE_TAG, Role

SOFT_DELETE_DAYS_PRODUCTION = 90
SOFT_DELETE_DAYS = 7


def vault_name(prefix: str, stack: str) -> str:
    """Globally unique, 3-24 characters, as Key Vault requires."""
    digest = hashlib.sha1(stack.encode()).hexdigest()[:6]
    return f"{prefix[:13].rstrip('-')}-kv-{digest}"


def secret_name(role: Role) -> str:
    return f"{role.value}-secrets"


def settings_name(role: Role) -> str:
    return f"{role.value}-settings"


@dataclass
class KeyVaultArgs:
    prefix: str
    stack: str
    resource_group_name: pulumi.Input[str]
    location: str
    tenant_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    # Subnets whose machines may reach the vault.
    subnet_ids: Sequence[pulumi.Input[str]]
    # Every secret value, by ``infra.spec.SECRET_NAMES``.
    values: Mapping[str, pulumi.Input[str]]
    # Per node role, its settings document (no secrets) and its identity's principal id.
    documents: Mapping[Role, Mapping[str, Any]]
    readers: Mapping[Role, pulumi.Input[str]]
    production: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class KeyVault(pulumi.ComponentResource):
    """The vault, a secrets and a settings entry per node role, and who may read them."""

    vault: azure_native.keyvault.Vault
    secrets: dict[Role, azure_native.keyvault.Secret]
    settings: dict[Role, azure_native.keyvault.Secret]
    name: str

    def __init__(
        self, name: str, args: KeyVaultArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:KeyVault", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.name = vault_name(args.prefix, args.stack)
        self.vault = azure_native.keyvault.Vault(
            f"{args.prefix}-kv",
            vault_name=self.name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            properties=azure_native.keyvault.VaultPropertiesArgs(
                tenant_id=args.tenant_id,
                sku=azure_native.keyvault.SkuArgs(
                    family="A", name=azure_native.keyvault.SkuName.STANDARD
                ),
                enable_rbac_authorization=True,
                enable_soft_delete=True,
                soft_delete_retention_in_days=(
                    SOFT_DELETE_DAYS_PRODUCTION if args.production else SOFT_DELETE_DAYS
                ),
                # Azure refuses an explicit false; leaving it unset keeps dev vaults purgeable.
                enable_purge_protection=True if args.production else None,
                public_network_access="Enabled",
                network_acls=azure_native.keyvault.NetworkRuleSetArgs(
                    default_action="Deny",
                    bypass="None",
                    virtual_network_rules=[
                        azure_native.keyvault.VirtualNetworkRuleArgs(id=subnet)
                        for subnet in args.subnet_ids
                    ],
                ),
            ),
            tags=args.tags,
            opts=child,
        )
        reader = role_definition_id(args.subscription_id, KEY_VAULT_SECRETS_USER)
        self.secrets = {}
        self.settings = {}
        for role, names in ROLE_SECRETS.items():
            tags = {**args.tags, ROLE_TAG: role.value}
            self.secrets[role] = azure_native.keyvault.Secret(
                f"{args.prefix}-{secret_name(role)}",
                secret_name=secret_name(role),
                vault_name=self.vault.name,
                resource_group_name=args.resource_group_name,
                properties=azure_native.keyvault.SecretPropertiesArgs(
                    value=pulumi.Output.secret(
                        pulumi.Output.json_dumps({n: args.values[n] for n in names})
                    ),
                    content_type="application/json",
                ),
                tags=tags,
                opts=child,
            )
            self.settings[role] = azure_native.keyvault.Secret(
                f"{args.prefix}-{settings_name(role)}",
                secret_name=settings_name(role),
                vault_name=self.vault.name,
                resource_group_name=args.resource_group_name,
                properties=azure_native.keyvault.SecretPropertiesArgs(
                    value=pulumi.Output.json_dumps(dict(args.documents[role])),
                    content_type="application/json",
                ),
                tags=tags,
                opts=child,
            )
            for entry, kind in ((self.secrets[role], "secrets"), (self.settings[role], "settings")):
                grant(
                    f"{args.prefix}-{role.value}-reads-{kind}",
                    args.readers[role],
                    reader,
                    entry.id,
                    f"rtcfleet {role.value} nodes read their {kind}",
                    parent=self,
                )
        self.register_outputs({"vaultUri": self.uri})

    @property
    def uri(self) -> pulumi.Output[str]:
        return self.vault.properties.apply(lambda p: p.vault_uri or "")
