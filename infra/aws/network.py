"""The region's VPC: public and private subnets per zone, internet gateway, NAT.

With peered networks, the region also gets its transit gateway: every route table sends the
peers' ranges to it, and the global stack links the regions' transit gateways (peering, VPN).
The region's own routes come from its own settings, so it never waits for another region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from infra.spec import ANYWHERE_V4

# Leaves room for up to 8 zones: public subnets take the first eighth, private the second.
_SUBNET_BITS = 4
_PRIVATE_OFFSET = 8


def subnet_cidrs(vpc_cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Public and private subnet CIDRs, one of each per zone, carved from the VPC range."""
    network = IPv4Network(vpc_cidr)
    if not 1 <= zones <= _PRIVATE_OFFSET:
        raise ValueError(f"{zones} zones: between 1 and {_PRIVATE_OFFSET}")
    blocks = list(network.subnets(prefixlen_diff=_SUBNET_BITS))
    public = [str(block) for block in blocks[:zones]]
    private = [str(block) for block in blocks[_PRIVATE_OFFSET : _PRIVATE_OFFSET + zones]]
    return public, private


@dataclass
class NetworkArgs:
    prefix: str
    cidr: str
    availability_zones: list[str]
    # One NAT per zone keeps private subnets online when a zone fails; dev saves with one.
    nat_per_az: bool = True
    # Other regions' ranges, reached through this region's transit gateway.
    peer_cidrs: list[str] = field(default_factory=list)
    # The region, for its S3 gateway endpoint's service name.
    region: str = ""
    tags: dict[str, str] = field(default_factory=dict)


