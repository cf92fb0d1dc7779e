"""`rtcfleet reach` on the example environments, and on broken variants of them.

Each broken variant changes what one stack declares, the way a component regression or a
hand edit would, and the report must block the flow at the resource that broke it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from infra import flows
from infra.plan.mocks import RecordedResource
from infra.plan.runner import Planner
from infra.reach import environment_stacks
from infra.reach.analysis import FlowResult, ReachReport, analyse
from infra.settings import RegionSettings
from infra.spec import FIREWALL, HTTPS_PORT, Ingress, Role, Source

Plans = dict[str, list[RecordedResource]]


@pytest.fixture(scope="module")
def prod(planner: Planner) -> tuple[Plans, dict[str, RegionSettings]]:
    plans = {stack: planner.plan(stack) for stack in environment_stacks("prod")}
    regions = {s: p.settings for s, p in plans.items() if isinstance(p.settings, RegionSettings)}
    return {s: p.resources for s, p in plans.items()}, regions


def _report(prod, change: Callable[[Plans], None] | None = None) -> ReachReport:
    plans, regions = prod
    plans = copy.deepcopy(plans)
    if change is not None:
        change(plans)
    return analyse("prod", plans, regions)


def _find(plans: Plans, stack: str, kind: str, name: str) -> RecordedResource:
    [found] = [r for r in plans[stack] if r.type.endswith(kind) and r.name == name]
    return found


def _result(report: ReachReport, flow: str, source: str | None, target: str) -> FlowResult:
    [found] = [
        r
        for r in report.results
        if (r.flow.name, r.source_stack, r.destination_stack) == (flow, source, target)
    ]
    return found


def _blocked_at(report: ReachReport, flow: str, source: str | None, target: str) -> Any:
    result = _result(report, flow, source, target)
    assert result.blocked is not None, f"{flow} {source} -> {target} was admitted"
    return result.blocked


EU, USE, WEU, NEU = (
    "prod-aws-eu-west-1",
    "prod-aws-us-east-1",
    "prod-azure-westeurope",
    "prod-azure-northeurope",
)


def test_prod_every_flow_admitted_no_exposure(prod) -> None:
    report = _report(prod)
    assert [
        (r.flow.name, r.source_stack, r.destination_stack, r.blocked) for r in report.blocked()
    ] == []
    assert report.exposures == [] and report.firewall_problems == []
    assert report.stacks == sorted([EU, USE, WEU, NEU, "prod-global"])
    # every flow of the table is checked somewhere, both clouds, both ways across clouds
    # (no Azure region of prod is a physical replica of an Azure writer: they subscribe)
    # (and no example stack names a trace receiver: those flows exist only with one)
    assert {r.flow.name for r in report.results} == {f.name for f in flows.FLOWS} - {
        "replica-replication",
        *(f.name for f in flows.FLOWS if f.setting is not None),
    }
    assert ("room-lookup", NEU, USE) in {
        (r.flow.name, r.source_stack, r.destination_stack) for r in report.results
    }


def test_cross_region_settings_writes_pass_by_the_peered_rule_and_the_linked_zone(prod) -> None:
    report = _report(prod)
    aws = _result(report, "settings-write", EU, USE)
    details = [f"{s.kind} {s.resource} {s.detail}" for s in aws.steps]
    assert any("prod-euw1-tgw-vpc" not in d and "peering" in d for d in details)
    assert any(
        d.startswith("firewall prod-aws-us-east-1:SecurityGroup/prod-use1-postgres")
        and "10.11.0.0/16" in d
        for d in details
    )
    # Azure regions write to, and subscribe from, the one writer in AWS, over the VPN
    for flow, source in (("settings-write", NEU), ("settings-subscription", WEU)):
        azure = _result(report, flow, source, USE)
        kinds = {s.kind for s in azure.steps}
        assert azure.admitted and {"vpn", "attachment", "firewall", "nsg"} <= kinds
    # Azure regions reach each other by VNet peering (cross-region room lookup)
    lookup = _result(report, "room-lookup", NEU, WEU)
    assert [s.kind for s in lookup.steps if s.kind == "peering"] == ["peering"]


def test_missing_route_blocks_at_the_route_table(prod) -> None:
    def drop_route(plans: Plans) -> None:
        table = _find(plans, EU, "RouteTable", "prod-euw1-private-eu-west-1a")
        table.inputs["routes"] = [
            r for r in table.inputs["routes"] if r.get("cidrBlock") != "10.10.0.0/16"
        ]

    step = _blocked_at(_report(prod, drop_route), "settings-write", EU, USE)
    assert (step.kind, step.resource) == ("route", f"{EU}:RouteTable/prod-euw1-private-eu-west-1a")
    assert step.detail == "10.10.128.0/20 routed to the internet"


def test_missing_security_group_rule_blocks_the_cross_region_write(prod) -> None:
    # the example as it was: 5432 only from the home region's own groups
    def drop_peered(plans: Plans) -> None:
        group = _find(plans, USE, "SecurityGroup", "prod-use1-postgres")
        group.inputs["ingress"] = [r for r in group.inputs["ingress"] if not r.get("cidrBlocks")]

    report = _report(prod, drop_peered)
    step = _blocked_at(report, "settings-write", EU, USE)
    assert (step.kind, step.resource) == ("firewall", f"{USE}:SecurityGroup/prod-use1-postgres")
    assert "tcp/5432 from 10.11." in step.detail
    # the home region's own gateways still pass by group reference
    assert _result(report, "settings-write", USE, USE).admitted


def test_transit_peering_never_accepted_blocks(prod) -> None:
    def unaccept(plans: Plans) -> None:
        plans["prod-global"] = [
            r for r in plans["prod-global"] if not r.type.endswith("PeeringAttachmentAccepter")
        ]

    step = _blocked_at(_report(prod, unaccept), "room-lookup", USE, EU)
    assert step.kind == "peering"
    assert (
        step.resource
        == "prod-global:PeeringAttachment/prod-aws-eu-west-1--prod-aws-us-east-1-peering"
    )


def test_vpn_connection_removed_blocks_cross_cloud(prod) -> None:
    link = "prod-aws-us-east-1--prod-azure-westeurope"

    def drop_tunnels(plans: Plans) -> None:
        plans["prod-global"] = [
            r
            for r in plans["prod-global"]
            if not (r.type.endswith("VirtualNetworkGatewayConnection") and r.name.startswith(link))
        ]

    report = _report(prod, drop_tunnels)
    step = _blocked_at(report, "room-lookup", USE, WEU)
    assert step.kind == "vpn" and step.resource.startswith("prod-global:VirtualNetworkGateway/")
    assert f"{link}-vpn" in step.detail
    back = _blocked_at(report, "room-lookup", WEU, USE)
    assert (back.kind, back.resource) == ("route", f"{WEU}:VirtualNetwork/prod-weu-vnet")


def test_vnet_peering_one_side_only_is_not_connected(prod) -> None:
    def one_side(plans: Plans) -> None:
        plans["prod-global"] = [
            r
            for r in plans["prod-global"]
            if not (r.type.endswith("VirtualNetworkPeering") and r.name.endswith(WEU))
        ]

    step = _blocked_at(_report(prod, one_side), "room-lookup", NEU, WEU)
    assert step.kind == "peering" and step.resource.endswith(f"--{WEU}-{NEU}")
    assert "no peering back" in step.detail


def test_nsg_deny_at_a_lower_priority_number_wins(prod) -> None:
    def deny(plans: Plans) -> None:
        nsg = _find(plans, WEU, "NetworkSecurityGroup", "prod-weu-gateway")
        nsg.inputs["securityRules"].append(
            {
                "name": "deny-northeurope",
                "priority": 90,
                "direction": "Inbound",
                "access": "Deny",
                "protocol": "Tcp",
                "sourceAddressPrefix": "10.31.0.0/16",
                "destinationAddressPrefix": "*",
                "destinationPortRange": "8080",
            }
        )

    report = _report(prod, deny)
    step = _blocked_at(report, "room-lookup", NEU, WEU)
    assert step.kind == "nsg"
    assert step.resource == (
        f"{WEU}:NetworkSecurityGroup/prod-weu-gateway rule deny-northeurope (priority 90)"
    )
    assert _result(report, "room-lookup", USE, WEU).admitted


def test_private_dns_zone_not_linked_blocks_the_name(prod) -> None:
    def unlink(plans: Plans) -> None:
        plans[NEU] = [
            r
            for r in plans[NEU]
            if not (r.type.endswith("VirtualNetworkLink") and r.name == "prod-neu-postgres-dns")
        ]

    step = _blocked_at(_report(prod, unlink), "gateway-settings-read", NEU, NEU)
    assert (step.kind, step.resource) == ("dns", f"{NEU}:PrivateZone/prod-neu-postgres-dns")
    assert "not linked to prod-azure-northeurope:VirtualNetwork/prod-neu-vnet" in step.detail


def test_target_group_on_the_wrong_port_blocks_aws(prod) -> None:
    def wrong_port(plans: Plans) -> None:
        _find(plans, USE, "TargetGroup", "prod-use1-client").inputs["port"] = 8081.0

    step = _blocked_at(_report(prod, wrong_port), "client-lb-to-gateway", USE, USE)
    assert (step.kind, step.resource) == ("target", f"{USE}:TargetGroup/prod-use1-client")
    assert "sends to port 8081" in step.detail


def test_backend_settings_on_the_wrong_port_blocks_azure(prod) -> None:
    def wrong_port(plans: Plans) -> None:
        gateway = _find(plans, NEU, "ApplicationGateway", "prod-neu-admin")
        gateway.inputs["backendHttpSettingsCollection"][0]["port"] = 8080.0

    step = _blocked_at(_report(prod, wrong_port), "admin-lb-to-gateway", NEU, NEU)
    assert step.kind == "target"
    assert step.resource == f"{NEU}:ApplicationGateway/prod-neu-admin backend settings gateways"


def test_an_open_port_no_flow_needs_is_an_exposure(prod) -> None:
    def turn_tls(plans: Plans) -> None:
        group = _find(plans, USE, "SecurityGroup", "prod-use1-media")
        group.inputs["ingress"].append(
            {"protocol": "tcp", "fromPort": 443.0, "toPort": 443.0, "cidrBlocks": ["0.0.0.0/0"]}
        )
        nsg = _find(plans, NEU, "NetworkSecurityGroup", "prod-neu-media")
        nsg.inputs["securityRules"].append(
            {
                "name": "turn-tls",
                "priority": 500,
                "direction": "Inbound",
                "access": "Allow",
                "protocol": "Tcp",
                "sourceAddressPrefix": "*",
                "destinationPortRange": "443",
            }
        )

    report = _report(prod, turn_tls)
    assert {(e.resource, e.ports) for e in report.exposures} == {
        (f"{USE}:SecurityGroup/prod-use1-media", "tcp/443-443"),
        (f"{NEU}:NetworkSecurityGroup/prod-neu-media rule turn-tls", "tcp/443"),
    }
    assert not report.passed


def test_firewall_and_flows_agree_and_a_stray_rule_is_named(monkeypatch) -> None:
    assert flows.firewall_problems() == []
    stray = Ingress("tcp", HTTPS_PORT, HTTPS_PORT, Source.ANYWHERE, "TURN over TLS")
    monkeypatch.setitem(FIREWALL, Role.MEDIA_NODE, (*FIREWALL[Role.MEDIA_NODE], stray))
    assert flows.firewall_problems() == [
        "FIREWALL[media] opens tcp/443-443 from anywhere (TURN over TLS): no flow needs it"
    ]


def test_reach_command_on_dev_passes_as_json() -> None:
    from rtcfleet.cli import app

    result = CliRunner().invoke(app, ["reach", "--env", "dev", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["passed"] and document["blocked"] == 0 and document["exposures"] == []
    assert document["admitted"] == 17
    [write] = [f for f in document["flows"] if f["flow"] == "settings-write"]
    assert write["path"][0]["kind"] == "dns"


def test_plan_env_runs_every_policy_pack_then_reach() -> None:
    from rtcfleet.cli import app

    result = CliRunner().invoke(app, ["plan", "--env", "dev", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["stacks"] == {"dev-aws-us-east-1": {"passed": True, "violations": []}}
    assert document["reach"]["passed"] and document["reach"]["admitted"] == 17


def test_a_closed_admin_console_is_not_a_blocked_flow(prod) -> None:
    plans, regions = prod
    closed = {**regions, EU: regions[EU].model_copy(update={"admin_allow_list": []})}
    report = analyse("prod", copy.deepcopy(plans), closed)
    assert ("admin-console", EU) not in {(r.flow.name, r.destination_stack) for r in report.results}
    assert ("admin-console", USE) in {(r.flow.name, r.destination_stack) for r in report.results}
    assert report.passed


def test_an_azure_writer_is_reached_by_peering_and_its_linked_zone() -> None:
    """prod's Azure regions on their own, westeurope the writer: northeurope replicates it."""
    from infra.plan.runner import StackConfigs
    from tests.infra.conftest import example_values

    configs = {s: example_values(s) for s in (WEU, NEU, "prod-global")}
    for stack in (WEU, NEU):
        configs[stack].pop("rtcfleet:writerStack", None)
    configs["prod-global"] |= {
        "rtcfleet:regions": [WEU, NEU],
        "rtcfleet:homeRegion": WEU,
        "rtcfleet:standbyRegion": NEU,
    }
    planner = Planner(StackConfigs(configs))
    plans = {s: planner.plan(s) for s in configs}
    regions = {s: p.settings for s, p in plans.items() if isinstance(p.settings, RegionSettings)}
    report = analyse("prod", {s: p.resources for s, p in plans.items()}, regions)
    assert report.blocked() == [] and report.exposures == []
    write = _result(report, "settings-write", NEU, WEU)
    [dns] = [s for s in write.steps if s.kind == "dns"]
    assert dns.resource == f"{NEU}:VirtualNetworkLink/prod-neu-postgres-home-dns"
    assert _result(report, "replica-replication", NEU, WEU).admitted


