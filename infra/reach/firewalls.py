"""Firewalls on a flow's way: security groups, network ACLs and NSGs, as each cloud evaluates them.

Security groups are stateful and admit by address range or by group (a group reference holds
only inside one VPC); network ACLs are read in rule-number order; NSG rules go by priority,
the first match deciding, then Azure's default rules, with the service tags they name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from infra.reach.network import (
    ANYWHERE,
    AZURE_DEFAULT_INBOUND,
    AZURE_DEFAULT_OUTBOUND,
    NetworkModel,
    Resource,
    Step,
    Subnet,
    Traffic,
    block,
    covered,
    is_private,
    network,
    num,
    port_in,
    protocol_matches,
)


class Firewalls:
    """Answers whether the firewalls of one side of a flow admit the other side."""

    def __init__(self, model: NetworkModel) -> None:
        self.model = model

    def sg_rules(self, group: Resource, direction: str) -> list[dict[str, Any]]:
        rules = [dict(r) for r in group.inputs.get(direction) or [] if isinstance(r, Mapping)]
        kind = "ingress" if direction == "ingress" else "egress"
        for extra in self.model.of("aws:ec2/securityGroupRule:SecurityGroupRule"):
            if extra.inputs.get("securityGroupId") == group.id and extra.inputs.get("type") == kind:
                rules.append(
                    {**extra.inputs, "securityGroups": [extra.inputs.get("sourceSecurityGroupId")]}
                )
        token = f"aws:vpc/securityGroup{kind.title()}Rule:SecurityGroup{kind.title()}Rule"
        for extra in self.model.of(token):
            if extra.inputs.get("securityGroupId") == group.id:
                rules.append(
                    {
                        "protocol": extra.inputs.get("ipProtocol"),
                        "fromPort": extra.inputs.get("fromPort"),
                        "toPort": extra.inputs.get("toPort"),
                        "cidrBlocks": [extra.inputs["cidrIpv4"]]
                        if extra.inputs.get("cidrIpv4")
                        else [],
                        "securityGroups": [extra.inputs["referencedSecurityGroupId"]]
                        if extra.inputs.get("referencedSecurityGroupId")
                        else [],
                    }
                )
        return rules

    def security_groups(
        self,
        groups: Iterable[str],
        direction: str,
        peer: Traffic,
        protocol: str,
        port: int,
        own_network: str | None,
    ) -> Step:
        """Whether any of ``groups`` admits ``peer`` (stateful: one direction is enough)."""
        labels = []
        for group_id in groups:
            group = self.model.by_id.get(group_id)
            if group is None:
                continue
            labels.append(group.label)
            for rule in self.sg_rules(group, direction):
                if not protocol_matches(rule.get("protocol"), protocol):
                    continue
                low, high = num(rule.get("fromPort")), num(rule.get("toPort"))
                if str(rule.get("protocol")) != "-1" and not low <= port <= high:
                    continue
                cidrs = [n for n in map(network, rule.get("cidrBlocks") or []) if n]
                if cidrs and covered(peer.ranges, cidrs):
                    return Step(
                        "firewall",
                        group.label,
                        f"{direction} {protocol}/{port} {','.join(map(str, cidrs))}",
                    )
                referenced = set(rule.get("securityGroups") or [])
                if referenced & peer.groups and own_network == peer.network_id:
                    names = [
                        self.model.by_id[g].label if g in self.model.by_id else g
                        for g in referenced & peer.groups
                    ]
                    return Step(
                        "firewall",
                        group.label,
                        f"{direction} {protocol}/{port} from group {names[0]}",
                    )
        ranges = ",".join(map(str, peer.ranges))
        who = " or ".join(labels) or "no security group"
        hint = (
            " (group references do not cross a transit gateway)"
            if peer.groups and own_network != peer.network_id
            else ""
        )
        raise block(
            "firewall",
            who,
            f"no {direction} rule for {protocol}/{port} "
            f"{'from' if direction == 'ingress' else 'to'} {ranges}{hint}",
        )

    def nacl(
        self, subnet: Subnet, egress: bool, peer: Traffic, protocol: str, port: int
    ) -> Step | None:
        """The subnet's network ACL, if a stack declares one (rules in number order, stateless)."""
        for acl in self.model.of("aws:ec2/networkAcl:NetworkAcl"):
            if subnet.id not in (acl.inputs.get("subnetIds") or []):
                continue
            rules = [dict(r) for r in acl.inputs.get("egress" if egress else "ingress") or []]
            for extra in self.model.of("aws:ec2/networkAclRule:NetworkAclRule"):
                if (
                    extra.inputs.get("networkAclId") == acl.id
                    and bool(extra.inputs.get("egress")) == egress
                ):
                    rules.append({**extra.inputs, "action": extra.inputs.get("ruleAction")})
            for rule in sorted(rules, key=lambda r: num(r.get("ruleNo", r.get("ruleNumber")))):
                if not protocol_matches(rule.get("protocol"), protocol):
                    continue
                if str(rule.get("protocol")) != "-1" and not num(
                    rule.get("fromPort")
                ) <= port <= num(rule.get("toPort")):
                    continue
                cidr = network(rule.get("cidrBlock"))
                if cidr is None or not any(r.overlaps(cidr) for r in peer.ranges):
                    continue
                number = num(rule.get("ruleNo", rule.get("ruleNumber")))
                if rule.get("action") == "allow" and covered(peer.ranges, [cidr]):
                    return Step("nacl", acl.label, f"rule {number} allows {protocol}/{port}")
                raise block("nacl", acl.label, f"rule {number} denies {protocol}/{port}")
            raise block("nacl", acl.label, f"no rule allows {protocol}/{port}: implicit deny")
        return None

    def _tag_covers(self, prefix: str, traffic: Traffic, vnet_id: str) -> bool:
        if prefix in ("*", "0.0.0.0/0"):
            return True
        if prefix == "Internet":
            return all(not is_private(r) or r == ANYWHERE for r in traffic.ranges)
        if prefix == "VirtualNetwork":
            return covered(traffic.ranges, self.model.vnet_prefixes(vnet_id))
        if prefix in traffic.tags:
            return True
        cidr = network(prefix)
        return cidr is not None and covered(traffic.ranges, [cidr])

    def _tag_overlaps(self, prefix: str, traffic: Traffic, vnet_id: str) -> bool:
        if self._tag_covers(prefix, traffic, vnet_id):
            return True
        cidr = network(prefix)
        return cidr is not None and any(r.overlaps(cidr) for r in traffic.ranges)

    def _prefixes_match(
        self, prefixes: list[str], traffic: Traffic, vnet_id: str, allow: bool
    ) -> bool:
        """An allow must cover every range of the traffic; a deny stops it on any overlap."""
        if not allow:
            return any(self._tag_overlaps(p, traffic, vnet_id) for p in prefixes)
        if any(self._tag_covers(p, traffic, vnet_id) for p in prefixes):
            return True
        cidrs = [n for n in map(network, prefixes) if n is not None]
        return bool(traffic.ranges) and covered(traffic.ranges, cidrs)

    def nsg(
        self, subnet: Subnet, direction: str, peer: Traffic, own: Traffic, protocol: str, port: int
    ) -> Step:
        """The subnet's NSG: rules by priority, the first match decides, then Azure's defaults."""
        nsg_id = str((subnet.resource.inputs.get("networkSecurityGroup") or {}).get("id") or "")
        group = self.model.by_id.get(nsg_id)
        if group is None:
            return Step("nsg", subnet.resource.label, "no NSG on the subnet")
        inbound = direction == "Inbound"
        rules = [
            dict(r)
            for r in group.inputs.get("securityRules") or []
            if r.get("direction") == direction
        ]
        for extra in self.model.of("azure-native:network:SecurityRule"):
            if (
                extra.inputs.get("networkSecurityGroupName")
                == group.inputs.get("networkSecurityGroupName")
                and extra.inputs.get("direction") == direction
            ):
                rules.append(dict(extra.inputs))
        defaults = AZURE_DEFAULT_INBOUND if inbound else AZURE_DEFAULT_OUTBOUND
        for name, priority, access, tag in defaults:
            rules.append(
                {
                    "name": name,
                    "priority": priority,
                    "access": access,
                    "protocol": "*",
                    "sourceAddressPrefix": tag if inbound else "*",
                    "destinationAddressPrefix": "*" if inbound else tag,
                    "destinationPortRange": "*",
                    "default": True,
                }
            )
        source, target = (peer, own) if inbound else (own, peer)
        for rule in sorted(rules, key=lambda r: num(r.get("priority"))):
            if not protocol_matches(rule.get("protocol"), protocol):
                continue
            ports = list(rule.get("destinationPortRanges") or []) + (
                [rule["destinationPortRange"]] if rule.get("destinationPortRange") else []
            )
            if not any(port_in(p, port) for p in ports):
                continue
            sources = list(rule.get("sourceAddressPrefixes") or []) + (
                [rule["sourceAddressPrefix"]] if rule.get("sourceAddressPrefix") else []
            )
            targets = list(rule.get("destinationAddressPrefixes") or []) + (
                [rule["destinationAddressPrefix"]] if rule.get("destinationAddressPrefix") else []
            )
            allow = rule.get("access") == "Allow"
            if not self._prefixes_match(sources, source, subnet.network_id, allow):
                continue
            if not self._prefixes_match(targets, target, subnet.network_id, allow):
                continue
            label = f"{group.label} rule {rule.get('name')} (priority {num(rule.get('priority'))})"
            if allow:
                return Step("nsg", label, f"{direction.lower()} {protocol}/{port} allowed")
            raise block(
                "nsg",
                label,
                f"denies {direction.lower()} {protocol}/{port} "
                f"{'from' if inbound else 'to'} {','.join(map(str, peer.ranges))}",
            )
        raise block("nsg", group.label, f"no rule matches {protocol}/{port}")
