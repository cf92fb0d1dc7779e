"""The prod-global stack under mocks: DNS over every region, private links on both sides."""

from __future__ import annotations

import copy
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from infra.global_settings import global_settings_from_values
from infra.global_stack.vpn_routes import carriers, single_points, tunnels
from infra.plan.runner import PlanError, Planner, StackConfigs, StackFiles, StackPlan
from infra.settings_errors import SettingsError
from tests.infra.conftest import EXAMPLE_STACKS, example_values

GLOBAL = "prod-global"
US, EU, AZ = "prod-aws-us-east-1", "prod-aws-eu-west-1", "prod-azure-westeurope"
HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
RECORD = "aws:route53/record:Record"
ROUTE = "aws:ec2transitgateway/route:Route"


@pytest.fixture(scope="module")
def planner() -> Planner:
    """The example AWS stacks and prod-global; the Azure region answers its recorded outputs.

    The recorded outputs keep these tests about the global program, whatever state the
    Azure region stack's own file is in.
    """
    return Planner(StackConfigs(_global_configs(), _recorded(AZ)))


@pytest.fixture(scope="module")
def global_plan(planner: Planner) -> StackPlan:
    return planner.plan(GLOBAL)


def _region_exports(planner: Planner, stack: str) -> dict[str, Any]:
    return planner.plan(stack).exports


def _recorded(stack: str) -> dict[str, dict[str, Any]]:
    recorded = StackFiles().recorded_outputs(stack)
    assert recorded is not None
    return {stack: dict(recorded)}


def _providers(plan: StackPlan) -> dict[str, str | None]:
    return {r.id: r.inputs.get("region") for r in plan.of_type("pulumi:providers:aws")}


def test_plan_passes_and_reads_every_region(global_plan: StackPlan) -> None:
    assert global_plan.passed, global_plan.violations
    assert sorted(global_plan.references) == sorted([US, EU, AZ])
    assert global_plan.exports["homeRegion"] == US
    assert global_plan.exports["standbyRegion"] == EU


def test_a_region_health_check_on_each_region_client_lb(global_plan, planner) -> None:
    checks = {r.tags["rtcfleet:stack"]: r.inputs for r in global_plan.of_type(HEALTH_CHECK)}
    assert set(checks) == {US, EU, AZ}
    for stack in (US, EU):
        assert checks[stack]["fqdn"] == _region_exports(planner, stack)["clientLbDnsName"]
    for check in checks.values():
        assert (check["type"], check["port"], check["resourcePath"]) == ("HTTPS", 443, "/regionz")
        assert check["requestInterval"] == 10 and check["failureThreshold"] == 3


def test_latency_records_obey_their_region_check(global_plan: StackPlan) -> None:
    check_ids = {r.tags["rtcfleet:stack"]: r.id for r in global_plan.of_type(HEALTH_CHECK)}
    latency = [
        r.inputs for r in global_plan.of_type(RECORD) if r.inputs.get("latencyRoutingPolicies")
    ]
    assert {r["name"] for r in latency} == {"api.rtc.example.com"}
    by_stack = {r["setIdentifier"]: r for r in latency}
    assert set(by_stack) == {US, EU, AZ}
    for stack, record in by_stack.items():
        assert record["healthCheckId"] == check_ids[stack]
    regions = {s: r["latencyRoutingPolicies"][0]["region"] for s, r in by_stack.items()}
    assert regions == {US: "us-east-1", EU: "eu-west-1", AZ: "eu-central-1"}


def test_fallback_name_fails_over_from_home_to_standby(global_plan, planner) -> None:
    failover = {
        r.inputs["failoverRoutingPolicies"][0]["type"]: r.inputs
        for r in global_plan.of_type(RECORD)
        if r.inputs.get("failoverRoutingPolicies")
    }
    assert set(failover) == {"PRIMARY", "SECONDARY"}
    assert {r["name"] for r in failover.values()} == {"api-backup.rtc.example.com"}
    assert failover["PRIMARY"]["records"] == [_region_exports(planner, US)["clientLbDnsName"]]
    assert failover["SECONDARY"]["records"] == [_region_exports(planner, EU)["clientLbDnsName"]]
    assert all(r["healthCheckId"] for r in failover.values())


