"""VPC: subnets per zone, internet gateway, NAT for private subnets."""

from __future__ import annotations

from infra.aws.network import Network, NetworkArgs, subnet_cidrs
from tests.infra.aws.helpers import of_type, one

ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]


def _network(nat_per_az: bool):
    def program(stack: str):
        Network("net", NetworkArgs("t", "10.10.0.0/16", ZONES, nat_per_az=nat_per_az))
        return {}

    return program


def test_public_and_private_subnet_in_each_zone(run_component) -> None:
    run = run_component(_network(True))
    subnets = of_type(run.resources, "aws:ec2/subnet:Subnet")
    public = {s.inputs["availabilityZone"]: s for s in subnets if s.inputs["mapPublicIpOnLaunch"]}
    private = {
        s.inputs["availabilityZone"]: s for s in subnets if not s.inputs["mapPublicIpOnLaunch"]
    }
    assert sorted(public) == sorted(private) == ZONES
    assert [public[z].inputs["cidrBlock"] for z in ZONES] == [
        "10.10.0.0/20",
        "10.10.16.0/20",
        "10.10.32.0/20",
    ]
    assert [private[z].inputs["cidrBlock"] for z in ZONES] == [
        "10.10.128.0/20",
        "10.10.144.0/20",
        "10.10.160.0/20",
    ]


def test_private_subnets_route_out_through_a_nat_per_zone(run_component) -> None:
    run = run_component(_network(True))
    nats = of_type(run.resources, "aws:ec2/natGateway:NatGateway")
    public_ids = {
        s.id for s in of_type(run.resources, "aws:ec2/subnet:Subnet") if "public" in s.name
    }
    assert len(nats) == 3 and {n.inputs["subnetId"] for n in nats} == public_ids
    tables = of_type(run.resources, "aws:ec2/routeTable:RouteTable")
    private_routes = [t.inputs["routes"][0] for t in tables if "private" in t.name]
    assert {r["natGatewayId"] for r in private_routes} == {n.id for n in nats}
    igw = one(run.resources, "aws:ec2/internetGateway:InternetGateway")
    public_table = next(t for t in tables if t.name == "t-public")
    assert public_table.inputs["routes"] == [{"cidrBlock": "0.0.0.0/0", "gatewayId": igw.id}]


def test_single_nat_when_asked(run_component) -> None:
    run = run_component(_network(False))
    assert len(of_type(run.resources, "aws:ec2/natGateway:NatGateway")) == 1
    tables = of_type(run.resources, "aws:ec2/routeTable:RouteTable")
    assert len([t for t in tables if "private" in t.name]) == 3


def test_subnet_cidrs_do_not_overlap() -> None:
    public, private = subnet_cidrs("10.0.0.0/18", 3)
    assert public == ["10.0.0.0/22", "10.0.4.0/22", "10.0.8.0/22"]
    assert private == ["10.0.32.0/22", "10.0.36.0/22", "10.0.40.0/22"]