def _traced(prod, endpoint: str, change: Callable[[Plans], None] | None = None) -> ReachReport:
    plans, regions = prod
    traced = {
        stack: settings.model_copy(update={"otlp_endpoint": endpoint})
        for stack, settings in regions.items()
    }
    plans = copy.deepcopy(plans)
    if change is not None:
        change(plans)
    return analyse("prod", plans, traced)


def test_nodes_reach_a_public_trace_receiver_on_its_own_port(prod) -> None:
    report = _traced(prod, "https://otlp.example.net:4318")
    traces = [r for r in report.results if r.flow.name in ("gateway-traces", "media-traces")]
    assert len(traces) == 8 and all(r.admitted for r in traces)
    assert {r.flow.ports for r in traces} == {"tcp/4318"}
    aws = _result(report, "media-traces", USE, USE)
    details = [f"{s.kind} {s.resource} {s.detail}" for s in aws.steps]
    assert any(d.startswith("firewall ") and "SecurityGroup/prod-use1-media" in d for d in details)
    # media nodes (public address each) leave by the internet gateway, gateways by NAT
    assert any(d.startswith("route ") and "0.0.0.0/0 -> igw-" in d for d in details), details
    gateway = _result(report, "gateway-traces", USE, USE)
    assert any("0.0.0.0/0 -> nat-" in s.detail for s in gateway.steps if s.kind == "route")
    azure = _result(report, "gateway-traces", WEU, WEU)
    assert {"dns", "nsg", "route"} <= {s.kind for s in azure.steps}
    assert report.passed


