"""Every flow the platform needs, declared once beside ``infra.spec.FIREWALL``.

A flow is one hop of traffic the platform cannot work without: who opens it, to what, on
which protocol and ports, across which reach (same region, the home region, every other
region, the internet), which name the caller resolves, and why. ``rtcfleet reach`` evaluates
each flow across every stack of an environment before deploy; ``firewall_problems`` holds
``FIREWALL`` to this table in both directions, so the firewall (and the policy pack, which
checks stacks against ``FIREWALL``) opens exactly what some flow needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from infra.spec import (
    ADMIN_PORT,
    CLIENT_SIGNALING_PORT,
    FIREWALL,
    HTTPS_PORT,
    MEDIA_PORT_MAX,
    MEDIA_PORT_MIN,
    POSTGRES_PORT,
    REDIS_PORT,
    TURN_PORT,
    Ingress,
    Protocol,
    Role,
    Source,
)


class Peer(StrEnum):
    """An end of a flow that is not a role of a region stack."""

    INTERNET = "internet"
    ADMIN_ALLOW_LIST = "admin-allow-list"
    CLOUD_SERVICES = "cloud-services"
    # the OTLP/HTTP receiver named by rtcfleet:otlpEndpoint (infra/traces.py)
    TRACE_RECEIVER = "trace-receiver"


class Scope(StrEnum):
    """Which destination region a flow reaches, seen from its source's region."""

    SAME_REGION = "same region"
    # The region that holds the environment's settings writer (rtcfleet:writerStack, else the
    # home region of the source's cloud).
    HOME_REGION = "writer's region"
    # The home region, from every other region of its cloud whose server replicates it.
    FROM_OTHER_REGIONS = "home region, from other regions"
    # The environment's one writer, from each region of another cloud (rtcfleet:writerStack).
    FROM_OTHER_CLOUD = "the writer, from regions of another cloud"
    # Every other region of the environment, whichever cloud, over the private network.
    OTHER_REGIONS = "every other region"


class Database(StrEnum):
    """Which Postgres server a flow to ``Role.POSTGRES`` means."""

    WRITER = "writer"
    READER = "reader"


Endpoint = Role | Peer


@dataclass(frozen=True)
class Flow:
    name: str
    source: Endpoint
    destination: Endpoint
    protocol: Protocol
    from_port: int
    to_port: int
    scope: Scope
    why: str
    # The name the source resolves to find the destination.
    dns: str
    # The load balancer's health checks also travel this hop.
    health_checked: bool = False
    database: Database | None = None
    # Clouds on which the flow travels through the stacks' networks (others manage it).
    clouds: tuple[str, ...] = ("aws", "azure")
    # The service a flow to ``Peer.CLOUD_SERVICES`` reaches, by its Azure service-endpoint
    # name: on Azure over the source subnet's service endpoint, whose network rules must admit
    # that subnet; ``Microsoft.Storage`` on AWS is S3 through the VPC's gateway endpoint.
    azure_service: str = "Microsoft.KeyVault"
    # The key of the source role's settings document that must name the destination
    # region's endpoint (``{<region>: [<url>, ...]}``): the name the caller resolves.
    named_in: str | None = None
    # The region setting (a field of ``RegionSettings``) without which the flow does not
    # exist; for a flow to ``Peer.TRACE_RECEIVER`` it also gives the address and port.
    setting: str | None = None

    @property
    def ports(self) -> str:
        if self.from_port == self.to_port:
            return f"{self.protocol}/{self.from_port}"
        return f"{self.protocol}/{self.from_port}-{self.to_port}"


def _tcp(
    name: str,
    source: Endpoint,
    destination: Endpoint,
    port: int,
    scope: Scope,
    why: str,
    dns: str,
    **kwargs: object,
) -> Flow:
    return Flow(name, source, destination, "tcp", port, port, scope, why, dns, **kwargs)  # type: ignore[arg-type]


