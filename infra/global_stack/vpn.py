"""Site-to-site VPN between an AWS region's transit gateway and an Azure region's VNet.

Azure's end is one route-based VPN gateway per Azure region, in the region stack's
``GatewaySubnet``. Each AWS region gets its own VPN connection to it: AWS brings two
tunnels and generates their keys, and Azure gets a local network gateway and an IPsec
connection per tunnel, so either tunnel carries the traffic when the other is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_azure_native as azure_native

from infra.global_stack.peering import LINK_TAG, SIDE_TAG, AwsRegionEnd, link_name

# Static routes on both sides: no BGP session to keep up across clouds.
CUSTOMER_GATEWAY_ASN = "65000"
VPN_GATEWAY_SKU = "VpnGw2AZ"
TUNNELS = (1, 2)

# Outputs an Azure region stack exports for the global stack.
AZURE_LOCATION = "location"
AZURE_VNET_CIDR = "vnetCidr"
AZURE_GATEWAY_SUBNET_ID = "gatewaySubnetId"
AZURE_RESOURCE_GROUP = "resourceGroupName"
AZURE_OUTPUTS = (AZURE_LOCATION, AZURE_VNET_CIDR, AZURE_GATEWAY_SUBNET_ID, AZURE_RESOURCE_GROUP)


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
    tags: dict[str, str] = field(default_factory=dict)


class AzureVpnGateway(pulumi.ComponentResource):
    """The Azure region's zone-redundant VPN gateway and its public address."""

    gateway: azure_native.network.VirtualNetworkGateway
    public_ip: azure_native.network.PublicIPAddress

    def __init__(
        self, name: str, args: AzureVpnGatewayArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:global:AzureVpnGateway", name, None, opts)
        end = args.end
        child = pulumi.ResourceOptions(parent=self, provider=end.provider)
        tags = {**args.tags, "rtcfleet:stack": end.stack}
        self.public_ip = azure_native.network.PublicIPAddress(
            f"{end.stack}-vpn-ip",
            resource_group_name=end.resource_group_name,
            location=end.location,
            sku=azure_native.network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"),
            public_ip_allocation_method="Static",
            zones=["1", "2", "3"],
            tags=tags,
            opts=child,
        )
        self.gateway = azure_native.network.VirtualNetworkGateway(
            f"{end.stack}-vpn",
            resource_group_name=end.resource_group_name,
            location=end.location,
            gateway_type="Vpn",
            vpn_type="RouteBased",
            vpn_gateway_generation="Generation2",
            sku=azure_native.network.VirtualNetworkGatewaySkuArgs(
                name=VPN_GATEWAY_SKU, tier=VPN_GATEWAY_SKU
            ),
            enable_bgp=False,
            active_active=False,
            ip_configurations=[
                azure_native.network.VirtualNetworkGatewayIPConfigurationArgs(
                    name="default",
                    subnet=azure_native.network.SubResourceArgs(id=end.gateway_subnet_id),
                    public_ip_address=azure_native.network.SubResourceArgs(id=self.public_ip.id),
                    private_ip_allocation_method="Dynamic",
                )
            ],
            tags=tags,
            opts=child,
        )
        self.register_outputs(
            {"gatewayId": self.gateway.id, "ipAddress": self.public_ip.ip_address}
        )


@dataclass
class CrossCloudVpnArgs:
    aws_end: AwsRegionEnd
    azure_end: AzureRegionEnd
    azure_gateway: AzureVpnGateway
    tags: dict[str, str] = field(default_factory=dict)


class CrossCloudVpn(pulumi.ComponentResource):
    """One AWS region <-> one Azure region: both tunnels, both sides, routes both ways."""

    connection: aws.ec2.VpnConnection

    def __init__(
        self, name: str, args: CrossCloudVpnArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:global:CrossCloudVpn", name, None, opts)
        a, z = args.aws_end, args.azure_end
        link = link_name(a.stack, z.stack)
        on_aws = pulumi.ResourceOptions(parent=self, provider=a.provider)
        on_azure = pulumi.ResourceOptions(parent=self, provider=z.provider)

        def tags(side: str) -> dict[str, str]:
            return {**args.tags, "Name": link, LINK_TAG: link, SIDE_TAG: side}

        customer = aws.ec2.CustomerGateway(
            f"{link}-cgw",
            bgp_asn=CUSTOMER_GATEWAY_ASN,
            ip_address=args.azure_gateway.public_ip.ip_address.apply(lambda ip: str(ip)),
            type="ipsec.1",
            tags=tags("aws"),
            opts=on_aws,
        )
        self.connection = aws.ec2.VpnConnection(
            f"{link}-vpn",
            customer_gateway_id=customer.id,
            transit_gateway_id=a.transit_gateway_id,
            type="ipsec.1",
            static_routes_only=True,
            tunnel1_ike_versions=["ikev2"],
            tunnel2_ike_versions=["ikev2"],
            tags=tags("aws"),
            opts=on_aws,
        )
        aws.ec2transitgateway.Route(
            f"{link}-route-{a.region}",
            destination_cidr_block=z.cidr,
            transit_gateway_attachment_id=self.connection.transit_gateway_attachment_id,
            transit_gateway_route_table_id=a.route_table_id,
            opts=on_aws,
        )
        addresses = {1: self.connection.tunnel1_address, 2: self.connection.tunnel2_address}
        # Generated by AWS and kept as Pulumi secrets: no key sits in any config.
        keys: dict[int, pulumi.Output[str]] = {
            1: pulumi.Output.secret(self.connection.tunnel1_preshared_key),
            2: pulumi.Output.secret(self.connection.tunnel2_preshared_key),
        }
        for tunnel in TUNNELS:
            local = azure_native.network.LocalNetworkGateway(
                f"{link}-tunnel{tunnel}",
                resource_group_name=z.resource_group_name,
                location=z.location,
                gateway_ip_address=addresses[tunnel],
                local_network_address_space=azure_native.network.AddressSpaceArgs(
                    address_prefixes=[a.cidr]
                ),
                tags=tags("azure"),
                opts=on_azure,
            )
            azure_native.network.VirtualNetworkGatewayConnection(
                f"{link}-tunnel{tunnel}",
                resource_group_name=z.resource_group_name,
                location=z.location,
                connection_type="IPsec",
                connection_protocol="IKEv2",
                virtual_network_gateway1={"id": args.azure_gateway.gateway.id},
                local_network_gateway2={"id": local.id},
                shared_key=keys[tunnel],
                tags=tags("azure"),
                opts=on_azure,
            )
        self.register_outputs({"vpnConnectionId": self.connection.id})
