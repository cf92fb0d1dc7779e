"""The network an environment's stacks declare, read from the resources the plan recorded.

One ``NetworkModel`` spans every stack of an environment and both clouds: VPCs and VNets,
subnets, route tables, transit gateways with their attachments, peerings and routes,
site-to-site VPNs with their local network gateways, VNet peerings, security groups, NACLs,
NSGs, load balancers down to their target ports, and private DNS zones with their links. It
answers three questions hop by hop: is there a route (both ways), does every firewall on
the way admit the packet, and does the name resolve from where it is asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_network
from typing import Any

from infra.plan.mocks import RecordedResource

ANYWHERE = IPv4Network("0.0.0.0/0")
# Azure's default NSG rules, evaluated after the declared ones.
AZURE_DEFAULT_INBOUND = (
    ("AllowVnetInBound", 65000, "Allow", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", 65001, "Allow", "AzureLoadBalancer"),
    ("DenyAllInBound", 65500, "Deny", "*"),
)
AZURE_DEFAULT_OUTBOUND = (
    ("AllowVnetOutBound", 65000, "Allow", "VirtualNetwork"),
    ("AllowInternetOutBound", 65001, "Allow", "Internet"),
    ("DenyAllOutBound", 65500, "Deny", "*"),
)


@dataclass(frozen=True)
class Step:
    """One check on a flow's way: what was asked of which resource, and its answer."""

    kind: str
    resource: str
    detail: str
    ok: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "resource": self.resource, "detail": self.detail, "ok": self.ok}


class Blocked(Exception):
    """The first step that stops a flow."""

    def __init__(self, step: Step) -> None:
        super().__init__(f"{step.kind}: {step.resource}: {step.detail}")
        self.step = step


def block(kind: str, resource: str, detail: str) -> Blocked:
    return Blocked(Step(kind, resource, detail, ok=False))


def network(value: Any) -> IPv4Network | None:
    try:
        parsed = ip_network(str(value), strict=False)
    except ValueError:
        return None
    return parsed if isinstance(parsed, IPv4Network) else None


def covered(ranges: Iterable[IPv4Network], by: Iterable[IPv4Network]) -> bool:
    by = list(by)
    return all(any(r.subnet_of(b) for b in by) for r in ranges)


def is_private(net: IPv4Network) -> bool:
    return net.is_private and net != ANYWHERE