def test_a_private_receiver_is_reached_over_the_private_network_or_blocked(prod) -> None:
    # a collector in eu-west-1's VPC: the other regions reach it over peering / VPN
    report = _traced(prod, "http://10.11.40.7:4318")
    assert all(
        r.admitted for r in report.results if r.flow.name in ("gateway-traces", "media-traces")
    )
    assert {s.kind for s in _result(report, "media-traces", WEU, WEU).steps} >= {"vpn"}
    # an address no network of the environment holds: AWS sends it to the internet, and
    # Azure's default outbound rules let no private address out beyond the VNet and peers
    nowhere = _traced(prod, "http://10.99.0.7:4318")
    step = _blocked_at(nowhere, "gateway-traces", USE, USE)
    assert step.kind == "route" and "10.99.0.7/32 routed to the internet" in step.detail
    step = _blocked_at(nowhere, "media-traces", NEU, NEU)
    assert step.kind == "nsg" and step.detail == "denies outbound tcp/4318 to 10.99.0.7/32"


def test_a_receiver_the_security_group_does_not_let_out_is_blocked(prod) -> None:
    def close_egress(plans: Plans) -> None:
        group = _find(plans, USE, "SecurityGroup", "prod-use1-gateway")
        group.inputs["egress"] = [
            {**rule, "protocol": "tcp", "fromPort": 443, "toPort": 443}
            for rule in group.inputs["egress"]
        ]

    report = _traced(prod, "https://otlp.example.net:4318", close_egress)
    step = _blocked_at(report, "gateway-traces", USE, USE)
    assert (step.kind, step.resource) == ("firewall", f"{USE}:SecurityGroup/prod-use1-gateway")
    assert _result(report, "media-traces", USE, USE).admitted


