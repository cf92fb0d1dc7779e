"""The region's Postgres: the read/write node in the home region, read replicas everywhere.

In the home region: a multi-AZ primary and an in-region replica for media nodes. Elsewhere: a
cross-region replica of the home primary, found through the home stack's output, which a
failover can promote. The primary runs with ``rds.logical_replication`` on (a parameter group
of its own), so regions in another cloud can subscribe to its settings publication; a cross-region
replica gets the same group in its region, so a promoted one publishes too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.spec import POSTGRES_PORT, ROLE_TAG, Role

DATABASE = "rtcfleet"
MASTER_USER = "rtcfleet"
# a slot and a WAL sender per subscriber in another cloud, and room for a re-subscription
LOGICAL_REPLICATION_PARAMETERS = {
    "rds.logical_replication": "1",
    "max_replication_slots": "20",
    "max_wal_senders": "25",
}


@dataclass
class PostgresArgs:
    prefix: str
    home: bool
    instance_class: str
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    storage_gb: int = 50
    backup_days: int = 7
    engine_version: str = "16"
    production: bool = False
    # Home region only.
    password: pulumi.Input[str] | None = None
    # Other regions: the home primary's ARN (from the home stack) and its read/write address.
    source_arn: pulumi.Input[str] | None = None
    source_endpoint: pulumi.Input[str] | None = None
    tags: dict[str, str] = field(default_factory=dict)


class Postgres(pulumi.ComponentResource):
    """Settings storage: one writer for the whole platform, a local reader in every region."""

    key: aws.kms.Key
    parameter_group: aws.rds.ParameterGroup
    primary: aws.rds.Instance | None
    replica: aws.rds.Instance
    write_endpoint: pulumi.Output[str]
    read_endpoint: pulumi.Output[str]

    def __init__(
        self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:Postgres", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.prefix
        tags = {**args.tags, ROLE_TAG: Role.POSTGRES.value}
        # Cross-region encrypted replicas need a key of their own region; every region has one.
        self.key = aws.kms.Key(
            f"{prefix}-postgres",
            description=f"rtcfleet {prefix} postgres storage",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=tags,
            opts=child,
        )
        subnets = aws.rds.SubnetGroup(
            f"{prefix}-postgres",
            description="rtcfleet postgres: private subnets",
            subnet_ids=args.subnet_ids,
            tags=tags,
            opts=child,
        )
        # rds.logical_replication is static: it needs a reboot, so it is set from the start
        parameters = aws.rds.ParameterGroup(
            f"{prefix}-postgres",
            family=f"postgres{args.engine_version.split('.')[0]}",
            description="rtcfleet settings: logical replication for other clouds",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(
                    name=name, value=value, apply_method="pending-reboot"
                )
                for name, value in LOGICAL_REPLICATION_PARAMETERS.items()
            ],
            tags=tags,
            opts=child,
        )
        self.parameter_group = parameters
        common: dict[str, Any] = {
            "instance_class": args.instance_class,
            "storage_encrypted": True,
            "kms_key_id": self.key.arn,
            "publicly_accessible": False,
            "vpc_security_group_ids": [args.security_group_id],
            "port": POSTGRES_PORT,
            "parameter_group_name": parameters.name,
            "auto_minor_version_upgrade": True,
            "copy_tags_to_snapshot": True,
            "deletion_protection": args.production,
            "skip_final_snapshot": not args.production,
            "tags": tags,
        }
        if args.home:
            if args.password is None:
                raise ValueError("the home region's primary needs a password")
            self.primary = aws.rds.Instance(
                f"{prefix}-postgres",
                engine="postgres",
                engine_version=args.engine_version,
                db_name=DATABASE,
                username=MASTER_USER,
                password=args.password,
                allocated_storage=args.storage_gb,
                max_allocated_storage=args.storage_gb * 4,
                storage_type="gp3",
                db_subnet_group_name=subnets.name,
                multi_az=True,
                backup_retention_period=args.backup_days,
                final_snapshot_identifier=f"{prefix}-postgres-final" if args.production else None,
                **common,
                opts=child,
            )
            self.replica = aws.rds.Instance(
                f"{prefix}-postgres-read",
                replicate_source_db=self.primary.identifier,
                # The in-region reader only serves media nodes' settings; they keep a local copy.
                multi_az=False,
                backup_retention_period=0,
                # A same-region replica always uses its source's key; naming one is an error.
                **{
                    **common,
                    "kms_key_id": None,
                    "skip_final_snapshot": True,
                    "deletion_protection": False,
                },
                opts=child,
            )
            self.write_endpoint = self.primary.address
        else:
            if args.source_arn is None or args.source_endpoint is None:
                raise ValueError("a non-home region needs the home primary's ARN and endpoint")
            self.primary = None
            self.replica = aws.rds.Instance(
                f"{prefix}-postgres-replica",
                replicate_source_db=args.source_arn,
                db_subnet_group_name=subnets.name,
                # A promotion candidate: it must survive a zone loss once it is the writer.
                multi_az=True,
                backup_retention_period=args.backup_days,
                final_snapshot_identifier=f"{prefix}-postgres-final" if args.production else None,
                **common,
                opts=child,
            )
            self.write_endpoint = pulumi.Output.from_input(args.source_endpoint)
        self.read_endpoint = self.replica.address
        self.register_outputs(
            {"writeEndpoint": self.write_endpoint, "readEndpoint": self.read_endpoint}
        )
