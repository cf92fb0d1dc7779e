"""The region's recording storage account: private, TLS 1.2+, Entra ID only, aged out.

No anonymous blob access, no shared keys or SAS from account keys (only identities), no
network but the media nodes' subnet (a virtual-network rule over that subnet's
``Microsoft.Storage`` service endpoint, every other source denied), zone redundant, versioning
and soft delete against an overwrite or a delete by mistake, and a lifecycle policy that moves
recordings to the Cold tier and deletes them at the end of their retention. Media nodes'
identity holds a custom write-only role on the one container: no built-in role writes without
also reading or deleting ("Storage Blob Data Contributor" does all three), so a compromised
node cannot read or destroy what others recorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from infra.azure.identities import grant, stable_guid
from infra.recordings import CONTAINER_NAME, RECORDING_PREFIX, RecordingSettings

# What a media node does in its container: create and write block blobs (Put Block, Put
# Block List, Put Blob). No read, no list, no delete.
WRITE_DATA_ACTIONS = (
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
)
SOFT_DELETE_DAYS = 14


def account_name(prefix: str, stack: str) -> str:
    """Globally unique, 3-24 lowercase letters and digits, as storage accounts require."""
    digest = hashlib.sha1(f"{stack}/recordings".encode()).hexdigest()[:8]
    return f"rec{prefix.replace('-', '')}"[:16] + digest


def container_url(account: str) -> str:
    return f"https://{account}.blob.core.windows.net/{CONTAINER_NAME}"


@dataclass
class RecordingStoreArgs:
    prefix: str
    stack: str
    resource_group_name: pulumi.Input[str]
    location: str
    subscription_id: pulumi.Input[str]
    settings: RecordingSettings
    # the media nodes' managed identity, the only writer
    writer_principal_id: pulumi.Input[str]
    # the media nodes' subnet (with a Microsoft.Storage service endpoint), the only network
    # the account admits
    writer_subnet_id: pulumi.Input[str]
    retain: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class RecordingStore(pulumi.ComponentResource):
    """Storage account, blob service protection, container, lifecycle and the write grant."""

    account: azure_native.storage.StorageAccount
    container: azure_native.storage.BlobContainer
    container_url: str

    def __init__(
        self, name: str, args: RecordingStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:RecordingStore", name, None, opts)
        storage = azure_native.storage
        child = pulumi.ResourceOptions(parent=self)
        base = f"{args.prefix}-recordings"
        account = account_name(args.prefix, args.stack)
        self.container_url = container_url(account)

        self.account = storage.StorageAccount(
            base,
            account_name=account,
            resource_group_name=args.resource_group_name,
            location=args.location,
            kind=storage.Kind.STORAGE_V2,
            sku=storage.SkuArgs(name=storage.SkuName.STANDARD_ZRS),
            access_tier=storage.AccessTier.HOT,
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            allow_cross_tenant_replication=False,
            enable_https_traffic_only=True,
            minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
            # reachable from the media subnet alone; no trusted-service bypass, no IP rules
            network_rule_set=storage.NetworkRuleSetArgs(
                default_action=storage.DefaultAction.DENY,
                bypass=storage.Bypass.NONE,
                virtual_network_rules=[
                    storage.VirtualNetworkRuleArgs(
                        virtual_network_resource_id=args.writer_subnet_id,
                        action=storage.Action.ALLOW,
                    )
                ],
            ),
            encryption=storage.EncryptionArgs(
                key_source=storage.KeySource.MICROSOFT_STORAGE,
                require_infrastructure_encryption=True,
                services=storage.EncryptionServicesArgs(
                    blob=storage.EncryptionServiceArgs(
                        enabled=True, key_type=storage.KeyType.ACCOUNT
                    )
                ),
            ),
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain),
        )
        # the account's own name (not its output) so each part names it before it exists
        in_account = pulumi.ResourceOptions(parent=self, depends_on=[self.account])
        storage.BlobServiceProperties(
            base,
            account_name=account,
            resource_group_name=args.resource_group_name,
            blob_services_name="default",
            is_versioning_enabled=True,
            delete_retention_policy=storage.DeleteRetentionPolicyArgs(
                enabled=True, days=SOFT_DELETE_DAYS
            ),
            container_delete_retention_policy=storage.DeleteRetentionPolicyArgs(
                enabled=True, days=SOFT_DELETE_DAYS
            ),
            opts=in_account,
        )
        self.container = storage.BlobContainer(
            base,
            account_name=account,
            resource_group_name=args.resource_group_name,
            container_name=CONTAINER_NAME,
            public_access=storage.PublicAccess.NONE,
            opts=in_account,
        )
        lifecycle = args.settings
        storage.ManagementPolicy(
            base,
            account_name=account,
            resource_group_name=args.resource_group_name,
            management_policy_name="default",
            policy=storage.ManagementPolicySchemaArgs(
                rules=[
                    storage.ManagementPolicyRuleArgs(
                        name="recordings-age-out",
                        type=storage.RuleType.LIFECYCLE,
                        enabled=True,
                        definition=storage.ManagementPolicyDefinitionArgs(
                            filters=storage.ManagementPolicyFilterArgs(
                                blob_types=["blockBlob"],
                                prefix_match=[f"{CONTAINER_NAME}/{RECORDING_PREFIX}"],
                            ),
                            actions=storage.ManagementPolicyActionArgs(
                                base_blob=storage.ManagementPolicyBaseBlobArgs(
                                    tier_to_cold=storage.DateAfterModificationArgs(
                                        days_after_modification_greater_than=lifecycle.cold_after_days
                                    ),
                                    delete=storage.DateAfterModificationArgs(
                                        days_after_modification_greater_than=lifecycle.expire_after_days
                                    ),
                                ),
                                version=storage.ManagementPolicyVersionArgs(
                                    delete=storage.DateAfterCreationArgs(
                                        days_after_creation_greater_than=lifecycle.noncurrent_days
                                    )
                                ),
                            ),
                        ),
                    )
                ]
            ),
            opts=in_account,
        )

        # A role definition is assignable at a resource group at the narrowest; the assignment
        # narrows it to the one container.
        group_id = pulumi.Output.concat(
            "/subscriptions/", args.subscription_id, "/resourceGroups/", args.resource_group_name
        )
        writer = azure_native.authorization.RoleDefinition(
            f"{base}-writer",
            role_definition_id=stable_guid(base, "recording-writer"),
            role_name=f"rtcfleet {base} writer",
            description="Media nodes write recordings; they cannot read, list or delete them",
            role_type="CustomRole",
            scope=group_id,
            assignable_scopes=[group_id],
            permissions=[
                azure_native.authorization.PermissionArgs(data_actions=list(WRITE_DATA_ACTIONS))
            ],
            opts=child,
        )
        grant(
            f"{base}-media-writes",
            args.writer_principal_id,
            writer.id,
            self.container.id,
            "rtcfleet media nodes upload recordings to their region's container",
            parent=self,
        )
        self.register_outputs(
            {"accountName": self.account.name, "containerUrl": self.container_url}
        )
