"""Site-to-site VPN between an AWS region's transit gateway and an Azure region's VNet, over BGP.

Azure's end is one zone-redundant, active-active VPN gateway per Azure region (two instances,
two public addresses) in the region stack's ``GatewaySubnet``. Each AWS region gets two VPN
connections, one to each Azure instance (a customer gateway per instance address), so four
tunnels; Azure gets a local network gateway and a BGP-enabled connection per AWS tunnel. Both
sides learn each other's ranges over BGP: a tunnel that goes down withdraws its routes, and the
traffic moves to the tunnels still up (ECMP on the transit gateway, active-active on Azure).
``infra.global_stack.vpn_routes`` models that choice so tests and the policy pack can take a
tunnel down and see where the routes go.

Inside addresses come from Azure's APIPA range for BGP (169.254.21.0-169.254.22.255), which
AWS accepts as tunnel inside CIDRs: AWS region ``r``, Azure instance ``i``, tunnel ``t`` use
``169.254.(20+t).(8r+4i)/30``, AWS the first address, Azure the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws
import pulumi_azure_native as azure_native

from infra.global_stack.peering import LINK_TAG, SIDE_TAG, AwsRegionEnd, link_name

AZURE_ASN = 65000
# A transit gateway's Amazon-side ASN when the region stack sets none.
AWS_TRANSIT_ASN = 64512
CUSTOMER_GATEWAY_ASN = str(AZURE_ASN)
VPN_GATEWAY_SKU = "VpnGw2AZ"
INSTANCES = (0, 1)
TUNNELS = (1, 2)
# Up to this many AWS regions per Azure gateway fit the APIPA plan below.
MAX_AWS_REGIONS = 32


def inside_cidr(aws_index: int, instance: int, tunnel: int) -> IPv4Network:
    """The /30 of one tunnel: AWS region ``aws_index``, Azure ``instance``, AWS ``tunnel``."""
    if not 0 <= aws_index < MAX_AWS_REGIONS:
        raise ValueError(f"AWS region index {aws_index}: at most {MAX_AWS_REGIONS} per gateway")
    return IPv4Network(f"169.254.{20 + tunnel}.{8 * aws_index + 4 * instance}/30")


def aws_inside_address(cidr: IPv4Network) -> str:
    return str(cidr.network_address + 1)


def azure_inside_address(cidr: IPv4Network) -> str:
    return str(cidr.network_address + 2)


@dataclass(frozen=True)
class AzureRegionEnd:
    """What the global stack reads of one Azure region stack's network."""

    stack: str
    location: pulumi.Input[str]
    cidr: pulumi.Input[str]
    gateway_subnet_id: pulumi.Input[str]
    resource_group_name: pulumi.Input[str]
    provider: azure_native.Provider


@dataclass
class AzureVpnGatewayArgs:
    end: AzureRegionEnd
    subscription_id: pulumi.Input[str]
    # how many AWS regions connect to it (each takes its own inside addresses)
    aws_regions: int = 1
    tags: dict[str, str] = field(default_factory=dict)


def ip_configuration_name(instance: int) -> str:
    return f"instance-{instance}"


