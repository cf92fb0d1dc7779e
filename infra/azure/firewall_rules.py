"""The Azure view of ``infra.spec.FIREWALL``: which rules each NSG holds, as plain data.

Kept free of pulumi_azure_native so the policy pack, whose virtualenv has only pulumi and
pulumi-policy, checks NSGs against the very same rules the firewall component writes.
See ``infra.azure.firewall`` for why Azure differs from AWS where it does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from infra.spec import (
    FIREWALL,
    POSTGRES_PORT,
    REDIS_PORT,
    Ingress,
    Role,
    Source,
)

AZURE_REDIS_TLS_PORT = 6380
# Roles that own a subnet and so an NSG, in the order their subnets take the VNet range
# (infra/azure/network.py); the signaling load balancer passes packets through.
NSG_ROLES = (
    Role.CLIENT_LB,
    Role.ADMIN_LB,
    Role.GATEWAY,
    Role.MEDIA_NODE,
    Role.REDIS,
    Role.POSTGRES,
)
# Sources that are pass-through load balancers on Azure: their targets see the LB's callers.
PASS_THROUGH: dict[Source, Role] = {Source.SIGNALING_LB: Role.SIGNALING_LB}
# Ports a managed service listens on instead of the spec's (role, port).
SERVICE_PORTS: dict[tuple[Role, int], int] = {(Role.REDIS, REDIS_PORT): AZURE_REDIS_TLS_PORT}
# Sources that are a role's subnet.
SOURCE_ROLES: dict[Source, Role] = {
    Source.CLIENT_LB: Role.CLIENT_LB,
    Source.ADMIN_LB: Role.ADMIN_LB,
    Source.GATEWAYS: Role.GATEWAY,
    Source.MEDIA_NODES: Role.MEDIA_NODE,
}

GATEWAY_MANAGER = "GatewayManager"
AZURE_LOAD_BALANCER = "AzureLoadBalancer"
OWN_SUBNET = "own-subnet"
PEERED_NETWORKS = "peered-networks"
ANY_PORT = (0, 65535)
DENY_ALL_NAME = "deny-all-inbound"
DENY_ALL_PRIORITY = 4096
SPEC_PRIORITY = 100
PLATFORM_PRIORITY = 1000
# Application Gateway v2 refuses a subnet NSG whose GatewayManager / AzureLoadBalancer rules
# name a destination other than Any; the subnet itself is not accepted there.
APP_GATEWAY_ROLES = (Role.CLIENT_LB, Role.ADMIN_LB)
SERVICE_TAG_SOURCES = (GATEWAY_MANAGER, AZURE_LOAD_BALANCER)
ANY = "*"


def platform_destination(role: Role, source: str) -> str | None:
    """``ANY`` where Azure demands it of a platform rule; ``None``: the role's subnet."""
    return ANY if role in APP_GATEWAY_ROLES and source in SERVICE_TAG_SOURCES else None


@dataclass(frozen=True)
class PlatformRule:
    """An inbound flow Azure's own machinery needs, from a service tag or a private range."""

    name: str
    protocol: Literal["tcp", "*"]
    from_port: int
    to_port: int
    source: str
    reason: str


# What an Application Gateway's subnet must admit from the platform (client and admin alike).
_APP_GATEWAY_SUBNET = (
    PlatformRule(
        "app-gateway-infrastructure",
        "tcp",
        65200,
        65535,
        GATEWAY_MANAGER,
        "Application Gateway v2 control plane; Azure refuses a subnet NSG without it",
    ),
    PlatformRule(
        "azure-load-balancer", "*", *ANY_PORT, AZURE_LOAD_BALANCER, "Application Gateway probes"
    ),
)

PLATFORM_RULES: dict[Role, tuple[PlatformRule, ...]] = {
    Role.CLIENT_LB: _APP_GATEWAY_SUBNET,
    Role.ADMIN_LB: _APP_GATEWAY_SUBNET,
    Role.GATEWAY: (
        PlatformRule(
            "signaling-lb-probe",
            "tcp",
            8080,
            8080,
            AZURE_LOAD_BALANCER,
            "the internal load balancer's health probe on /readyz",
        ),
    ),
    Role.POSTGRES: (
        PlatformRule(
            "ha-standby",
            "tcp",
            POSTGRES_PORT,
            POSTGRES_PORT,
            OWN_SUBNET,
            "zone-redundant HA: the standby replicates from the primary inside the subnet",
        ),
        PlatformRule(
            "cross-region-replication",
            "tcp",
            POSTGRES_PORT,
            POSTGRES_PORT,
            PEERED_NETWORKS,
            "read replicas in other regions stream from the writer over the private network",
        ),
    ),
}


def nsg_ingress(role: Role) -> tuple[Ingress, ...]:
    """``FIREWALL[role]`` as the role's NSG enforces it on Azure (see the module docstring)."""
    rules: list[Ingress] = []
    for rule in FIREWALL[role]:
        single = rule.from_port == rule.to_port
        port = (
            SERVICE_PORTS.get((role, rule.from_port), rule.from_port) if single else rule.from_port
        )
        to_port = port if single else rule.to_port
        if rule.source in PASS_THROUGH:
            sources = [
                upstream.source
                for upstream in FIREWALL[PASS_THROUGH[rule.source]]
                if upstream.protocol == rule.protocol and upstream.covers(rule.from_port)
            ]
        else:
            sources = [rule.source]
        for source in sources:
            translated = replace(rule, from_port=port, to_port=to_port, source=source)
            if translated not in rules:
                rules.append(translated)
    return tuple(rules)


def port_range(from_port: int, to_port: int) -> str:
    if (from_port, to_port) == ANY_PORT:
        return "*"
    return str(from_port) if from_port == to_port else f"{from_port}-{to_port}"


def rule_name(rule: Ingress) -> str:
    return f"allow-{rule.protocol}-{port_range(rule.from_port, rule.to_port)}-from-{rule.source}"