def test_transit_peering_is_accepted_and_routed_on_both_sides(global_plan, planner) -> None:
    providers = _providers(global_plan)
    (peering,) = global_plan.of_type("aws:ec2transitgateway/peeringAttachment:PeeringAttachment")
    (accepter,) = global_plan.of_type(
        "aws:ec2transitgateway/peeringAttachmentAccepter:PeeringAttachmentAccepter"
    )
    us, eu = _region_exports(planner, US), _region_exports(planner, EU)
    # Requested from one region's provider, accepted with the other's.
    requester_region = providers[peering.provider.rsplit("::", 1)[-1]]
    accepter_region = providers[accepter.provider.rsplit("::", 1)[-1]]
    assert {requester_region, accepter_region} == {"us-east-1", "eu-west-1"}
    assert peering.inputs["peerRegion"] == accepter_region
    assert accepter.inputs["transitGatewayAttachmentId"] == peering.id
    assert {peering.inputs["transitGatewayId"], peering.inputs["peerTransitGatewayId"]} == {
        us["transitGatewayId"],
        eu["transitGatewayId"],
    }
    routes = {
        (r.region, r.inputs["transitGatewayRouteTableId"], r.inputs["destinationCidrBlock"])
        for r in global_plan.of_type(ROUTE)
        if r.inputs["transitGatewayAttachmentId"] == peering.id
    }
    assert routes == {
        ("us-east-1", us["transitGatewayRouteTableId"], eu["vpcCidr"]),
        ("eu-west-1", eu["transitGatewayRouteTableId"], us["vpcCidr"]),
    }


def test_each_aws_region_has_four_bgp_tunnels_to_an_active_active_azure_gateway(
    global_plan, planner
) -> None:
    gateway = global_plan.named("azure-native:network:VirtualNetworkGateway", f"{AZ}-vpn").inputs
    assert gateway["activeActive"] is True and gateway["enableBgp"] is True
    assert gateway["bgpSettings"]["asn"] == 65000
    configurations = gateway["ipConfigurations"]
    addresses = [
        global_plan.named("azure-native:network:PublicIPAddress", f"{AZ}-vpn-ip-{i}")
        for i in (0, 1)
    ]
    assert [c["publicIPAddress"]["id"] for c in configurations] == [a.id for a in addresses]
    # APIPA addresses: instance 0 speaks from .2 of each /30, instance 1 from .6
    peering = {
        p["ipconfigurationId"].rsplit("/", 1)[-1]: p["customBgpIpAddresses"]
        for p in gateway["bgpSettings"]["bgpPeeringAddresses"]
    }
    assert peering["instance-0"] == [
        "169.254.21.2",
        "169.254.22.2",
        "169.254.21.10",
        "169.254.22.10",
    ]
    assert peering["instance-1"] == [
        "169.254.21.6",
        "169.254.22.6",
        "169.254.21.14",
        "169.254.22.14",
    ]

    connections = global_plan.of_type("aws:ec2/vpnConnection:VpnConnection")
    assert sorted(c.region for c in connections) == [
        "eu-west-1",
        "eu-west-1",
        "us-east-1",
        "us-east-1",
    ]
    customers = {c.id: c for c in global_plan.of_type("aws:ec2/customerGateway:CustomerGateway")}
    locals_ = {g.name: g for g in global_plan.of_type("azure-native:network:LocalNetworkGateway")}
    azure_connections = {
        c.name: c
        for c in global_plan.of_type("azure-native:network:VirtualNetworkGatewayConnection")
    }
    for connection in connections:
        stack = US if connection.region == "us-east-1" else EU
        instance = int(connection.name.rsplit("-", 1)[-1])
        exports = _region_exports(planner, stack)
        assert connection.inputs["transitGatewayId"] == exports["transitGatewayId"]
        assert connection.inputs["staticRoutesOnly"] is False, "BGP, not static routes"
        customer = customers[connection.inputs["customerGatewayId"]]
        assert customer.inputs["ipAddress"] == addresses[instance].outputs["ipAddress"]
        assert customer.inputs["bgpAsn"] == "65000"
        for tunnel in (1, 2):
            name = f"{stack}--{AZ}-{instance}-tunnel{tunnel}"
            local = locals_[name].inputs
            assert local["gatewayIpAddress"] == connection.outputs[f"tunnel{tunnel}Address"]
            inside = connection.inputs[f"tunnel{tunnel}InsideCidr"]
            assert inside.startswith(f"169.254.{20 + tunnel}.") and inside.endswith("/30")
            assert local["bgpSettings"] == {
                "asn": 64512,
                "bgpPeeringAddress": str(IPv4Network(inside).network_address + 1),
            }
            azure = azure_connections[name]
            assert azure.inputs["enableBgp"] is True and "sharedKey" in azure.secret_inputs
    assert len(azure_connections) == 8 and len(customers) == 4
    # no static transit routes towards Azure: the transit gateways learn its range over BGP
    assert not [r for r in global_plan.of_type(ROUTE) if "azure" in r.name]