class Network(pulumi.ComponentResource):
    """A VPC spanning the stack's zones; media nodes live in public subnets, the rest private."""

    vpc: aws.ec2.Vpc
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]
    route_tables: list[aws.ec2.RouteTable]
    # S3 in the region over AWS's network: media nodes upload recordings through it, and their
    # write grant holds only through it (infra/aws/recordings.py)
    s3_endpoint: aws.ec2.VpcEndpoint
    transit_gateway: aws.ec2transitgateway.TransitGateway | None = None

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.prefix

        def tags(name: str) -> dict[str, str]:
            return {**args.tags, "Name": name}

        self.vpc = aws.ec2.Vpc(
            f"{prefix}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=tags(f"{prefix}-vpc"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(
            f"{prefix}-igw", vpc_id=self.vpc.id, tags=tags(f"{prefix}-igw"), opts=child
        )
        public_cidrs, private_cidrs = subnet_cidrs(args.cidr, len(args.availability_zones))
        self.public_subnets = []
        self.private_subnets = []
        for zone, public_cidr, private_cidr in zip(
            args.availability_zones, public_cidrs, private_cidrs, strict=True
        ):
            self.public_subnets.append(
                aws.ec2.Subnet(
                    f"{prefix}-public-{zone}",
                    vpc_id=self.vpc.id,
                    cidr_block=public_cidr,
                    availability_zone=zone,
                    map_public_ip_on_launch=True,
                    tags={**tags(f"{prefix}-public-{zone}"), "rtcfleet:tier": "public"},
                    opts=child,
                )
            )
            self.private_subnets.append(
                aws.ec2.Subnet(
                    f"{prefix}-private-{zone}",
                    vpc_id=self.vpc.id,
                    cidr_block=private_cidr,
                    availability_zone=zone,
                    map_public_ip_on_launch=False,
                    tags={**tags(f"{prefix}-private-{zone}"), "rtcfleet:tier": "private"},
                    opts=child,
                )
            )

        peer_routes: list[aws.ec2.RouteTableRouteArgs] = []
        routes_opts = child
        if args.peer_cidrs:
            self.transit_gateway = aws.ec2transitgateway.TransitGateway(
                f"{prefix}-tgw",
                description=f"{prefix}: private network to the other regions",
                # Only the global stack's peering and VPN attachments, accepted by it.
                auto_accept_shared_attachments="disable",
                default_route_table_association="enable",
                default_route_table_propagation="enable",
                dns_support="enable",
                vpn_ecmp_support="enable",
                tags=tags(f"{prefix}-tgw"),
                opts=child,
            )
            attachment = aws.ec2transitgateway.VpcAttachment(
                f"{prefix}-tgw-vpc",
                transit_gateway_id=self.transit_gateway.id,
                vpc_id=self.vpc.id,
                subnet_ids=[subnet.id for subnet in self.private_subnets],
                dns_support="enable",
                tags=tags(f"{prefix}-tgw-vpc"),
                opts=child,
            )
            peer_routes = [
                aws.ec2.RouteTableRouteArgs(
                    cidr_block=cidr, transit_gateway_id=self.transit_gateway.id
                )
                for cidr in args.peer_cidrs
            ]
            # A route to a transit gateway is accepted once the VPC is attached to it.
            routes_opts = pulumi.ResourceOptions(parent=self, depends_on=[attachment])

        public_routes = aws.ec2.RouteTable(
            f"{prefix}-public",
            vpc_id=self.vpc.id,
            routes=[
                aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE_V4, gateway_id=igw.id),
                *peer_routes,
            ],
            tags=tags(f"{prefix}-public"),
            opts=routes_opts,
        )
        self.route_tables = [public_routes]
        for zone, subnet in zip(args.availability_zones, self.public_subnets, strict=True):
            aws.ec2.RouteTableAssociation(
                f"{prefix}-public-{zone}",
                subnet_id=subnet.id,
                route_table_id=public_routes.id,
                opts=child,
            )

        nat_zones = args.availability_zones if args.nat_per_az else args.availability_zones[:1]
        nat_ids: list[pulumi.Output[str]] = []
        for zone, subnet in zip(nat_zones, self.public_subnets, strict=False):
            address = aws.ec2.Eip(
                f"{prefix}-nat-{zone}", domain="vpc", tags=tags(f"{prefix}-nat-{zone}"), opts=child
            )
            nat = aws.ec2.NatGateway(
                f"{prefix}-nat-{zone}",
                allocation_id=address.id,
                subnet_id=subnet.id,
                tags=tags(f"{prefix}-nat-{zone}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
            )
            nat_ids.append(nat.id)
        for index, (zone, subnet) in enumerate(
            zip(args.availability_zones, self.private_subnets, strict=True)
        ):
            routes = aws.ec2.RouteTable(
                f"{prefix}-private-{zone}",
                vpc_id=self.vpc.id,
                routes=[
                    aws.ec2.RouteTableRouteArgs(
                        cidr_block=ANYWHERE_V4, nat_gateway_id=nat_ids[index % len(nat_ids)]
                    ),
                    *peer_routes,
                ],
                tags=tags(f"{prefix}-private-{zone}"),
                opts=routes_opts,
            )
            self.route_tables.append(routes)
            aws.ec2.RouteTableAssociation(
                f"{prefix}-private-{zone}",
                subnet_id=subnet.id,
                route_table_id=routes.id,
                opts=child,
            )

        # A gateway endpoint adds its prefix-list route to each table; the tables' own routes
        # (declared above) leave it alone.
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{prefix}-s3",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in self.route_tables],
            tags=tags(f"{prefix}-s3"),
            opts=child,
        )
        self.register_outputs(
            {
                "vpcId": self.vpc.id,
                "publicSubnetIds": [s.id for s in self.public_subnets],
                "privateSubnetIds": [s.id for s in self.private_subnets],
            }
        )

    @property
    def public_subnet_ids(self) -> list[pulumi.Output[str]]:
        return [subnet.id for subnet in self.public_subnets]

    @property
    def private_subnet_ids(self) -> list[pulumi.Output[str]]:
        return [subnet.id for subnet in self.private_subnets]