class AzureVpnGateway(pulumi.ComponentResource):
    """The Azure region's zone-redundant, active-active VPN gateway with BGP."""

    gateway: azure_native.network.VirtualNetworkGateway
    public_ips: list[azure_native.network.PublicIPAddress]
    name: str

    def __init__(
        self, name: str, args: AzureVpnGatewayArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:global:AzureVpnGateway", name, None, opts)
        end = args.end
        child = pulumi.ResourceOptions(parent=self, provider=end.provider)
        tags = {**args.tags, "rtcfleet:stack": end.stack}
        self.name = f"{end.stack}-vpn"
        self.public_ips = [
            azure_native.network.PublicIPAddress(
                f"{end.stack}-vpn-ip-{instance}",
                resource_group_name=end.resource_group_name,
                location=end.location,
                sku=azure_native.network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"),
                public_ip_allocation_method="Static",
                zones=["1", "2", "3"],
                tags=tags,
                opts=child,
            )
            for instance in INSTANCES
        ]
        self.gateway = azure_native.network.VirtualNetworkGateway(
            self.name,
            virtual_network_gateway_name=self.name,
            resource_group_name=end.resource_group_name,
            location=end.location,
            gateway_type="Vpn",
            vpn_type="RouteBased",
            vpn_gateway_generation="Generation2",
            sku=azure_native.network.VirtualNetworkGatewaySkuArgs(
                name=VPN_GATEWAY_SKU, tier=VPN_GATEWAY_SKU
            ),
            active_active=True,
            enable_bgp=True,
            bgp_settings=azure_native.network.BgpSettingsArgs(
                asn=AZURE_ASN,
                bgp_peering_addresses=[
                    azure_native.network.IPConfigurationBgpPeeringAddressArgs(
                        ipconfiguration_id=self.ip_configuration_id(args, instance),
                        custom_bgp_ip_addresses=[
                            azure_inside_address(inside_cidr(r, instance, tunnel))
                            for r in range(args.aws_regions)
                            for tunnel in TUNNELS
                        ],
                    )
                    for instance in INSTANCES
                ],
            ),
            ip_configurations=[
                azure_native.network.VirtualNetworkGatewayIPConfigurationArgs(
                    name=ip_configuration_name(instance),
                    subnet=azure_native.network.SubResourceArgs(id=end.gateway_subnet_id),
                    public_ip_address=azure_native.network.SubResourceArgs(id=ip.id),
                    private_ip_allocation_method="Dynamic",
                )
                for instance, ip in zip(INSTANCES, self.public_ips, strict=True)
            ],
            tags=tags,
            opts=child,
        )
        self.register_outputs(
            {
                "gatewayId": self.gateway.id,
                "ipAddresses": [ip.ip_address for ip in self.public_ips],
            }
        )

    def ip_configuration_id(self, args: AzureVpnGatewayArgs, instance: int) -> pulumi.Output[str]:
        """Azure wants the gateway's own IP configuration ids before the gateway exists."""
        return pulumi.Output.concat(
            "/subscriptions/",
            args.subscription_id,
            "/resourceGroups/",
            args.end.resource_group_name,
            f"/providers/Microsoft.Network/virtualNetworkGateways/{self.name}",
            f"/ipConfigurations/{ip_configuration_name(instance)}",
        )


@dataclass
class CrossCloudVpnArgs:
    aws_end: AwsRegionEnd
    azure_end: AzureRegionEnd
    azure_gateway: AzureVpnGateway
    gateway_args: AzureVpnGatewayArgs
    # this AWS region's place among those connecting to the Azure gateway
    aws_index: int = 0
    tags: dict[str, str] = field(default_factory=dict)


class CrossCloudVpn(pulumi.ComponentResource):
    """One AWS region <-> one Azure region: two connections, four tunnels, BGP both ways."""

    connections: list[aws.ec2.VpnConnection]

    def __init__(
        self, name: str, args: CrossCloudVpnArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:global:CrossCloudVpn", name, None, opts)
        a, z = args.aws_end, args.azure_end
        link = link_name(a.stack, z.stack)
        on_aws = pulumi.ResourceOptions(parent=self, provider=a.provider)
        on_azure = pulumi.ResourceOptions(parent=self, provider=z.provider)
        gateway = args.azure_gateway

        def tags(side: str) -> dict[str, str]:
            return {**args.tags, "Name": link, LINK_TAG: link, SIDE_TAG: side}

        self.connections = []
        for instance, address in zip(INSTANCES, gateway.public_ips, strict=True):
            customer = aws.ec2.CustomerGateway(
                f"{link}-cgw-{instance}",
                bgp_asn=CUSTOMER_GATEWAY_ASN,
                ip_address=address.ip_address.apply(lambda ip: str(ip)),
                type="ipsec.1",
                tags=tags("aws"),
                opts=on_aws,
            )
            cidrs = {t: inside_cidr(args.aws_index, instance, t) for t in TUNNELS}
            # BGP: the transit gateway learns the Azure range and propagates it to its default
            # route table; a tunnel that goes down withdraws it.
            connection = aws.ec2.VpnConnection(
                f"{link}-vpn-{instance}",
                customer_gateway_id=customer.id,
                transit_gateway_id=a.transit_gateway_id,
                type="ipsec.1",
                static_routes_only=False,
                tunnel1_inside_cidr=str(cidrs[1]),
                tunnel2_inside_cidr=str(cidrs[2]),
                tunnel1_ike_versions=["ikev2"],
                tunnel2_ike_versions=["ikev2"],
                tags=tags("aws"),
                opts=on_aws,
            )
            self.connections.append(connection)
            outside = {1: connection.tunnel1_address, 2: connection.tunnel2_address}
            # Generated by AWS and kept as Pulumi secrets: no key sits in any config.
            keys: dict[int, pulumi.Output[str]] = {
                1: pulumi.Output.secret(connection.tunnel1_preshared_key),
                2: pulumi.Output.secret(connection.tunnel2_preshared_key),
            }
            for tunnel in TUNNELS:
                local = azure_native.network.LocalNetworkGateway(
                    f"{link}-{instance}-tunnel{tunnel}",
                    resource_group_name=z.resource_group_name,
                    location=z.location,
                    gateway_ip_address=outside[tunnel],
                    bgp_settings=azure_native.network.BgpSettingsArgs(
                        asn=AWS_TRANSIT_ASN,
                        bgp_peering_address=aws_inside_address(cidrs[tunnel]),
                    ),
                    tags=tags("azure"),
                    opts=on_azure,
                )
                azure_native.network.VirtualNetworkGatewayConnection(
                    f"{link}-{instance}-tunnel{tunnel}",
                    resource_group_name=z.resource_group_name,
                    location=z.location,
                    connection_type="IPsec",
                    connection_protocol="IKEv2",
                    enable_bgp=True,
                    virtual_network_gateway1={"id": gateway.gateway.id},
                    local_network_gateway2={"id": local.id},
                    # the APIPA address each Azure instance speaks BGP from on this tunnel
                    gateway_custom_bgp_ip_addresses=[
                        azure_native.network.GatewayCustomBgpIpAddressIpConfigurationArgs(
                            ip_configuration_id=gateway.ip_configuration_id(
                                args.gateway_args, side
                            ),
                            custom_bgp_ip_address=azure_inside_address(
                                inside_cidr(args.aws_index, side, tunnel)
                            ),
                        )
                        for side in INSTANCES
                    ],
                    shared_key=keys[tunnel],
                    tags=tags("azure"),
                    opts=on_azure,
                )
        self.register_outputs({"vpnConnectionIds": [c.id for c in self.connections]})