FLOWS: tuple[Flow, ...] = (
    _tcp(
        "client-signaling",
        Peer.INTERNET,
        Role.CLIENT_LB,
        HTTPS_PORT,
        Scope.SAME_REGION,
        "clients (and DNS health checkers) reach the region's signaling over TLS",
        "api.<domain> (public DNS) -> the client load balancer's public name",
    ),
    _tcp(
        "admin-console",
        Peer.ADMIN_ALLOW_LIST,
        Role.ADMIN_LB,
        HTTPS_PORT,
        Scope.SAME_REGION,
        "operators on the allow-list reach the admin console over TLS",
        "the admin load balancer's public name",
    ),
    _tcp(
        "client-lb-to-gateway",
        Role.CLIENT_LB,
        Role.GATEWAY,
        CLIENT_SIGNALING_PORT,
        Scope.SAME_REGION,
        "client signaling (WebSocket) and the /readyz probe",
        "none: the load balancer's target group / backend pool",
        health_checked=True,
    ),
    _tcp(
        "admin-lb-to-gateway",
        Role.ADMIN_LB,
        Role.GATEWAY,
        ADMIN_PORT,
        Scope.SAME_REGION,
        "admin console and admin API, and the /readyz probe",
        "none: the load balancer's target group / backend pool",
        health_checked=True,
    ),
    _tcp(
        "media-registration",
        Role.MEDIA_NODE,
        Role.SIGNALING_LB,
        CLIENT_SIGNALING_PORT,
        Scope.SAME_REGION,
        "media nodes register, heartbeat and take signaling",
        "signalingUrl in the media node's settings (internal LB name / static address)",
    ),
    _tcp(
        "signaling-lb-to-gateway",
        Role.SIGNALING_LB,
        Role.GATEWAY,
        CLIENT_SIGNALING_PORT,
        Scope.SAME_REGION,
        "media-node signaling, and the /readyz probe",
        "none: the load balancer's target group / backend pool",
        health_checked=True,
    ),
    _tcp(
        "room-lookup",
        Role.GATEWAY,
        Role.SIGNALING_LB,
        CLIENT_SIGNALING_PORT,
        Scope.OTHER_REGIONS,
        "before placing a new room, ask every other region if it hosts it",
        "peerRegions in the gateway's settings: the other stack's roomLookupUrl (its "
        "media-signaling LB), from rtcfleet:peerStacks",
        named_in="peerRegions",
    ),
    _tcp(
        "gateway-redis",
        Role.GATEWAY,
        Role.REDIS,
        REDIS_PORT,
        Scope.SAME_REGION,
        "sessions, room placement and the node registry",
        "redis.host in the gateway's settings",
    ),
    _tcp(
        "media-redis",
        Role.MEDIA_NODE,
        Role.REDIS,
        REDIS_PORT,
        Scope.SAME_REGION,
        "room claims and load reports",
        "redis.host in the media node's settings",
    ),
    _tcp(
        "gateway-settings-read",
        Role.GATEWAY,
        Role.POSTGRES,
        POSTGRES_PORT,
        Scope.SAME_REGION,
        "settings reads from the region's replica",
        "postgres.readHost",
        database=Database.READER,
    ),
    _tcp(
        "media-settings-read",
        Role.MEDIA_NODE,
        Role.POSTGRES,
        POSTGRES_PORT,
        Scope.SAME_REGION,
        "settings reads from the region's replica",
        "postgres.readHost",
        database=Database.READER,
    ),
    _tcp(
        "settings-write",
        Role.GATEWAY,
        Role.POSTGRES,
        POSTGRES_PORT,
        Scope.HOME_REGION,
        "admin settings writes go to the one writer, in the home region",
        "postgres.writeHost (the home stack's postgresWriteEndpoint)",
        database=Database.WRITER,
    ),
    _tcp(
        "replica-replication",
        Role.POSTGRES,
        Role.POSTGRES,
        POSTGRES_PORT,
        Scope.FROM_OTHER_REGIONS,
        "a cross-region Flexible Server replica streams from the writer over the private "
        "network (RDS replicates cross-region outside the VPCs)",
        "the writer's name in its private DNS zone",
        database=Database.WRITER,
        clouds=("azure",),
    ),
    _tcp(
        "settings-subscription",
        Role.POSTGRES,
        Role.POSTGRES,
        POSTGRES_PORT,
        Scope.FROM_OTHER_CLOUD,
        "a region of another cloud keeps a logical-replication subscription to the writer, "
        "over the VPN",
        "the writer stack's postgresWriteEndpoint",
        database=Database.WRITER,
    ),
    Flow(
        "turn-udp",
        Peer.INTERNET,
        Role.MEDIA_NODE,
        "udp",
        TURN_PORT,
        TURN_PORT,
        Scope.SAME_REGION,
        "STUN binding and TURN allocations over UDP",
        "the ICE servers the gateway hands out (each node's public address)",
    ),
    Flow(
        "media-udp",
        Peer.INTERNET,
        Role.MEDIA_NODE,
        "udp",
        MEDIA_PORT_MIN,
        MEDIA_PORT_MAX,
        Scope.SAME_REGION,
        "ICE and SRTP to the node's public address (1:1 NAT)",
        "none: ICE candidates carry the node's public address",
    ),
    Flow(
        "turn-tcp",
        Peer.INTERNET,
        Role.MEDIA_NODE,
        "tcp",
        TURN_PORT,
        TURN_PORT,
        Scope.SAME_REGION,
        "TURN over TCP for networks that block UDP",
        "the ICE servers the gateway hands out (each node's public address)",
    ),
    _tcp(
        "gateway-secrets",
        Role.GATEWAY,
        Peer.CLOUD_SERVICES,
        HTTPS_PORT,
        Scope.SAME_REGION,
        "secrets and settings at boot (Secrets Manager + SSM / Key Vault)",
        "the cloud's regional service names",
    ),
    _tcp(
        "media-secrets",
        Role.MEDIA_NODE,
        Peer.CLOUD_SERVICES,
        HTTPS_PORT,
        Scope.SAME_REGION,
        "secrets and settings at boot (Secrets Manager + SSM / Key Vault)",
        "the cloud's regional service names",
    ),
    _tcp(
        "media-recordings",
        Role.MEDIA_NODE,
        Peer.CLOUD_SERVICES,
        HTTPS_PORT,
        Scope.SAME_REGION,
        "recording segments and manifests to the region's bucket / blob container",
        "the region's S3 endpoint / <account>.blob.core.windows.net",
        azure_service="Microsoft.Storage",
    ),
    # The receiver's port comes from rtcfleet:otlpEndpoint (443 for https without one);
    # open egress already admits it, so no FIREWALL rule stands for these two.
    _tcp(
        "gateway-traces",
        Role.GATEWAY,
        Peer.TRACE_RECEIVER,
        HTTPS_PORT,
        Scope.SAME_REGION,
        "spans of client requests to the OTLP/HTTP receiver, when one is set",
        "otlpEndpoint in the gateway's settings",
        setting="otlp_endpoint",
    ),
    _tcp(
        "media-traces",
        Role.MEDIA_NODE,
        Peer.TRACE_RECEIVER,
        HTTPS_PORT,
        Scope.SAME_REGION,
        "spans of node commands and negotiation to the OTLP/HTTP receiver, when one is set",
        "otlpEndpoint in the media node's settings",
        setting="otlp_endpoint",
    ),
)