def test_azure_recordings_pass_by_the_storage_endpoint_and_its_network_rule(prod) -> None:
    report = _report(prod)
    upload = _result(report, "media-recordings", WEU, WEU)
    [admitted] = [s for s in upload.steps if s.kind == "service endpoint"]
    assert admitted.resource.startswith(f"{WEU}:StorageAccount/")
    assert admitted.detail == f"admits {WEU}:Subnet/prod-weu-media"

    def drop_rule(plans: Plans) -> None:
        [account] = [r for r in plans[WEU] if r.type.endswith("StorageAccount")]
        account.inputs["networkRuleSet"]["virtualNetworkRules"] = []

    step = _blocked_at(_report(prod, drop_rule), "media-recordings", WEU, WEU)
    assert step.kind == "firewall" and step.resource.startswith(f"{WEU}:StorageAccount/")

    def drop_endpoint(plans: Plans) -> None:
        subnet = _find(plans, NEU, "Subnet", "prod-neu-media")
        subnet.inputs["serviceEndpoints"] = [{"service": "Microsoft.KeyVault"}]

    report = _report(prod, drop_endpoint)
    step = _blocked_at(report, "media-recordings", NEU, NEU)
    assert (step.kind, step.detail) == ("service endpoint", "no Microsoft.Storage service endpoint")
    # Key Vault still reached over its own endpoint
    assert _result(report, "media-secrets", NEU, NEU).admitted


