"""The region's VNet: one subnet per role, each behind its role's NSG, plus the VPN's subnet.

Azure subnets span every zone of the region, so the zone spread lives in the blocks that place
machines (scale sets, Application Gateways, Redis, Postgres HA). Nothing here needs a public
subnet: media nodes carry their own public IPs, gateways leave through a NAT gateway, and the
data stores have no outbound internet at all.

A NAT gateway is a zonal resource: it and its address are pinned to one zone (the first of the
region's), so a zone's loss is a known one, not whichever zone Azure picked. Nothing on the call
path leaves through it (Key Vault is reached over service endpoints, the data stores privately);
only the gateways' outbound internet shares that zone's fate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network

import pulumi
import pulumi_azure_native as azure_native

from infra.azure.firewall_rules import NSG_ROLES
from infra.spec import Role

# Sixteen equal blocks of the VNet range: one per role with an NSG, in the order of
# ``NSG_ROLES`` (appending a role keeps every existing subnet's range), the last for the VPN
# gateway.
_SUBNET_BITS = 4
SUBNET_ORDER = NSG_ROLES
# Azure requires exactly this name for the subnet of a VPN gateway (built by the global stack).
VPN_SUBNET = "GatewaySubnet"
POSTGRES_DELEGATION = "Microsoft.DBforPostgreSQL/flexibleServers"
KEY_VAULT_SERVICE = "Microsoft.KeyVault"
# Nodes read Key Vault over the VNet (service endpoints): the vault refuses the internet.
KEY_VAULT_CLIENTS = (Role.GATEWAY, Role.MEDIA_NODE)
STORAGE_SERVICE = "Microsoft.Storage"
# Media nodes write recordings over the VNet: the recording account refuses every other network.
STORAGE_CLIENTS = (Role.MEDIA_NODE,)


def service_endpoints(role: Role) -> list[str]:
    """The Azure services a role's subnet reaches over service endpoints."""
    return [
        service
        for service, clients in (
            (KEY_VAULT_SERVICE, KEY_VAULT_CLIENTS),
            (STORAGE_SERVICE, STORAGE_CLIENTS),
        )
        if role in clients
    ]


def subnet_cidrs(vnet_cidr: str) -> tuple[dict[Role, str], str]:
    """Each role's subnet CIDR and the VPN gateway's, carved from the VNet range."""
    blocks = list(IPv4Network(vnet_cidr).subnets(prefixlen_diff=_SUBNET_BITS))
    return {role: str(blocks[i]) for i, role in enumerate(SUBNET_ORDER)}, str(blocks[-1])


@dataclass
class NetworkArgs:
    prefix: str
    resource_group_name: pulumi.Input[str]
    location: str
    cidr: str
    nsg_ids: Mapping[Role, pulumi.Input[str]]
    # The zone of the NAT gateway and its address.
    nat_zone: str = "1"
    tags: dict[str, str] = field(default_factory=dict)


class Network(pulumi.ComponentResource):
    """The VNet, a subnet per role, the gateways' NAT gateway and the VPN gateway's subnet."""

    vnet: azure_native.network.VirtualNetwork
    subnets: dict[Role, azure_native.network.Subnet]
    vpn_subnet: azure_native.network.Subnet
    nat_gateway: azure_native.network.NatGateway

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.prefix
        rg, location = args.resource_group_name, args.location
        self.vnet = azure_native.network.VirtualNetwork(
            f"{prefix}-vnet",
            virtual_network_name=f"{prefix}-vnet",
            address_space=azure_native.network.AddressSpaceArgs(address_prefixes=[args.cidr]),
            tags=args.tags,
            resource_group_name=rg,
            location=location,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )
        nat_ip = azure_native.network.PublicIPAddress(
            f"{prefix}-nat",
            public_ip_address_name=f"{prefix}-nat",
            sku=azure_native.network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"),
            public_ip_allocation_method="Static",
            zones=[args.nat_zone],
            tags=args.tags,
            resource_group_name=rg,
            location=location,
            opts=child,
        )
        self.nat_gateway = azure_native.network.NatGateway(
            f"{prefix}-nat",
            nat_gateway_name=f"{prefix}-nat",
            sku=azure_native.network.NatGatewaySkuArgs(name="Standard"),
            public_ip_addresses=[azure_native.network.SubResourceArgs(id=nat_ip.id)],
            idle_timeout_in_minutes=10,
            zones=[args.nat_zone],
            tags=args.tags,
            resource_group_name=rg,
            location=location,
            opts=child,
        )
        cidrs, vpn_cidr = subnet_cidrs(args.cidr)
        self.subnets = {}
        previous: list[pulumi.Resource] = []
        for role in SUBNET_ORDER:
            # Subnets of one VNet are written one at a time; Azure refuses concurrent updates.
            self.subnets[role] = azure_native.network.Subnet(
                f"{prefix}-{role.value}",
                subnet_name=role.value,
                resource_group_name=args.resource_group_name,
                virtual_network_name=self.vnet.name,
                address_prefix=cidrs[role],
                network_security_group=azure_native.network.NetworkSecurityGroupArgs(
                    id=args.nsg_ids[role]
                ),
                nat_gateway=(
                    azure_native.network.SubResourceArgs(id=self.nat_gateway.id)
                    if role is Role.GATEWAY
                    else None
                ),
                service_endpoints=[
                    azure_native.network.ServiceEndpointPropertiesFormatArgs(service=service)
                    for service in service_endpoints(role)
                ]
                or None,
                delegations=(
                    [
                        azure_native.network.DelegationArgs(
                            name="postgres", service_name=POSTGRES_DELEGATION
                        )
                    ]
                    if role is Role.POSTGRES
                    else None
                ),
                # The NSG applies to the private endpoints (Redis) placed in the subnet too.
                private_endpoint_network_policies="Enabled" if role is Role.REDIS else None,
                # Application Gateway v2 needs Azure's default outbound access; nothing else does.
                default_outbound_access=(
                    None if role in (Role.CLIENT_LB, Role.ADMIN_LB) else False
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous[-1:]),
            )
            previous.append(self.subnets[role])
        self.vpn_subnet = azure_native.network.Subnet(
            f"{prefix}-vpn",
            subnet_name=VPN_SUBNET,
            resource_group_name=args.resource_group_name,
            virtual_network_name=self.vnet.name,
            address_prefix=vpn_cidr,
            opts=pulumi.ResourceOptions(parent=self, depends_on=previous[-1:]),
        )
        self.register_outputs(
            {
                "vnetId": self.vnet.id,
                "subnetIds": {role.value: subnet.id for role, subnet in self.subnets.items()},
            }
        )

    def subnet_id(self, role: Role) -> pulumi.Output[str]:
        return self.subnets[role].id