def test_a_tunnel_down_moves_the_route_to_the_others(global_plan: StackPlan) -> None:
    found = tunnels((r.type, r.name, r.inputs) for r in global_plan.resources)
    link = f"{US}--{AZ}"
    every = carriers(found, link)
    assert len(every) == 4
    first = f"{link}-0-tunnel1"
    after = carriers(found, link, {first})
    assert first not in after and sorted(after) == sorted(set(every) - {first})
    # a whole Azure instance lost (both its tunnels): the other instance carries the link
    assert sorted(carriers(found, link, {first, f"{link}-0-tunnel2"})) == [
        f"{link}-1-tunnel1",
        f"{link}-1-tunnel2",
    ]
    assert single_points(found) == {}


def static_single_gateway(resources):
    """The VPN as it was: static routes, the same prefix behind two local gateways."""
    for r in resources:
        if r.type == "azure-native:network:VirtualNetworkGatewayConnection":
            r.inputs["enableBgp"] = False
        elif r.type == "azure-native:network:LocalNetworkGateway":
            r.inputs.pop("bgpSettings")
            r.inputs["localNetworkAddressSpace"] = {"addressPrefixes": ["10.10.0.0/16"]}
        elif r.type == "azure-native:network:VirtualNetworkGateway":
            r.inputs["activeActive"] = False


def test_a_static_vpn_is_cut_by_one_tunnel(global_plan: StackPlan) -> None:
    resources = copy.deepcopy(global_plan.resources)
    static_single_gateway(resources)
    found = tunnels((r.type, r.name, r.inputs) for r in resources)
    link = f"{US}--{AZ}"
    [chosen] = carriers(found, link)
    assert carriers(found, link, {chosen}) == [], "the route stays on the dead tunnel"
    violations = _violations(resources)
    assert f"rtcfleet-vpn-survives-a-tunnel: {link}: losing {chosen} alone cuts" in " ".join(
        violations
    )
    assert any("must be active-active with BGP" in v for v in violations)


def test_every_aws_resource_names_its_region_provider(global_plan: StackPlan) -> None:
    aws = [r for r in global_plan.resources if r.type.startswith("aws:")]
    assert aws and all(r.provider and r.region in {"us-east-1", "eu-west-1"} for r in aws)


def test_no_region_stack_reads_the_global_stack(planner: Planner) -> None:
    for stack in EXAMPLE_STACKS:
        assert GLOBAL not in planner.plan(stack).references


def _global_configs(**changes: Any) -> dict[str, dict[str, Any]]:
    configs: dict[str, dict[str, Any]] = {s: example_values(s) for s in EXAMPLE_STACKS}
    values = dict(example_values(GLOBAL))
    # The AWS regions and one Azure region (answered by its recorded outputs).
    values["rtcfleet:regions"] = [US, EU, AZ]
    for key, value in changes.items():
        values[f"rtcfleet:{key}"] = value
    configs[GLOBAL] = values
    return configs


AZ_OUTPUTS = _recorded(AZ)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"homeRegion": "prod-aws-us-west-2"}, "rtcfleet:homeRegion"),
        ({"standbyRegion": US}, "rtcfleet:standbyRegion"),
        ({"regions": [US, "dev-aws-us-east-1"]}, "rtcfleet:regions"),
        ({"hostedZoneId": "example.com"}, "rtcfleet:hostedZoneId"),
        ({"healthCheckInterval": 15}, "rtcfleet:healthCheckInterval"),
        ({"fallbackName": "api"}, "rtcfleet:fallbackName"),
        ({"regions": [US, EU, "prod-azure-mars"]}, "rtcfleet:regions"),
    ],
)
def test_bad_global_settings_name_the_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Planner(StackConfigs(_global_configs(**changes), AZ_OUTPUTS)).plan(GLOBAL)
    assert key in caught.value.keys


def test_a_region_that_does_not_admit_another_region_network_is_refused() -> None:
    configs = _global_configs()
    configs[EU]["rtcfleet:peeredCidrs"] = ["10.10.0.0/16"]
    with pytest.raises(SettingsError) as caught:
        Planner(StackConfigs(configs, AZ_OUTPUTS)).plan(GLOBAL)
    assert caught.value.keys == ["rtcfleet:regions"]
    assert "prod-aws-eu-west-1: rtcfleet:peeredCidrs lacks 10.30.0.0/16" in str(caught.value)


