"""Network security groups generated from ``infra.spec.FIREWALL``: Azure terms for each source.

Each role that owns a subnet gets one NSG on that subnet whose inbound rules are ``FIREWALL``'s,
translated where Azure differs from AWS in two places only, both stated here:

- Azure Cache for Redis serves TLS on 6380 (its 6379 is the plain-text port, kept disabled), so
  the Redis rules open 6380 where AWS opens 6379 for TLS.
- The media-signaling entry point is an internal Standard Load Balancer, which forwards packets
  with the caller's address instead of proxying them. Its callers therefore reach the gateways
  directly: the gateway NSG admits the signaling load balancer's own sources (the private
  network) on its port, and the load balancer needs no NSG of its own.

Sources that are another role (the Application Gateways, gateways, media nodes) are that role's
subnet. A few inbound flows Azure's platform needs are listed in ``PLATFORM_RULES``, each from
a service tag or a private range, never from the internet. Every NSG ends with an explicit
deny-all, so Azure's default rules (``AllowVnetInBound``, ``AllowAzureLoadBalancerInBound``)
never admit anything: an NSG says what ``FIREWALL`` says and nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from infra.azure.firewall_rules import (
    AZURE_LOAD_BALANCER,
    DENY_ALL_NAME,
    DENY_ALL_PRIORITY,
    GATEWAY_MANAGER,
    NSG_ROLES,
    OWN_SUBNET,
    PEERED_NETWORKS,
    PLATFORM_PRIORITY,
    PLATFORM_RULES,
    SOURCE_ROLES,
    SPEC_PRIORITY,
    nsg_ingress,
    platform_destination,
    port_range,
    rule_name,
)
from infra.spec import ROLE_TAG, Role, Source


def _protocol(protocol: str) -> str:
    return {"tcp": "Tcp", "udp": "Udp"}.get(protocol, "*")


@dataclass
class FirewallArgs:
    prefix: str
    resource_group_name: pulumi.Input[str]
    location: str
    # The CIDR of each role's subnet, planned before the subnets exist.
    subnet_cidrs: Mapping[Role, str]
    admin_allow_list: list[str]
    # This VNet and the peered regions.
    private_cidrs: list[str]
    peered_cidrs: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


class Firewall(pulumi.ComponentResource):
    """One NSG per subnet role, each saying exactly what ``nsg_ingress`` says, then deny-all."""

    groups: dict[Role, azure_native.network.NetworkSecurityGroup]

    def __init__(
        self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:Firewall", name, None, opts)
        self._args = args
        self.groups = {}
        for role in NSG_ROLES:
            self.groups[role] = azure_native.network.NetworkSecurityGroup(
                f"{args.prefix}-{role.value}",
                network_security_group_name=f"{args.prefix}-{role.value}",
                resource_group_name=args.resource_group_name,
                location=args.location,
                security_rules=self.rules(role),
                tags={**args.tags, ROLE_TAG: role.value},
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({role.value: group.id for role, group in self.groups.items()})

    def group_id(self, role: Role) -> pulumi.Output[str]:
        return self.groups[role].id

    def _sources(self, source: Source | str, role: Role) -> Sequence[str]:
        args = self._args
        if isinstance(source, Source) and source in SOURCE_ROLES:
            return [args.subnet_cidrs[SOURCE_ROLES[source]]]
        mapping: Mapping[str, Sequence[str]] = {
            Source.ANYWHERE: ["*"],
            Source.ADMIN_ALLOW_LIST: args.admin_allow_list,
            Source.PRIVATE_NETWORK: args.private_cidrs,
            GATEWAY_MANAGER: [GATEWAY_MANAGER],
            AZURE_LOAD_BALANCER: [AZURE_LOAD_BALANCER],
            OWN_SUBNET: [args.subnet_cidrs[role]],
            PEERED_NETWORKS: args.peered_cidrs,
        }
        return mapping[source]

    def _rule(
        self,
        role: Role,
        name: str,
        priority: int,
        protocol: str,
        ports: str,
        sources: Sequence[str],
        description: str,
        destination: str | None = None,
    ) -> azure_native.network.SecurityRuleArgs:
        single = len(sources) == 1
        return azure_native.network.SecurityRuleArgs(
            name=name,
            priority=priority,
            direction="Inbound",
            access="Allow",
            protocol=protocol,
            source_address_prefix=sources[0] if single else None,
            source_address_prefixes=None if single else list(sources),
            source_port_range="*",
            destination_address_prefix=destination or self._args.subnet_cidrs[role],
            destination_port_range=ports,
            description=description,
        )

    def rules(self, role: Role) -> list[azure_native.network.SecurityRuleArgs]:
        rules = []
        priority = SPEC_PRIORITY
        for rule in nsg_ingress(role):
            sources = self._sources(rule.source, role)
            if not sources:
                # An empty allow-list opens nothing: no admin access at all.
                continue
            rules.append(
                self._rule(
                    role,
                    rule_name(rule),
                    priority,
                    _protocol(rule.protocol),
                    port_range(rule.from_port, rule.to_port),
                    sources,
                    f"{role.value}: {rule.description} (infra.spec.FIREWALL)",
                )
            )
            priority += 10
        priority = PLATFORM_PRIORITY
        for platform in PLATFORM_RULES.get(role, ()):
            sources = self._sources(platform.source, role)
            if not sources:
                continue
            rules.append(
                self._rule(
                    role,
                    f"platform-{platform.name}",
                    priority,
                    _protocol(platform.protocol),
                    port_range(platform.from_port, platform.to_port),
                    sources,
                    f"{role.value}: {platform.reason}",
                    platform_destination(role, platform.source),
                )
            )
            priority += 10
        rules.append(
            azure_native.network.SecurityRuleArgs(
                name=DENY_ALL_NAME,
                priority=DENY_ALL_PRIORITY,
                direction="Inbound",
                access="Deny",
                protocol="*",
                source_address_prefix="*",
                source_port_range="*",
                destination_address_prefix="*",
                destination_port_range="*",
                description="overrides Azure's default AllowVnetInBound and AllowAzureLoadBalancer",
            )
        )
        return rules
