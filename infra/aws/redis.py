"""The region's Redis: a replication group with a replica in another zone and automatic failover."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import cycle, islice

import pulumi
import pulumi_aws as aws

from infra.spec import REDIS_PORT, ROLE_TAG, Role


@dataclass
class RedisArgs:
    prefix: str
    node_type: str
    replicas: int
    availability_zones: list[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    auth_token: pulumi.Input[str]
    engine_version: str = "7.1"
    snapshot_retention_days: int = 1
    tags: dict[str, str] = field(default_factory=dict)


class Redis(pulumi.ComponentResource):
    """Ephemeral state of the region; losing it loses nothing clients cannot rebuild."""

    group: aws.elasticache.ReplicationGroup

    def __init__(
        self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:Redis", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        subnets = aws.elasticache.SubnetGroup(
            f"{args.prefix}-redis",
            description="rtcfleet redis: private subnets",
            subnet_ids=args.subnet_ids,
            tags=args.tags,
            opts=child,
        )
        nodes = 1 + args.replicas
        self.group = aws.elasticache.ReplicationGroup(
            f"{args.prefix}-redis",
            description="rtcfleet ephemeral state (sessions, placement, node registry)",
            engine="redis",
            engine_version=args.engine_version,
            node_type=args.node_type,
            port=REDIS_PORT,
            num_cache_clusters=nodes,
            # Primary and replicas spread over the zones so one zone's loss promotes a replica.
            preferred_cache_cluster_azs=list(islice(cycle(args.availability_zones), nodes)),
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            auth_token=args.auth_token,
            subnet_group_name=subnets.name,
            security_group_ids=[args.security_group_id],
            snapshot_retention_limit=args.snapshot_retention_days,
            auto_minor_version_upgrade=True,
            tags={**args.tags, ROLE_TAG: Role.REDIS.value},
            opts=child,
        )
        self.register_outputs({"primaryEndpoint": self.group.primary_endpoint_address})

    @property
    def endpoint(self) -> pulumi.Output[str]:
        return self.group.primary_endpoint_address