def _num(value: Any, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _protocol_matches(declared: Any, protocol: str) -> bool:
    text = str(declared).lower()
    return (
        text in ("-1", "all", "*", protocol)
        or (text == "6" and protocol == "tcp")
        or (text == "17" and protocol == "udp")
    )


@dataclass
class Resource:
    """A recorded resource and the stack that declares it."""

    stack: str
    record: RecordedResource

    @property
    def label(self) -> str:
        kind = self.record.type.split(":")[-1]
        return f"{self.stack}:{kind}/{self.record.name}"

    @property
    def inputs(self) -> dict[str, Any]:
        return self.record.inputs

    @property
    def outputs(self) -> dict[str, Any]:
        return self.record.outputs

    @property
    def id(self) -> str:
        return self.record.id


@dataclass
class Subnet:
    resource: Resource
    cidr: IPv4Network
    network_id: str
    cloud: str

    @property
    def id(self) -> str:
        return self.resource.id


@dataclass
class Traffic:
    """One side of a flow as firewalls see it: its address ranges, groups and network."""

    ranges: list[IPv4Network]
    groups: frozenset[str] = frozenset()
    network_id: str | None = None
    # Service tags this side carries on Azure (AzureLoadBalancer for probes).
    tags: frozenset[str] = frozenset()


@dataclass
class NetworkModel:
    """Indexes of every networking resource of an environment, by id."""

    resources: list[Resource] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_id: dict[str, Resource] = {}
        self.by_arn: dict[str, Resource] = {}
        self.by_type: dict[str, list[Resource]] = {}
        self.ip_owner: dict[str, Resource] = {}
        for resource in self.resources:
            self._index(resource)
        self.subnets: dict[str, Subnet] = {}
        for r in self.of("aws:ec2/subnet:Subnet"):
            cidr = network(r.inputs.get("cidrBlock"))
            if cidr is not None:
                self.subnets[r.id] = Subnet(r, cidr, str(r.inputs.get("vpcId")), "aws")
        for r in self.of("azure-native:network:Subnet"):
            cidr = network(r.inputs.get("addressPrefix"))
            if cidr is not None:
                self.subnets[r.id] = Subnet(r, cidr, r.id.split("/subnets/")[0], "azure")

    @classmethod
    def from_plans(cls, plans: Mapping[str, Sequence[RecordedResource]]) -> NetworkModel:
        return cls([Resource(stack, r) for stack, records in plans.items() for r in records])

    def _index(self, resource: Resource) -> None:
        self.by_id.setdefault(resource.id, resource)
        arn = resource.outputs.get("arn")
        if isinstance(arn, str):
            self.by_arn[arn] = resource
        self.by_type.setdefault(resource.record.type, []).append(resource)
        address = resource.outputs.get("ipAddress")
        if resource.record.type == "azure-native:network:PublicIPAddress" and isinstance(
            address, str
        ):
            self.ip_owner[address] = resource

    def of(self, type_token: str) -> list[Resource]:
        return self.by_type.get(type_token, [])

    # ---- networks -------------------------------------------------------------------------

    def network_cidrs(self, network_id: str) -> list[IPv4Network]:
        resource = self.by_id.get(network_id)
        if resource is None:
            return []
        if resource.record.type == "aws:ec2/vpc:Vpc":
            cidr = network(resource.inputs.get("cidrBlock"))
            return [cidr] if cidr else []
        prefixes = (resource.inputs.get("addressSpace") or {}).get("addressPrefixes") or []
        return [n for n in map(network, prefixes) if n is not None]

    def network_label(self, network_id: str) -> str:
        resource = self.by_id.get(network_id)
        return resource.label if resource else network_id

    def subnet_of_address(self, ranges: Sequence[IPv4Network]) -> Subnet | None:
        for subnet in self.subnets.values():
            if ranges and all(r.subnet_of(subnet.cidr) for r in ranges):
                return subnet
        return None

    # ---- AWS routing ----------------------------------------------------------------------

    def aws_route_table(self, subnet: Subnet) -> Resource | None:
        for assoc in self.of("aws:ec2/routeTableAssociation:RouteTableAssociation"):
            if assoc.inputs.get("subnetId") == subnet.id:
                return self.by_id.get(str(assoc.inputs.get("routeTableId")))
        return None

    def aws_routes(self, table: Resource) -> list[dict[str, Any]]:
        routes = [dict(r) for r in table.inputs.get("routes") or [] if isinstance(r, Mapping)]
        for route in self.of("aws:ec2/route:Route"):
            if route.inputs.get("routeTableId") == table.id:
                routes.append(
                    {**route.inputs, "cidrBlock": route.inputs.get("destinationCidrBlock")}
                )
        return routes

    def aws_route(self, subnet: Subnet, destination: IPv4Network, steps: list[Step]) -> str:
        """Follow the subnet's routes to ``destination``; returns the network reached."""
        vpc_cidrs = self.network_cidrs(subnet.network_id)
        if covered([destination], vpc_cidrs):
            steps.append(Step("route", self.network_label(subnet.network_id), "local"))
            return subnet.network_id
        table = self.aws_route_table(subnet)
        if table is None:
            raise block("route", subnet.resource.label, "no route table associated")
        best: dict[str, Any] | None = None
        best_len = -1
        for route in self.aws_routes(table):
            cidr = network(route.get("cidrBlock"))
            if cidr is not None and destination.subnet_of(cidr) and cidr.prefixlen > best_len:
                best, best_len = route, cidr.prefixlen
        if best is None:
            raise block("route", table.label, f"no route to {destination}")
        target = (
            best.get("transitGatewayId")
            or best.get("gatewayId")
            or best.get("natGatewayId")
            or best.get("vpcPeeringConnectionId")
        )
        steps.append(Step("route", table.label, f"{best.get('cidrBlock')} -> {target}"))
        if best.get("transitGatewayId"):
            return self.transit(str(best["transitGatewayId"]), destination, steps, set())
        if best.get("gatewayId") or best.get("natGatewayId"):
            if is_private(destination):
                raise block("route", table.label, f"{destination} routed to the internet")
            return "internet"
        raise block("route", table.label, f"route to {destination} has no usable target")

    def _tgw_route_table(self, tgw: Resource) -> str:
        return str(tgw.outputs.get("associationDefaultRouteTableId") or tgw.id)

    def transit(
        self, tgw_id: str, destination: IPv4Network, steps: list[Step], seen: set[str]
    ) -> str:
        """Route ``destination`` through a transit gateway's (default) route table."""
        tgw = self.by_id.get(tgw_id)
        if tgw is None:
            raise block("route", tgw_id, "transit gateway not declared by any stack")
        if tgw_id in seen:
            raise block("route", tgw.label, f"routing loop towards {destination}")
        seen.add(tgw_id)
        table = self._tgw_route_table(tgw)
        candidates: list[tuple[IPv4Network, str, str]] = []
        propagate = tgw.inputs.get("defaultRouteTablePropagation", "enable") == "enable"
        for attachment in self.of("aws:ec2transitgateway/vpcAttachment:VpcAttachment"):
            if attachment.inputs.get("transitGatewayId") != tgw_id or not propagate:
                continue
            for vpc_cidr in self.network_cidrs(str(attachment.inputs.get("vpcId"))):
                candidates.append((vpc_cidr, attachment.id, "propagated"))
        for route in self.of("aws:ec2transitgateway/route:Route"):
            if route.inputs.get("transitGatewayRouteTableId") != table:
                continue
            route_cidr = network(route.inputs.get("destinationCidrBlock"))
            if route_cidr is not None:
                candidates.append(
                    (
                        route_cidr,
                        str(route.inputs.get("transitGatewayAttachmentId")),
                        f"static ({route.label})",
                    )
                )
        matches = [c for c in candidates if destination.subnet_of(c[0])]
        if not matches:
            raise block("route", f"{tgw.label} route table", f"no route to {destination}")
        cidr, attachment_id, how = max(matches, key=lambda c: c[0].prefixlen)
        steps.append(Step("route", f"{tgw.label} route table", f"{cidr} -> {attachment_id} {how}"))
        return self._attachment(tgw, attachment_id, destination, steps, seen)

    def _attachment(
        self,
        tgw: Resource,
        attachment_id: str,
        destination: IPv4Network,
        steps: list[Step],
        seen: set[str],
    ) -> str:
        for attachment in self.of("aws:ec2transitgateway/vpcAttachment:VpcAttachment"):
            if attachment.id == attachment_id:
                vpc = str(attachment.inputs.get("vpcId"))
                steps.append(
                    Step("attachment", attachment.label, f"into {self.network_label(vpc)}")
                )
                return vpc
        for peering in self.of("aws:ec2transitgateway/peeringAttachment:PeeringAttachment"):
            if peering.id != attachment_id:
                continue
            accepted = [
                a
                for a in self.of(
                    "aws:ec2transitgateway/peeringAttachmentAccepter:PeeringAttachmentAccepter"
                )
                if a.inputs.get("transitGatewayAttachmentId") == peering.id
            ]
            if not accepted:
                raise block("peering", peering.label, "peering attachment is never accepted")
            ends = {
                str(peering.inputs.get("transitGatewayId")),
                str(peering.inputs.get("peerTransitGatewayId")),
            }
            other = next(iter(ends - {tgw.id}), None)
            if other is None:
                raise block("peering", peering.label, "peers a transit gateway with itself")
            steps.append(Step("peering", peering.label, f"accepted by {accepted[0].label}"))
            return self.transit(other, destination, steps, seen)
        for vpn in self.of("aws:ec2/vpnConnection:VpnConnection"):
            if vpn.outputs.get("transitGatewayAttachmentId") != attachment_id:
                continue
            return self._vpn_to_azure(vpn, destination, steps)
        raise block(
            "route",
            f"{tgw.label} route table",
            f"route to {destination} names attachment {attachment_id}, which no stack declares",
        )

    def _vpn_to_azure(self, vpn: Resource, destination: IPv4Network, steps: list[Step]) -> str:
        customer = self.by_id.get(str(vpn.inputs.get("customerGatewayId")))
        if customer is None:
            raise block("vpn", vpn.label, "customer gateway not declared")
        gateway = self._azure_gateway_at(str(customer.inputs.get("ipAddress")))
        if gateway is None:
            raise block("vpn", customer.label, "no Azure VPN gateway holds its address")
        tunnels = {vpn.outputs.get("tunnel1Address"), vpn.outputs.get("tunnel2Address")}
        connections = [
            c
            for c in self._gateway_connections(gateway)
            if c[1].inputs.get("gatewayIpAddress") in tunnels
        ]
        if not connections:
            raise block("vpn", gateway.label, f"no connection to the tunnels of {vpn.label}")
        steps.append(
            Step("vpn", vpn.label, f"tunnels to {gateway.label} ({connections[0][0].label})")
        )
        vnet = self._gateway_vnet(gateway)
        if not covered([destination], self.network_cidrs(vnet)):
            raise block("vpn", gateway.label, f"{destination} is not in its VNet")
        return vnet

    # ---- Azure routing --------------------------------------------------------------------

    def _azure_gateway_at(self, address: str) -> Resource | None:
        ip = self.ip_owner.get(address)
        if ip is None:
            return None
        for gateway in self.of("azure-native:network:VirtualNetworkGateway"):
            for config in gateway.inputs.get("ipConfigurations") or []:
                if (config.get("publicIPAddress") or {}).get("id") == ip.id:
                    return gateway
        return None

    def _gateway_vnet(self, gateway: Resource) -> str:
        for config in gateway.inputs.get("ipConfigurations") or []:
            subnet = str((config.get("subnet") or {}).get("id") or "")
            if "/subnets/" in subnet:
                return subnet.split("/subnets/")[0]
        return ""

    def _gateway_connections(self, gateway: Resource) -> list[tuple[Resource, Resource]]:
        pairs = []
        for connection in self.of("azure-native:network:VirtualNetworkGatewayConnection"):
            if (connection.inputs.get("virtualNetworkGateway1") or {}).get("id") != gateway.id:
                continue
            local = self.by_id.get(
                str((connection.inputs.get("localNetworkGateway2") or {}).get("id"))
            )
            if local is not None:
                pairs.append((connection, local))
        return pairs

    def _vnet_peerings(self, vnet_id: str) -> list[Resource]:
        name = vnet_id.rsplit("/", 1)[-1]
        group = vnet_id.split("/resourceGroups/")[-1].split("/")[0]
        return [
            p
            for p in self.of("azure-native:network:VirtualNetworkPeering")
            if p.inputs.get("virtualNetworkName") == name
            and p.inputs.get("resourceGroupName") == group
            and p.inputs.get("allowVirtualNetworkAccess", True) is not False
        ]

    def vnet_prefixes(self, vnet_id: str) -> list[IPv4Network]:
        """What an NSG's ``VirtualNetwork`` tag means here: own, peered and VPN-learned ranges."""
        prefixes = list(self.network_cidrs(vnet_id))
        for peering in self._vnet_peerings(vnet_id):
            prefixes += self.network_cidrs(
                str((peering.inputs.get("remoteVirtualNetwork") or {}).get("id"))
            )
        for gateway in self.of("azure-native:network:VirtualNetworkGateway"):
            if self._gateway_vnet(gateway) != vnet_id:
                continue
            for _, local in self._gateway_connections(gateway):
                space = (local.inputs.get("localNetworkAddressSpace") or {}).get("addressPrefixes")
                prefixes += [n for n in map(network, space or []) if n is not None]
        return prefixes

    def azure_route(self, subnet: Subnet, destination: IPv4Network, steps: list[Step]) -> str:
        vnet = subnet.network_id
        if covered([destination], self.network_cidrs(vnet)):
            steps.append(Step("route", self.network_label(vnet), "local (VNet address space)"))
            return vnet
        if not is_private(destination):
            steps.append(
                Step("route", self.network_label(vnet), "system route 0.0.0.0/0 -> Internet")
            )
            return "internet"
        for peering in self._vnet_peerings(vnet):
            remote = str((peering.inputs.get("remoteVirtualNetwork") or {}).get("id"))
            if not covered([destination], self.network_cidrs(remote)):
                continue
            back = [
                p
                for p in self._vnet_peerings(remote)
                if (p.inputs.get("remoteVirtualNetwork") or {}).get("id") == vnet
            ]
            if not back:
                raise block(
                    "peering",
                    peering.label,
                    f"{self.network_label(remote)} has no peering back: not connected",
                )
            steps.append(Step("peering", peering.label, f"connected with {back[0].label}"))
            return remote
        for gateway in self.of("azure-native:network:VirtualNetworkGateway"):
            if self._gateway_vnet(gateway) != vnet:
                continue
            for connection, local in self._gateway_connections(gateway):
                space = (local.inputs.get("localNetworkAddressSpace") or {}).get("addressPrefixes")
                if not covered([destination], [n for n in map(network, space or []) if n]):
                    continue
                address = local.inputs.get("gatewayIpAddress")
                vpn = next(
                    (
                        v
                        for v in self.of("aws:ec2/vpnConnection:VpnConnection")
                        if address
                        in (v.outputs.get("tunnel1Address"), v.outputs.get("tunnel2Address"))
                    ),
                    None,
                )
                if vpn is None:
                    raise block("vpn", local.label, f"no AWS tunnel at {address}")
                steps.append(Step("vpn", connection.label, f"{local.label} -> {vpn.label}"))
                return self.transit(
                    str(vpn.inputs.get("transitGatewayId")), destination, steps, set()
                )
        raise block(
            "route", self.network_label(vnet), f"no peering or VPN connection covers {destination}"
        )

    def route(self, subnet: Subnet, destination: IPv4Network, steps: list[Step]) -> str:
        if subnet.cloud == "aws":
            return self.aws_route(subnet, destination, steps)
        return self.azure_route(subnet, destination, steps)

    # ---- firewalls ------------------------------------------------------------------------

    def sg_rules(self, group: Resource, direction: str) -> list[dict[str, Any]]:
        rules = [dict(r) for r in group.inputs.get(direction) or [] if isinstance(r, Mapping)]
        kind = "ingress" if direction == "ingress" else "egress"
        for extra in self.of("aws:ec2/securityGroupRule:SecurityGroupRule"):
            if extra.inputs.get("securityGroupId") == group.id and extra.inputs.get("type") == kind:
                rules.append(
                    {**extra.inputs, "securityGroups": [extra.inputs.get("sourceSecurityGroupId")]}
                )
        token = f"aws:vpc/securityGroup{kind.title()}Rule:SecurityGroup{kind.title()}Rule"
        for extra in self.of(token):
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
            group = self.by_id.get(group_id)
            if group is None:
                continue
            labels.append(group.label)
            for rule in self.sg_rules(group, direction):
                if not _protocol_matches(rule.get("protocol"), protocol):
                    continue
                low, high = _num(rule.get("fromPort")), _num(rule.get("toPort"))
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
                        self.by_id[g].label if g in self.by_id else g
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
        for acl in self.of("aws:ec2/networkAcl:NetworkAcl"):
            if subnet.id not in (acl.inputs.get("subnetIds") or []):
                continue
            rules = [dict(r) for r in acl.inputs.get("egress" if egress else "ingress") or []]
            for extra in self.of("aws:ec2/networkAclRule:NetworkAclRule"):
                if (
                    extra.inputs.get("networkAclId") == acl.id
                    and bool(extra.inputs.get("egress")) == egress
                ):
                    rules.append({**extra.inputs, "action": extra.inputs.get("ruleAction")})
            for rule in sorted(rules, key=lambda r: _num(r.get("ruleNo", r.get("ruleNumber")))):
                if not _protocol_matches(rule.get("protocol"), protocol):
                    continue
                if str(rule.get("protocol")) != "-1" and not _num(
                    rule.get("fromPort")
                ) <= port <= _num(rule.get("toPort")):
                    continue
                cidr = network(rule.get("cidrBlock"))
                if cidr is None or not any(r.overlaps(cidr) for r in peer.ranges):
                    continue
                number = _num(rule.get("ruleNo", rule.get("ruleNumber")))
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
            return covered(traffic.ranges, self.vnet_prefixes(vnet_id))
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
        group = self.by_id.get(nsg_id)
        if group is None:
            return Step("nsg", subnet.resource.label, "no NSG on the subnet")
        inbound = direction == "Inbound"
        rules = [
            dict(r)
            for r in group.inputs.get("securityRules") or []
            if r.get("direction") == direction
        ]
        for extra in self.of("azure-native:network:SecurityRule"):
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
        for rule in sorted(rules, key=lambda r: _num(r.get("priority"))):
            if not _protocol_matches(rule.get("protocol"), protocol):
                continue
            ports = list(rule.get("destinationPortRanges") or []) + (
                [rule["destinationPortRange"]] if rule.get("destinationPortRange") else []
            )
            if not any(_port_in(p, port) for p in ports):
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
            label = f"{group.label} rule {rule.get('name')} (priority {_num(rule.get('priority'))})"
            if allow:
                return Step("nsg", label, f"{direction.lower()} {protocol}/{port} allowed")
            raise block(
                "nsg",
                label,
                f"denies {direction.lower()} {protocol}/{port} "
                f"{'from' if inbound else 'to'} {','.join(map(str, peer.ranges))}",
            )
        raise block("nsg", group.label, f"no rule matches {protocol}/{port}")

    # ---- DNS ------------------------------------------------------------------------------

    def zone_linked(self, zone_id: str, vnet_id: str) -> Step:
        zone = self.by_id.get(zone_id)
        if zone is None:
            raise block("dns", zone_id, "private DNS zone not declared by any stack")
        name = zone.inputs.get("privateZoneName")
        group = zone.inputs.get("resourceGroupName")
        for link in self.of("azure-native:privatedns:VirtualNetworkLink"):
            if (
                link.inputs.get("privateZoneName") == name
                and link.inputs.get("resourceGroupName") == group
                and (link.inputs.get("virtualNetwork") or {}).get("id") == vnet_id
            ):
                return Step("dns", link.label, f"{name} linked to {self.network_label(vnet_id)}")
        raise block(
            "dns",
            zone.label,
            f"private zone {name} is not linked to {self.network_label(vnet_id)}: "
            "the name does not resolve there",
        )


def _port_in(text: Any, port: int) -> bool:
    text = str(text)
    if text == "*":
        return True
    low, _, high = text.partition("-")
    return low.isdigit() and int(low) <= port <= int(high or low)
