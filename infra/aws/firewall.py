"""Security groups generated from ``infra.spec.FIREWALL``: AWS terms for each kind of source.

Ingress is inline on each group so a group's whole rule set is one resource that the policy
pack can compare against the spec; load balancers may only send to their targets' ports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.spec import ANYWHERE_V4, FIREWALL, ROLE_TAG, Ingress, Role, Source

# Sources that are another role's security group.
SOURCE_ROLES: dict[Source, Role] = {
    Source.CLIENT_LB: Role.CLIENT_LB,
    Source.ADMIN_LB: Role.ADMIN_LB,
    Source.SIGNALING_LB: Role.SIGNALING_LB,
    Source.GATEWAYS: Role.GATEWAY,
    Source.MEDIA_NODES: Role.MEDIA_NODE,
}
LOAD_BALANCER_ROLES = (Role.CLIENT_LB, Role.ADMIN_LB, Role.SIGNALING_LB)
# Nodes reach AWS APIs (Session Manager, Secrets Manager), peers' regions and, for media, clients.
OPEN_EGRESS_ROLES = (Role.GATEWAY, Role.MEDIA_NODE)


@dataclass
class FirewallArgs:
    prefix: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    admin_allow_list: list[str]
    # This VPC and the peered regions.
    private_cidrs: list[str]
    tags: dict[str, str] = field(default_factory=dict)


def creation_order() -> list[Role]:
    """Roles ordered so each group exists before the groups that name it as a source."""
    ordered: list[Role] = []
    pending = list(FIREWALL)
    while pending:
        ready = [
            role
            for role in pending
            if all(
                SOURCE_ROLES[rule.source] in ordered
                for rule in FIREWALL[role]
                if rule.source in SOURCE_ROLES
            )
        ]
        if not ready:
            raise ValueError(f"FIREWALL sources form a cycle among {pending}")
        ordered.extend(ready)
        pending = [role for role in pending if role not in ready]
    return ordered


def load_balancer_targets(role: Role) -> list[Ingress]:
    """The rules of other roles that admit traffic from this load balancer."""
    return [
        rule
        for target in FIREWALL
        for rule in FIREWALL[target]
        if rule.source in SOURCE_ROLES and SOURCE_ROLES[rule.source] is role
    ]


class Firewall(pulumi.ComponentResource):
    """One security group per role, each saying exactly what ``FIREWALL`` says."""

    groups: dict[Role, aws.ec2.SecurityGroup]

    def __init__(
        self, name: str, args: FirewallArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:Firewall", name, None, opts)
        self._args = args
        self.groups = {}
        for role in creation_order():
            self.groups[role] = aws.ec2.SecurityGroup(
                f"{args.prefix}-{role.value}",
                description=f"rtcfleet {role.value}: generated from infra.spec.FIREWALL",
                vpc_id=args.vpc_id,
                ingress=self._ingress(role),
                egress=self._egress(role),
                revoke_rules_on_delete=True,
                tags={**args.tags, ROLE_TAG: role.value, "Name": f"{args.prefix}-{role.value}"},
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({role.value: group.id for role, group in self.groups.items()})

    def group_id(self, role: Role) -> pulumi.Output[str]:
        return self.groups[role].id

    def _cidrs(self, source: Source) -> Sequence[str]:
        mapping: Mapping[Source, Sequence[str]] = {
            Source.ANYWHERE: [ANYWHERE_V4],
            Source.ADMIN_ALLOW_LIST: self._args.admin_allow_list,
            Source.PRIVATE_NETWORK: self._args.private_cidrs,
            Source.PEERED_NETWORKS: [
                cidr for cidr in self._args.private_cidrs if cidr != self._args.vpc_cidr
            ],
        }
        return mapping[source]

    def _ingress(self, role: Role) -> list[aws.ec2.SecurityGroupIngressArgs]:
        rules = []
        for rule in FIREWALL[role]:
            groups: list[pulumi.Input[str]] | None = None
            cidrs: list[str] | None = None
            if rule.source in SOURCE_ROLES:
                groups = [self.groups[SOURCE_ROLES[rule.source]].id]
            else:
                cidrs = list(self._cidrs(rule.source))
                if not cidrs:
                    # An empty allow-list opens nothing (no admin access), nor do absent peers.
                    continue
            rules.append(
                aws.ec2.SecurityGroupIngressArgs(
                    protocol=rule.protocol,
                    from_port=rule.from_port,
                    to_port=rule.to_port,
                    description=rule.description,
                    security_groups=groups,
                    cidr_blocks=cidrs,
                )
            )
        return rules

    def _egress(self, role: Role) -> list[aws.ec2.SecurityGroupEgressArgs]:
        if role in OPEN_EGRESS_ROLES:
            return [
                aws.ec2.SecurityGroupEgressArgs(
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=[ANYWHERE_V4],
                    description="AWS APIs, peer regions and media to clients",
                )
            ]
        if role in LOAD_BALANCER_ROLES:
            return [
                aws.ec2.SecurityGroupEgressArgs(
                    protocol=rule.protocol,
                    from_port=rule.from_port,
                    to_port=rule.to_port,
                    cidr_blocks=[self._args.vpc_cidr],
                    description=f"to targets: {rule.description}",
                )
                for rule in load_balancer_targets(role)
            ]
        return []
