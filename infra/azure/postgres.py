"""The region's Postgres: Flexible Server writer in the home region, read replicas everywhere.

In the home region: a writer with zone-redundant HA (a standby in another zone, automatic
failover) and an in-region read replica for media nodes. Elsewhere: a cross-region read
replica of the home writer, found through the home stack's output, which a failover promotes
(Azure offers no HA on a replica; the promotion runbook turns it on after promoting). Every
server lives in the Postgres subnet (VNet integration), with no public access.

The writer runs with ``wal_level=logical`` so regions in another cloud can subscribe to its
settings publication. When the environment's writer is in another cloud (``subscriber``), the
region's server is a stand-alone one whose settings tables a logical-replication subscription
fills (the gateways' reconciler keeps it following the writer, docs/settings-replication.md);
writes go to the other cloud's writer over the private network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_azure_native as azure_native

from infra.azure.private_dns import private_zone
from infra.azure.sizes import postgres_tier
from infra.spec import ROLE_TAG, SUBSCRIBER_TAG, Role

DATABASE = "rtcfleet"
ADMIN_USER = "rtcfleet"
# the writer's server parameters for subscribers in another cloud (a restart applies them)
LOGICAL_REPLICATION_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "25",
}


@dataclass
class PostgresArgs:
    prefix: str
    stack: str
    resource_group_name: pulumi.Input[str]
    location: str
    home: bool
    sku: str
    zones: Sequence[str]
    subnet_id: pulumi.Input[str]
    vnet_id: pulumi.Input[str]
    storage_gb: int = 64
    backup_days: int = 7
    version: str = "16"
    production: bool = False
    # Home region only.
    password: pulumi.Input[str] | None = None
    # Other regions: the home writer's resource id and address (from the home stack).
    source_server_id: pulumi.Input[str] | None = None
    source_endpoint: pulumi.Input[str] | None = None
    # Other regions: the home writer's private DNS zone (name, resource group), linked here so
    # this region's gateways resolve the writer's name over the peering.
    source_dns_zone: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None
    # the environment's writer is in another cloud: a stand-alone subscriber server, whose
    # administrator password is the writer's (``password``) so one secret opens both
    subscriber: bool = False
    writer_stack: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class Postgres(pulumi.ComponentResource):
    """Settings storage: one writer for the whole platform, a local reader in every region."""

    primary: azure_native.dbforpostgresql.Server | None
    replica: azure_native.dbforpostgresql.Server
    write_endpoint: pulumi.Output[str]
    read_endpoint: pulumi.Output[str]
    dns_zone_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:Postgres", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.prefix
        tags = {**args.tags, ROLE_TAG: Role.POSTGRES.value}
        digest = hashlib.sha1(args.stack.encode()).hexdigest()[:6]
        zone = private_zone(
            f"{prefix}-postgres-dns",
            f"{prefix}-{digest}.private.postgres.database.azure.com",
            args.resource_group_name,
            args.vnet_id,
            args.tags,
            parent=self,
        )
        common: dict[str, Any] = {
            "resource_group_name": args.resource_group_name,
            "location": args.location,
            "sku": azure_native.dbforpostgresql.SkuArgs(
                name=args.sku, tier=postgres_tier(args.sku)
            ),
            "storage": azure_native.dbforpostgresql.StorageArgs(
                storage_size_gb=args.storage_gb, auto_grow="Enabled"
            ),
            "network": azure_native.dbforpostgresql.NetworkArgs(
                delegated_subnet_resource_id=args.subnet_id,
                private_dns_zone_arm_resource_id=zone.id,
                public_network_access="Disabled",
            ),
            "tags": tags,
        }
        if args.subscriber:
            self._subscriber(args, common)
        elif args.home:
            if args.password is None:
                raise ValueError("the home region's writer needs a password")
            self.primary = azure_native.dbforpostgresql.Server(
                f"{prefix}-postgres",
                server_name=f"{prefix}-pg-{digest}",
                create_mode="Create",
                version=args.version,
                administrator_login=ADMIN_USER,
                administrator_login_password=pulumi.Output.secret(args.password),
                availability_zone=args.zones[0],
                high_availability=azure_native.dbforpostgresql.HighAvailabilityArgs(
                    mode="ZoneRedundant", standby_availability_zone=args.zones[1]
                ),
                backup=azure_native.dbforpostgresql.BackupArgs(
                    backup_retention_days=args.backup_days,
                    geo_redundant_backup="Enabled" if args.production else "Disabled",
                ),
                auth_config=azure_native.dbforpostgresql.AuthConfigArgs(
                    password_auth="Enabled", active_directory_auth="Disabled"
                ),
                **common,
                opts=pulumi.ResourceOptions(parent=self, protect=args.production),
            )
            self._settings_database(args, self.primary)
            self.replica = azure_native.dbforpostgresql.Server(
                f"{prefix}-postgres-read",
                server_name=f"{prefix}-pg-read-{digest}",
                create_mode="Replica",
                source_server_resource_id=self.primary.id,
                # The in-region reader only serves media nodes' settings; they keep a local copy.
                availability_zone=args.zones[-1],
                **common,
                opts=child,
            )
            for setting, value in LOGICAL_REPLICATION_SETTINGS.items():
                azure_native.dbforpostgresql.Configuration(
                    f"{prefix}-postgres-{setting.replace('_', '-')}",
                    configuration_name=setting,
                    server_name=self.primary.name,
                    resource_group_name=args.resource_group_name,
                    value=value,
                    source="user-override",
                    opts=child,
                )
            self.write_endpoint = self.primary.fully_qualified_domain_name.apply(
                lambda host: host or ""
            )
        else:
            if args.source_server_id is None or args.source_endpoint is None:
                raise ValueError("a non-home region needs the home writer's id and endpoint")
            self.primary = None
            self.replica = azure_native.dbforpostgresql.Server(
                f"{prefix}-postgres-replica",
                server_name=f"{prefix}-pg-replica-{digest}",
                create_mode="Replica",
                source_server_resource_id=args.source_server_id,
                availability_zone=args.zones[0],
                **common,
                opts=pulumi.ResourceOptions(parent=self, protect=args.production),
            )
            self.write_endpoint = pulumi.Output.from_input(args.source_endpoint)
            if args.source_dns_zone is not None:
                zone_name, zone_group = args.source_dns_zone
                azure_native.privatedns.VirtualNetworkLink(
                    f"{prefix}-postgres-home-dns",
                    virtual_network_link_name=f"{prefix}-vnet",
                    private_zone_name=zone_name,
                    resource_group_name=zone_group,
                    location="global",
                    virtual_network=azure_native.privatedns.SubResourceArgs(id=args.vnet_id),
                    registration_enabled=False,
                    tags=args.tags,
                    opts=child,
                )
        self.dns_zone_name = zone.name
        self.read_endpoint = self.replica.fully_qualified_domain_name.apply(lambda h: h or "")
        self.register_outputs(
            {"writeEndpoint": self.write_endpoint, "readEndpoint": self.read_endpoint}
        )

    def _settings_database(
        self, args: PostgresArgs, server: azure_native.dbforpostgresql.Server
    ) -> azure_native.dbforpostgresql.Database:
        """The platform's database on a writable server (the home writer, or a subscriber)."""
        return azure_native.dbforpostgresql.Database(
            f"{args.prefix}-postgres-{DATABASE}",
            database_name=DATABASE,
            server_name=server.name,
            resource_group_name=args.resource_group_name,
            charset="UTF8",
            collation="en_US.utf8",
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _subscriber(self, args: PostgresArgs, common: dict[str, Any]) -> None:
        if args.password is None or args.source_endpoint is None:
            raise ValueError("a subscriber needs the writer's endpoint and password")
        digest = hashlib.sha1(args.stack.encode()).hexdigest()[:6]
        self.primary = None
        tags = {**common["tags"], SUBSCRIBER_TAG: args.writer_stack or "another cloud"}
        self.replica = azure_native.dbforpostgresql.Server(
            f"{args.prefix}-postgres-subscriber",
            server_name=f"{args.prefix}-pg-sub-{digest}",
            create_mode="Create",
            version=args.version,
            administrator_login=ADMIN_USER,
            administrator_login_password=pulumi.Output.secret(args.password),
            availability_zone=args.zones[0],
            backup=azure_native.dbforpostgresql.BackupArgs(
                backup_retention_days=args.backup_days, geo_redundant_backup="Disabled"
            ),
            auth_config=azure_native.dbforpostgresql.AuthConfigArgs(
                password_auth="Enabled", active_directory_auth="Disabled"
            ),
            **(common | {"tags": tags}),
            opts=pulumi.ResourceOptions(parent=self, protect=args.production),
        )
        self._settings_database(args, self.replica)
        self.write_endpoint = pulumi.Output.from_input(args.source_endpoint)
