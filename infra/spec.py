"""Cloud-neutral facts of one rtcfleet region, defined once.

The AWS and Azure components, the policy pack and the node services all read
their ports, port ranges, role names and HA minimums from here, so the two
clouds cannot drift apart: a test compares what each cloud opens against
``FIREWALL``, and ``infra.flows`` holds ``FIREWALL`` to the flows the platform needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

HTTPS_PORT = 443
CLIENT_SIGNALING_PORT = 8080
ADMIN_PORT = 9090
TURN_PORT = 3478
MEDIA_PORT_MIN = 49152
MEDIA_PORT_MAX = 65535
REDIS_PORT = 6379
POSTGRES_PORT = 5432
# the settings publication on the environment's writer, and a region's subscription to it
# (a subscription's name is also its replication slot's on the writer)
SETTINGS_PUBLICATION = "rtcfleet_settings"


def settings_subscription(region: str) -> str:
    """``westeurope`` -> ``rtcfleet_westeurope``: valid as a subscription and slot name."""
    return "rtcfleet_" + re.sub(r"[^a-z0-9]+", "_", region.lower()).strip("_")[:54]


SSH_PORT = 22

# Three health signals, each read by one kind of judge (docs/health.md):
# liveness (the process answers) is all a node group's health check or repair acts on;
LIVENESS_PATH = "/healthz"
# readiness (this gateway can take joins for its region now) is what load balancers route on;
READINESS_PATH = "/readyz"
# registration readiness (this gateway can take media-node registrations: its Redis answers) is
# what the media-signaling load balancer routes on: it never waits for a registered media node,
# so a region with no media node yet can still register its first one;
REGISTRATION_READINESS_PATH = "/readyz/registration"
# region health (this region can place a room on a media node that answers, end to end) is what
# DNS failover and the drills read.
REGION_HEALTH_PATH = "/regionz"
# A media node's liveness, on the machine itself (health extension, liveness watcher).
MEDIA_HEALTH_PORT = 8081
# Seconds a node group gives a new machine before its liveness counts.
LIVENESS_GRACE_SECONDS = 300
INTERNAL_PATH_PREFIX = "/internal/"

# WebSocket signaling stays open for the whole call; load balancers must not cut it.
SIGNALING_IDLE_TIMEOUT_SECONDS = 3600

MIN_AVAILABILITY_ZONES = 2
MIN_GATEWAYS = 2
MIN_REDIS_REPLICAS = 1
DEFAULT_MEDIA_CPU_TARGET_PERCENT = 50
DEFAULT_MEDIA_WARMUP_SECONDS = 180
# Bound on a media node's drain: rooms still open after it are cut.
DEFAULT_DRAIN_TIMEOUT_SECONDS = 3600
# Lifecycle heartbeat: the drain agent renews it while rooms remain.
LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS = 300
# Name of the media group's termination hook (unique per group), which the drain agent completes.
DRAIN_HOOK_NAME = "rtcfleet-drain"

# Tag on every resource that plays a role, so policies can check it against FIREWALL.
ROLE_TAG = "rtcfleet:role"
# Tags a node's first boot falls back to when its user data or custom data is lost.
ENV_TAG = "rtcfleet:env"
# Azure: the name of the Key Vault holding the node role's settings and secrets.
KEY_VAULT_TAG = "rtcfleet:keyVault"
# on a settings server that is a logical-replication subscriber: its data is the writer's
SUBSCRIBER_TAG = "rtcfleet:settings-subscriber-of"

ANYWHERE_V4 = "0.0.0.0/0"
ANYWHERE_V6 = "::/0"
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


class Role(StrEnum):
    """A block of the region that has its own firewall."""

    CLIENT_LB = "client-lb"
    ADMIN_LB = "admin-lb"
    SIGNALING_LB = "signaling-lb"
    GATEWAY = "gateway"
    MEDIA_NODE = "media"
    REDIS = "redis"
    POSTGRES = "postgres"


class Source(StrEnum):
    """Where traffic may come from, named by kind so each cloud maps it to its own terms."""

    ANYWHERE = "anywhere"
    ADMIN_ALLOW_LIST = "admin-allow-list"
    PRIVATE_NETWORK = "private-network"
    # Other regions' networks only (their ranges in ``peeredCidrs``), over the private network.
    PEERED_NETWORKS = "peered-networks"
    CLIENT_LB = "client-lb"
    ADMIN_LB = "admin-lb"
    SIGNALING_LB = "signaling-lb"
    GATEWAYS = "gateways"
    MEDIA_NODES = "media-nodes"


# Sources a region may have none of: an empty admin allow-list leaves the admin console
# closed, and a region without peers has no other region to admit. A firewall that lacks
# their rules still matches FIREWALL.
OPTIONAL_SOURCES = (Source.ADMIN_ALLOW_LIST, Source.PEERED_NETWORKS)

Protocol = Literal["tcp", "udp"]


@dataclass(frozen=True)
class Ingress:
    """One allowed inbound flow: a port range of a protocol from one kind of source."""

    protocol: Protocol
    from_port: int
    to_port: int
    source: Source
    description: str

    def covers(self, port: int) -> bool:
        return self.from_port <= port <= self.to_port


def _tcp(port: int, source: Source, description: str) -> Ingress:
    return Ingress("tcp", port, port, source, description)


FIREWALL: dict[Role, tuple[Ingress, ...]] = {
    Role.CLIENT_LB: (_tcp(HTTPS_PORT, Source.ANYWHERE, "client signaling over TLS"),),
    Role.ADMIN_LB: (_tcp(HTTPS_PORT, Source.ADMIN_ALLOW_LIST, "admin console over TLS"),),
    Role.SIGNALING_LB: (
        _tcp(CLIENT_SIGNALING_PORT, Source.PRIVATE_NETWORK, "media-node signaling"),
    ),
    Role.GATEWAY: (
        _tcp(CLIENT_SIGNALING_PORT, Source.CLIENT_LB, "client signaling"),
        _tcp(CLIENT_SIGNALING_PORT, Source.SIGNALING_LB, "media-node signaling"),
        _tcp(ADMIN_PORT, Source.ADMIN_LB, "admin console"),
    ),
    Role.MEDIA_NODE: (
        Ingress("udp", TURN_PORT, TURN_PORT, Source.ANYWHERE, "STUN/TURN"),
        Ingress("udp", MEDIA_PORT_MIN, MEDIA_PORT_MAX, Source.ANYWHERE, "media (ICE/SRTP)"),
        _tcp(TURN_PORT, Source.ANYWHERE, "TURN over TCP"),
    ),
    Role.REDIS: (
        _tcp(REDIS_PORT, Source.GATEWAYS, "ephemeral state"),
        _tcp(REDIS_PORT, Source.MEDIA_NODES, "ephemeral state"),
    ),
    Role.POSTGRES: (
        _tcp(POSTGRES_PORT, Source.GATEWAYS, "settings"),
        _tcp(POSTGRES_PORT, Source.MEDIA_NODES, "settings (read replica)"),
        # Security-group references do not cross a transit gateway: other regions by range.
        _tcp(POSTGRES_PORT, Source.PEERED_NETWORKS, "settings writes from other regions"),
    ),
}


class Size(StrEnum):
    """A machine size class; each cloud maps it per role to its own instance types."""

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"
    XLARGE = "xlarge"


# Roles that run on machines the stack sizes: the node groups and the managed data stores.
SIZED_ROLES = (Role.GATEWAY, Role.MEDIA_NODE, Role.REDIS, Role.POSTGRES)
DEFAULT_SIZE = Size.MEDIUM
DEFAULT_POSTGRES_STORAGE_GB = 50
DEFAULT_POSTGRES_BACKUP_DAYS = 7
# Keeps an operator from planning a region whose media fleet cannot grow at all.
DEFAULT_MEDIA_MIN = 2
DEFAULT_MEDIA_MAX = 10

# Secrets every region holds; nodes read them from the cloud's secret store, never user data.
SECRET_NAMES = ("apiSecret", "clusterSecret", "adminToken", "redisAuthToken", "dbPassword")
# Which secrets each node role may read (least privilege).
ROLE_SECRETS: dict[Role, tuple[str, ...]] = {
    Role.GATEWAY: SECRET_NAMES,
    Role.MEDIA_NODE: ("clusterSecret", "redisAuthToken", "dbPassword"),
}

# Roles that must never be reachable from the internet.
PRIVATE_ROLES = frozenset({Role.GATEWAY, Role.SIGNALING_LB, Role.REDIS, Role.POSTGRES})


def public_ports(role: Role) -> set[tuple[Protocol, int, int]]:
    """The (protocol, from, to) ranges a role opens to the whole internet."""
    return {
        (rule.protocol, rule.from_port, rule.to_port)
        for rule in FIREWALL[role]
        if rule.source is Source.ANYWHERE
    }