def test_room_lookup_goes_where_the_gateways_settings_point(prod) -> None:
    report = _report(prod)
    lookup = _result(report, "room-lookup", NEU, USE)
    [named] = [s for s in lookup.steps if s.kind == "settings"]
    assert named.resource == f"{NEU}:Secret/prod-neu-gateway-settings"
    assert named.detail.startswith("peerRegions[us-east-1] = http://internal-prod-use1-signaling")

    def forget_westeurope(plans: Plans) -> None:
        parameter = _find(plans, USE, "Parameter", "prod-use1-gateway-settings")
        document = json.loads(parameter.inputs["value"])
        del document["peerRegions"]["westeurope"]
        parameter.inputs["value"] = json.dumps(document)

    report = _report(prod, forget_westeurope)
    step = _blocked_at(report, "room-lookup", USE, WEU)
    assert (step.kind, step.resource) == ("settings", f"{USE}:Parameter/prod-use1-gateway-settings")
    assert step.detail.startswith("peerRegions[westeurope] is missing")
    assert _result(report, "room-lookup", USE, NEU).admitted
    assert _result(report, "room-lookup", WEU, USE).admitted


def test_aws_recordings_need_the_s3_gateway_endpoint(prod) -> None:
    upload = _result(_report(prod), "media-recordings", EU, EU)
    [endpoint] = [s for s in upload.steps if s.kind == "service endpoint"]
    assert endpoint.resource == f"{EU}:VpcEndpoint/prod-euw1-s3"
    assert endpoint.detail == f"on {EU}:RouteTable/prod-euw1-public"

    def drop_endpoint(plans: Plans) -> None:
        plans[EU].remove(_find(plans, EU, "VpcEndpoint", "prod-euw1-s3"))

    report = _report(prod, drop_endpoint)
    step = _blocked_at(report, "media-recordings", EU, EU)
    assert (step.kind, step.resource) == ("service endpoint", f"{EU}:RouteTable/prod-euw1-public")
    assert _result(report, "media-recordings", USE, USE).admitted
    assert _result(report, "media-secrets", EU, EU).admitted
