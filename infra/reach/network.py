"""The network an environment's stacks declare, read from the resources the plan recorded.

One ``NetworkModel`` spans every stack of an environment and both clouds: it indexes the
recorded resources by id, ARN, type and public address, and knows each VPC's and VNet's
ranges and how Azure VNets are joined (peerings, VPN gateways and their connections).
``routing``, ``firewalls`` and ``dns`` answer the hop-by-hop questions on top of it; a
failed answer is a ``Blocked`` naming the resource and what it lacks.
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


def num(value: Any, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def protocol_matches(declared: Any, protocol: str) -> bool:
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

    def azure_gateway_at(self, address: str) -> Resource | None:
        ip = self.ip_owner.get(address)
        if ip is None:
            return None
        for gateway in self.of("azure-native:network:VirtualNetworkGateway"):
            for config in gateway.inputs.get("ipConfigurations") or []:
                if (config.get("publicIPAddress") or {}).get("id") == ip.id:
                    return gateway
        return None

    def gateway_vnet(self, gateway: Resource) -> str:
        for config in gateway.inputs.get("ipConfigurations") or []:
            subnet = str((config.get("subnet") or {}).get("id") or "")
            if "/subnets/" in subnet:
                return subnet.split("/subnets/")[0]
        return ""

    def gateway_connections(self, gateway: Resource) -> list[tuple[Resource, Resource]]:
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

    def vnet_peerings(self, vnet_id: str) -> list[Resource]:
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
        for peering in self.vnet_peerings(vnet_id):
            prefixes += self.network_cidrs(
                str((peering.inputs.get("remoteVirtualNetwork") or {}).get("id"))
            )
        for gateway in self.of("azure-native:network:VirtualNetworkGateway"):
            if self.gateway_vnet(gateway) != vnet_id:
                continue
            for connection, local in self.gateway_connections(gateway):
                space = (local.inputs.get("localNetworkAddressSpace") or {}).get("addressPrefixes")
                prefixes += [n for n in map(network, space or []) if n is not None]
                if connection.inputs.get("enableBgp") and local.inputs.get("bgpSettings"):
                    prefixes += self.aws_prefixes_behind(str(local.inputs.get("gatewayIpAddress")))
        return prefixes

    def aws_prefixes_behind(self, tunnel_address: str) -> list[IPv4Network]:
        """What a BGP tunnel's AWS end advertises: the VPC ranges its transit gateway carries."""
        for vpn in self.of("aws:ec2/vpnConnection:VpnConnection"):
            if tunnel_address not in (
                vpn.outputs.get("tunnel1Address"),
                vpn.outputs.get("tunnel2Address"),
            ):
                continue
            tgw_id = vpn.inputs.get("transitGatewayId")
            return [
                cidr
                for attachment in self.of("aws:ec2transitgateway/vpcAttachment:VpcAttachment")
                if attachment.inputs.get("transitGatewayId") == tgw_id
                for cidr in self.network_cidrs(str(attachment.inputs.get("vpcId")))
            ]
        return []


def port_in(text: Any, port: int) -> bool:
    text = str(text)
    if text == "*":
        return True
    low, _, high = text.partition("-")
    return low.isdigit() and int(low) <= port <= int(high or low)
