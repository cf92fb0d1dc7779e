"""CrossGuard policies for the ``<env>-global`` stack: DNS that obeys health checks, and
private links that are complete on both sides.

They are stack policies: each rule relates several resources (a record to its region's
health check, a peering request to its acceptance and the routes of both regions). They
match resources by the tags and names the global program gives them, never by ids, which
a preview does not know yet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pulumi_policy import StackValidationArgs, StackValidationPolicy

from infra.global_stack.vpn_routes import single_points, tunnels
from infra.policy.props import Report, stack_policy, tags_of
from infra.spec import HTTPS_PORT, REGION_HEALTH_PATH

HEALTH_CHECK = "aws:route53/healthCheck:HealthCheck"
RECORD = "aws:route53/record:Record"
PEERING = "aws:ec2transitgateway/peeringAttachment:PeeringAttachment"
PEERING_ACCEPTER = "aws:ec2transitgateway/peeringAttachmentAccepter:PeeringAttachmentAccepter"
TRANSIT_ROUTE = "aws:ec2transitgateway/route:Route"
VPN_CONNECTION = "aws:ec2/vpnConnection:VpnConnection"
CUSTOMER_GATEWAY = "aws:ec2/customerGateway:CustomerGateway"
AZURE_LOCAL_GATEWAY = "azure-native:network:LocalNetworkGateway"
AZURE_CONNECTION = "azure-native:network:VirtualNetworkGatewayConnection"
AZURE_VPN_GATEWAY = "azure-native:network:VirtualNetworkGateway"
STACK_TAG = "rtcfleet:stack"
LINK_TAG = "rtcfleet:link"
LINK_SEPARATOR = "--"
VPN_TUNNELS = 2


def _of(args: StackValidationArgs, type_token: str) -> list[Any]:
    return [r for r in args.resources if r.resource_type == type_token]


def _routing(props: Mapping[str, Any]) -> str | None:
    """``latency`` or ``failover`` for routed records, ``None`` for simple ones."""
    if props.get("latencyRoutingPolicies"):
        return "latency"
    if props.get("failoverRoutingPolicies"):
        return "failover"
    return None


def _checked_stacks(args: StackValidationArgs) -> dict[str, Any]:
    return {
        str(tags_of(r.props).get(STACK_TAG)): r
        for r in _of(args, HEALTH_CHECK)
        if tags_of(r.props).get(STACK_TAG)
    }


def _linked_stacks(args: StackValidationArgs) -> set[str]:
    stacks: set[str] = set()
    for resource in args.resources:
        link = tags_of(resource.props).get(LINK_TAG)
        if isinstance(link, str):
            stacks.update(link.split(LINK_SEPARATOR))
    return stacks


def health_check_per_region(args: StackValidationArgs, report: Report) -> None:
    """Every region the stack serves or links has a Route 53 HTTPS check of its region health
    (not a gateway's readiness: DNS moves clients when the region cannot carry a call)."""
    checks = _checked_stacks(args)
    served = {str(r.props.get("setIdentifier")) for r in _of(args, RECORD) if _routing(r.props)}
    for stack in sorted((served | _linked_stacks(args)) - set(checks)):
        report(f"region {stack} has no DNS health check")
    for stack, check in sorted(checks.items()):
        props = check.props
        if props.get("type") != "HTTPS" or props.get("port") != HTTPS_PORT:
            report(f"{stack}: health check must be HTTPS on port {HTTPS_PORT}")
        if props.get("resourcePath") != REGION_HEALTH_PATH:
            report(f"{stack}: health check must probe region health {REGION_HEALTH_PATH}")
        if not props.get("fqdn"):
            report(f"{stack}: health check has no target (fqdn)")
    if not checks:
        report("the global stack declares no DNS health check")


def records_follow_health_checks(args: StackValidationArgs, report: Report) -> None:
    """Routed records only for checked regions, each tied to a check; one failover pair."""
    checks = _checked_stacks(args)
    failover: dict[str, dict[str, str]] = defaultdict(dict)
    for record in _of(args, RECORD):
        routing = _routing(record.props)
        if routing is None:
            continue
        stack = str(record.props.get("setIdentifier"))
        name = str(record.props.get("name"))
        if stack not in checks:
            report(f"{name}: {routing} record for {stack}, which has no health check")
        if not record.props.get("healthCheckId"):
            report(f"{name}: {routing} record for {stack} ignores its health check")
        if routing == "failover":
            for policy in record.props.get("failoverRoutingPolicies") or []:
                role = str(policy.get("type"))
                if role in failover[name]:
                    report(f"{name}: two {role} records")
                failover[name][role] = stack
    for name, roles in sorted(failover.items()):
        if "PRIMARY" not in roles:
            report(f"{name}: failover records without a PRIMARY")
        if roles.get("PRIMARY") == roles.get("SECONDARY"):
            report(f"{name}: PRIMARY and SECONDARY are the same region")


def private_links_both_sides(args: StackValidationArgs, report: Report) -> None:
    """Each peering is accepted and routed on both sides; each VPN has both clouds' ends."""
    by_link: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for resource in args.resources:
        link = tags_of(resource.props).get(LINK_TAG)
        if isinstance(link, str):
            by_link[link][resource.resource_type].append(resource)
    routes: dict[str, list[Any]] = defaultdict(list)
    for route in _of(args, TRANSIT_ROUTE):
        routes[str(route.name).split("-route-", 1)[0]].append(route)
    for link, kinds in sorted(by_link.items()):
        tables = {str(r.props.get("transitGatewayRouteTableId")) for r in routes[link]}
        if kinds.get(PEERING):
            if len(kinds.get(PEERING_ACCEPTER, [])) != 1:
                report(f"{link}: peering is requested but not accepted on the other side")
            if len(routes[link]) != 2 or len(tables) != 2:
                report(f"{link}: peering needs a route on each side's transit gateway")
        if kinds.get(VPN_CONNECTION):
            connections = kinds[VPN_CONNECTION]
            if len(kinds.get(CUSTOMER_GATEWAY, [])) != len(connections):
                report(f"{link}: each VPN connection needs its customer gateway (an Azure address)")
            static = [c for c in connections if c.props.get("staticRoutesOnly")]
            if static and not routes[link]:
                report(f"{link}: no transit gateway route to the Azure network")
            for kind in (AZURE_LOCAL_GATEWAY, AZURE_CONNECTION):
                if len(kinds.get(kind, [])) != VPN_TUNNELS * len(connections):
                    short = kind.rsplit(":", 1)[-1]
                    report(f"{link}: Azure side needs a {short} for each AWS tunnel")
        elif kinds.get(AZURE_CONNECTION):
            report(f"{link}: Azure connections without the AWS VPN connection")


def vpn_survives_a_tunnel(args: StackValidationArgs, report: Report) -> None:
    """Azure's VPN gateways are active-active with BGP, and no one tunnel's loss cuts a link."""
    for gateway in _of(args, AZURE_VPN_GATEWAY):
        if not gateway.props.get("activeActive") or not gateway.props.get("enableBgp"):
            report(f"{gateway.name}: the VPN gateway must be active-active with BGP")
    found = tunnels((r.resource_type, str(r.name), r.props) for r in args.resources)
    for link, cut in single_points(found).items():
        report(f"{link}: losing {', '.join(cut)} alone cuts Azure <-> AWS (no other path)")


def _is_global(args: StackValidationArgs) -> bool:
    # a region's own simple records (certificate validation) do not make it the global stack
    return any(
        r.resource_type == HEALTH_CHECK
        or (r.resource_type == RECORD and _routing(r.props) is not None)
        for r in args.resources
    ) or any(tags_of(r.props).get(LINK_TAG) for r in args.resources)


def _only_global(
    validate: Callable[[StackValidationArgs, Report], None],
) -> Callable[[StackValidationArgs, Report], None]:
    """Region stacks declare no DNS or links: the global policies leave them alone."""

    def guarded(args: StackValidationArgs, report: Report) -> None:
        if _is_global(args):
            validate(args, report)

    guarded.__doc__ = validate.__doc__
    return guarded


GLOBAL_POLICIES: Sequence[StackValidationPolicy] = (
    stack_policy("rtcfleet-dns-health-check-per-region", _only_global(health_check_per_region)),
    stack_policy("rtcfleet-dns-records-follow-health-checks", records_follow_health_checks),
    stack_policy("rtcfleet-private-links-both-sides", private_links_both_sides),
    stack_policy("rtcfleet-vpn-survives-a-tunnel", vpn_survives_a_tunnel),
)

__all__ = ["GLOBAL_POLICIES"]
