"""The region's Redis: Azure Cache for Redis Premium, replicas across zones, private only.

Premium is the tier with zone placement and replicas; Azure fails over to a replica on its
own. The cache refuses the public network and plain text (TLS on 6380 only) and is reached
through a private endpoint in the Redis subnet, whose NSG admits gateways and media nodes.
Azure generates the access key; the region stores it in Key Vault for the nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from infra.azure.private_dns import private_zone
from infra.spec import ROLE_TAG, Role

PRIVATE_ZONE = "privatelink.redis.cache.windows.net"


@dataclass
class RedisArgs:
    prefix: str
    stack: str
    resource_group_name: pulumi.Input[str]
    location: str
    capacity: int
    replicas: int
    zones: Sequence[str]
    subnet_id: pulumi.Input[str]
    vnet_id: pulumi.Input[str]
    redis_version: str = "6"
    tags: dict[str, str] = field(default_factory=dict)


def cache_zones(zones: Sequence[str], replicas: int) -> list[str]:
    """The zones the cache's nodes go to: no more zones than it has nodes."""
    return list(zones)[: replicas + 1]


class Redis(pulumi.ComponentResource):
    """Ephemeral state of the region; losing it loses nothing clients cannot rebuild."""

    cache: azure_native.redis.Redis
    access_key: pulumi.Output[str]

    def __init__(
        self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:Redis", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {**args.tags, ROLE_TAG: Role.REDIS.value}
        digest = hashlib.sha1(args.stack.encode()).hexdigest()[:6]
        self.cache = azure_native.redis.Redis(
            f"{args.prefix}-redis",
            name=f"{args.prefix}-redis-{digest}",
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=azure_native.redis.SkuArgs(name="Premium", family="P", capacity=args.capacity),
            # Primary and replicas spread over the zones so one zone's loss promotes a replica;
            # Azure needs at least as many nodes (primary + replicas) as zones.
            zones=cache_zones(args.zones, args.replicas),
            zonal_allocation_policy="UserDefined",
            replicas_per_primary=args.replicas,
            enable_non_ssl_port=False,
            minimum_tls_version="1.2",
            public_network_access="Disabled",
            redis_version=args.redis_version,
            redis_configuration=azure_native.redis.RedisCommonPropertiesRedisConfigurationArgs(
                maxmemory_policy="volatile-lru"
            ),
            tags=tags,
            opts=child,
        )
        endpoint = azure_native.network.PrivateEndpoint(
            f"{args.prefix}-redis",
            private_endpoint_name=f"{args.prefix}-redis",
            resource_group_name=args.resource_group_name,
            location=args.location,
            subnet=azure_native.network.SubnetArgs(id=args.subnet_id),
            private_link_service_connections=[
                azure_native.network.PrivateLinkServiceConnectionArgs(
                    name="redis", private_link_service_id=self.cache.id, group_ids=["redisCache"]
                )
            ],
            tags=tags,
            opts=child,
        )
        zone = private_zone(
            f"{args.prefix}-redis-dns",
            PRIVATE_ZONE,
            args.resource_group_name,
            args.vnet_id,
            args.tags,
            parent=self,
        )
        azure_native.network.PrivateDnsZoneGroup(
            f"{args.prefix}-redis",
            private_dns_zone_group_name="redis",
            private_endpoint_name=endpoint.name,
            resource_group_name=args.resource_group_name,
            private_dns_zone_configs=[
                azure_native.network.PrivateDnsZoneConfigArgs(
                    name="redis", private_dns_zone_id=zone.id
                )
            ],
            opts=child,
        )
        keys = azure_native.redis.list_redis_keys_output(
            name=self.cache.name,
            resource_group_name=args.resource_group_name,
            opts=pulumi.InvokeOptions(parent=self),
        )
        self.access_key = pulumi.Output.secret(keys.primary_key)
        self.register_outputs({"hostName": self.cache.host_name})

    @property
    def host(self) -> pulumi.Output[str]:
        return self.cache.host_name