def test_a_region_without_the_outputs_the_global_stack_reads_is_a_plan_error() -> None:
    configs = _global_configs()
    outputs = {AZ: {k: v for k, v in AZ_OUTPUTS[AZ].items() if k != "gatewaySubnetId"}}
    with pytest.raises(PlanError, match="does not export gatewaySubnetId"):
        Planner(StackConfigs(configs, outputs)).plan(GLOBAL)


def test_single_region_global_stack_has_dns_and_no_links() -> None:
    configs = _global_configs(regions=[US])
    configs[GLOBAL].pop("rtcfleet:standbyRegion")
    plan = Planner(StackConfigs(configs)).plan(GLOBAL)
    assert plan.passed, plan.violations
    assert len(plan.of_type(HEALTH_CHECK)) == 1
    assert not plan.of_type(ROUTE) and plan.exports["privateLinks"] == []


def test_env_comes_from_the_stack_name() -> None:
    with pytest.raises(SettingsError) as caught:
        global_settings_from_values(GLOBAL, {**example_values(GLOBAL), "rtcfleet:env": "dev"})
    assert caught.value.keys == ["rtcfleet:env"]


def _violations(resources) -> list[str]:
    from infra.plan.checks import evaluate
    from infra.policy.global_stack import GLOBAL_POLICIES

    return [f"{v.policy}: {v.message}" for v in evaluate(resources, GLOBAL_POLICIES)]


def test_global_policies_pass_the_example(global_plan: StackPlan) -> None:
    assert _violations(global_plan.resources) == []


def test_a_region_without_health_check_fails(global_plan: StackPlan) -> None:
    kept = [
        r
        for r in global_plan.resources
        if not (r.type == HEALTH_CHECK and r.tags.get("rtcfleet:stack") == EU)
    ]
    found = _violations(kept)
    assert f"rtcfleet-dns-health-check-per-region: region {EU} has no DNS health check" in found
    assert any(v.startswith("rtcfleet-dns-records-follow-health-checks") and EU in v for v in found)


def test_a_record_that_ignores_its_check_fails(global_plan: StackPlan) -> None:
    record = next(r for r in global_plan.of_type(RECORD) if r.name == f"{US}-latency")
    broken = copy.deepcopy(record)
    broken.inputs.pop("healthCheckId")
    kept = [broken if r is record else r for r in global_plan.resources]
    assert _violations(kept) == [
        "rtcfleet-dns-records-follow-health-checks: "
        f"api.rtc.example.com: latency record for {US} ignores its health check"
    ]


def test_a_health_check_on_the_wrong_path_fails(global_plan: StackPlan) -> None:
    check = next(r for r in global_plan.of_type(HEALTH_CHECK) if r.tags["rtcfleet:stack"] == AZ)
    broken = copy.deepcopy(check)
    # a gateway's readiness is not the region's ability to carry a call
    broken.inputs["resourcePath"] = "/readyz"
    kept = [broken if r is check else r for r in global_plan.resources]
    assert _violations(kept) == [
        f"rtcfleet-dns-health-check-per-region: {AZ}: health check must probe region health "
        "/regionz"
    ]


def test_links_missing_a_side_fail(global_plan: StackPlan) -> None:
    dropped = {
        "aws:ec2transitgateway/peeringAttachmentAccepter:PeeringAttachmentAccepter",
    }
    kept = [
        r
        for r in global_plan.resources
        if r.type not in dropped
        and r.name != f"{EU}--{US}-route-eu-west-1"
        and r.name != f"{US}--{AZ}-0-tunnel2"
    ]
    found = _violations(kept)
    link = f"rtcfleet-private-links-both-sides: {EU}--{US}"
    assert f"{link}: peering is requested but not accepted on the other side" in found
    assert f"{link}: peering needs a route on each side's transit gateway" in found
    assert any(f"{US}--{AZ}: Azure side needs a LocalNetworkGateway" in v for v in found)
    assert any(
        f"{US}--{AZ}: Azure side needs a VirtualNetworkGatewayConnection" in v for v in found
    )


def test_region_stacks_are_left_alone_by_the_global_policies(planner: Planner) -> None:
    assert _violations(planner.plan(US).resources) == []


def test_every_global_policy_has_a_failing_case_here() -> None:
    from infra.policy.global_stack import GLOBAL_POLICIES

    source = Path(__file__).read_text()
    for policy in GLOBAL_POLICIES:
        assert f'"{policy.name}: ' in source or f"{policy.name}: " in source, policy.name