# FIREWALL sources that name a role, and the flows' sources they stand for.
_ROLE_SOURCES: dict[Source, Role] = {
    Source.CLIENT_LB: Role.CLIENT_LB,
    Source.ADMIN_LB: Role.ADMIN_LB,
    Source.SIGNALING_LB: Role.SIGNALING_LB,
    Source.GATEWAYS: Role.GATEWAY,
    Source.MEDIA_NODES: Role.MEDIA_NODE,
}


def _source_matches(rule: Ingress, flow: Flow) -> bool:
    """Whether a firewall rule's kind of source is the one that carries ``flow``."""
    if rule.source is Source.ANYWHERE:
        return flow.source is Peer.INTERNET
    if rule.source is Source.ADMIN_ALLOW_LIST:
        return flow.source is Peer.ADMIN_ALLOW_LIST
    if rule.source is Source.PRIVATE_NETWORK:
        return isinstance(flow.source, Role)
    if rule.source is Source.PEERED_NETWORKS:
        return isinstance(flow.source, Role) and flow.scope in (
            Scope.HOME_REGION,
            Scope.FROM_OTHER_REGIONS,
            Scope.FROM_OTHER_CLOUD,
            Scope.OTHER_REGIONS,
        )
    return _ROLE_SOURCES.get(rule.source) is flow.source and flow.scope is Scope.SAME_REGION


def _ports_match(rule: Ingress, flow: Flow) -> bool:
    return (rule.protocol, rule.from_port, rule.to_port) == (
        flow.protocol,
        flow.from_port,
        flow.to_port,
    )


def flows_to(role: Role) -> list[Flow]:
    return [flow for flow in FLOWS if flow.destination is role]


def firewall_problems() -> list[str]:
    """Where ``FIREWALL`` and ``FLOWS`` disagree: a rule no flow needs, a flow no rule admits."""
    problems = []
    for role, rules in FIREWALL.items():
        for rule in rules:
            if not any(
                _ports_match(rule, flow) and _source_matches(rule, flow) for flow in flows_to(role)
            ):
                problems.append(
                    f"FIREWALL[{role.value}] opens {rule.protocol}/{rule.from_port}-{rule.to_port}"
                    f" from {rule.source.value} ({rule.description}): no flow needs it"
                )
    for flow in FLOWS:
        if not isinstance(flow.destination, Role) or flow.destination not in FIREWALL:
            continue
        if not any(
            _ports_match(rule, flow) and _source_matches(rule, flow)
            for rule in FIREWALL[flow.destination]
        ):
            problems.append(
                f"flow {flow.name} ({flow.source} -> {flow.destination.value} {flow.ports}, "
                f"{flow.scope}): no FIREWALL rule admits it"
            )
    return problems


def internet_ports(role: Role) -> set[tuple[str, int, int]]:
    """The (protocol, from, to) ranges flows open on ``role`` to the internet or allow-list."""
    return {
        (flow.protocol, flow.from_port, flow.to_port)
        for flow in flows_to(role)
        if flow.source in (Peer.INTERNET, Peer.ADMIN_ALLOW_LIST)
    }
