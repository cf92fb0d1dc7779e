"""Evaluate every flow of ``infra.flows`` across an environment's planned stacks, hop by hop.

Each flow becomes one check per pair of stacks its scope names (a region and itself, a
region and its home, every pair of regions). A check walks the flow as a packet would:
the name it resolves, the source's firewall on the way out, the route there and the route
back, the destination's firewall, and for load balancers the listener, the target group or
pool on the destination's port and the health check. It stops at the first step that fails
and names that resource. The converse is the exposure scan: every port the internet can
reach that no flow needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network
from typing import Any
from urllib.parse import urlsplit

from infra.flows import FLOWS, Database, Flow, Peer, Scope, firewall_problems, internet_ports
from infra.plan.mocks import RecordedResource
from infra.reach.dns import zone_linked
from infra.reach.endpoints import Endpoint, Endpoints
from infra.reach.firewalls import Firewalls
from infra.reach.network import (
    ANYWHERE,
    Blocked,
    NetworkModel,
    Resource,
    Step,
    Traffic,
    block,
    is_private,
    network,
)
from infra.reach.routing import Router
from infra.settings import RegionSettings
from infra.spec import ROLE_TAG, Role
from infra.traces import receiver

# Where Azure's load balancer probes come from (the AzureLoadBalancer service tag).
AZURE_PROBE_ADDRESS = IPv4Network("168.63.129.16/32")
STORAGE_ENDPOINT = "Microsoft.Storage"


@dataclass
class FlowResult:
    flow: Flow
    source_stack: str | None
    destination_stack: str
    steps: list[Step]
    blocked: Step | None = None

    @property
    def admitted(self) -> bool:
        return self.blocked is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow.name,
            "source": str(self.flow.source),
            "sourceStack": self.source_stack,
            "destination": str(self.flow.destination),
            "destinationStack": self.destination_stack,
            "ports": self.flow.ports,
            "scope": str(self.flow.scope),
            "dns": self.flow.dns,
            "why": self.flow.why,
            "admitted": self.admitted,
            "path": [s.as_dict() for s in self.steps],
            "blockedAt": self.blocked.as_dict() if self.blocked else None,
        }


@dataclass(frozen=True)
class Exposure:
    stack: str
    resource: str
    role: str
    ports: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "resource": self.resource,
            "role": self.role,
            "ports": self.ports,
            "source": self.source,
        }


@dataclass
class ReachReport:
    env: str
    stacks: list[str]
    results: list[FlowResult]
    exposures: list[Exposure]
    firewall_problems: list[str]
    plan_seconds: float = 0.0
    analysis_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            all(r.admitted for r in self.results)
            and not self.exposures
            and not self.firewall_problems
        )

    def blocked(self) -> list[FlowResult]:
        return [r for r in self.results if not r.admitted]

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "stacks": self.stacks,
            "passed": self.passed,
            "flows": [r.as_dict() for r in self.results],
            "blocked": len(self.blocked()),
            "admitted": len(self.results) - len(self.blocked()),
            "exposures": [e.as_dict() for e in self.exposures],
            "firewallProblems": self.firewall_problems,
            "notes": self.notes,
            "planSeconds": round(self.plan_seconds, 3),
            "analysisSeconds": round(self.analysis_seconds, 3),
        }


def _once(steps: list[Step]) -> list[Step]:
    """Each step once: every subnet of a side walks the same route tables and rules."""
    return list(dict.fromkeys(steps))


def _num(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return -1


class Analysis:
    """The flows of one environment, evaluated on its stacks' recorded resources."""

    def __init__(
        self,
        plans: Mapping[str, Sequence[RecordedResource]],
        regions: Mapping[str, RegionSettings],
    ) -> None:
        self.model = NetworkModel.from_plans(plans)
        self.regions = dict(regions)
        self.endpoints = Endpoints(self.model, {s: r.cloud for s, r in regions.items()})
        self.router = Router(self.model)
        self.firewalls = Firewalls(self.model)

    def pairs(self, flow: Flow) -> list[tuple[str | None, str]]:
        stacks = sorted(self.regions)
        if isinstance(flow.source, Peer):
            # An empty allow-list closes the admin console on purpose: no flow to check.
            return [
                (None, s)
                for s in stacks
                if self.regions[s].cloud in flow.clouds
                and (flow.source is not Peer.ADMIN_ALLOW_LIST or self.regions[s].admin_allow_list)
            ]
        pairs: list[tuple[str | None, str]] = []
        for source in stacks:
            settings = self.regions[source]
            if settings.cloud not in flow.clouds:
                continue
            if flow.setting is not None and getattr(settings, flow.setting) is None:
                continue
            if flow.scope is Scope.SAME_REGION:
                pairs.append((source, source))
            elif flow.scope is Scope.HOME_REGION:
                pairs.append((source, settings.writer_stack or settings.home_stack))
            elif flow.scope is Scope.FROM_OTHER_REGIONS:
                # a physical replica of a writer of its own cloud, in another region
                if not settings.is_home and not settings.subscribes:
                    pairs.append((source, settings.home_stack))
            elif flow.scope is Scope.FROM_OTHER_CLOUD:
                if settings.subscribes and settings.writer_stack is not None:
                    pairs.append((source, settings.writer_stack))
            elif flow.scope is Scope.OTHER_REGIONS:
                pairs += [(source, other) for other in stacks if other != source]
        return pairs

    def run(self) -> tuple[list[FlowResult], list[Exposure]]:
        results = [self.check(flow, s, d) for flow in FLOWS for s, d in self.pairs(flow)]
        return results, self.exposures()

    def check(self, flow: Flow, source: str | None, destination: str) -> FlowResult:
        steps: list[Step] = []
        try:
            if destination not in self.regions:
                raise block("endpoint", destination, "is not a stack of this environment")
            if flow.destination is Peer.TRACE_RECEIVER:
                assert source is not None and isinstance(flow.source, Role)
                origin = self.endpoints.find(source, flow.source)
                flow = self._trace_flow(flow, source)
                self._trace_receiver(flow, source, origin, steps)
            elif flow.destination is Peer.CLOUD_SERVICES:
                assert source is not None and isinstance(flow.source, Role)
                self._cloud_services(flow, self.endpoints.find(source, flow.source), steps)
            else:
                assert isinstance(flow.destination, Role)
                target = self.endpoints.find(destination, flow.destination, flow.database)
                if isinstance(flow.source, Peer):
                    self._from_outside(flow, target, steps)
                else:
                    assert source is not None
                    # A database that opens a flow is a replica streaming from its writer.
                    database = Database.READER if flow.source is Role.POSTGRES else None
                    origin = self.endpoints.find(source, flow.source, database)
                    if flow.named_in is not None:
                        self._named(flow, origin, target, steps)
                    self._between(flow, origin, target, steps)
        except Blocked as stop:
            return FlowResult(flow, source, destination, _once(steps), stop.step)
        return FlowResult(flow, source, destination, _once(steps))

    def _from_outside(self, flow: Flow, target: Endpoint, steps: list[Step]) -> None:
        if flow.source is Peer.ADMIN_ALLOW_LIST:
            ranges = [IPv4Network(str(c)) for c in self.regions[target.stack].admin_allow_list]
        else:
            ranges = [ANYWHERE]
        if not target.public:
            raise block("exposure", target.resource.label, "has no public address")
        steps.append(Step("address", target.resource.label, "public"))
        if target.cloud == "aws":
            for subnet in target.subnets:
                steps.append(self._internet_gateway(subnet))
        self._listener(flow, target, steps)
        peer = Traffic(ranges)
        self._ingress(flow, target, peer, steps)

    def _internet_gateway(self, subnet: Any) -> Step:
        table = self.router.aws_route_table(subnet)
        if table is not None:
            for route in self.router.aws_routes(table):
                if route.get("cidrBlock") == str(ANYWHERE) and str(
                    route.get("gatewayId", "")
                ).startswith("igw-"):
                    return Step("route", table.label, f"0.0.0.0/0 -> {route['gatewayId']}")
        raise block(
            "route",
            table.label if table else subnet.resource.label,
            "no route to an internet gateway: the internet cannot reach it",
        )

    def _between(self, flow: Flow, origin: Endpoint, target: Endpoint, steps: list[Step]) -> None:
        self._dns(origin, target, steps)
        to = Traffic(target.ranges, target.groups, target.network_id)
        for subnet in origin.subnets:
            for cidr in target.ranges:
                reached = self.router.route(subnet, cidr, steps)
                if reached != target.network_id:
                    raise block(
                        "route",
                        subnet.resource.label,
                        f"{cidr} leads to {self.model.network_label(reached)}, not "
                        f"{self.model.network_label(target.network_id)}",
                    )
        for subnet in target.subnets:
            for origin_subnet in origin.subnets:
                reached = self.router.route(subnet, origin_subnet.cidr, [])
                if reached != origin.network_id:
                    raise block(
                        "route",
                        subnet.resource.label,
                        f"return route to {origin_subnet.cidr} leads elsewhere",
                    )
        steps.append(Step("route", target.stack, "return path routed"))
        self._egress(flow, origin, to, steps)
        if isinstance(flow.destination, Role) and flow.destination in (
            Role.CLIENT_LB,
            Role.ADMIN_LB,
            Role.SIGNALING_LB,
        ):
            self._listener(flow, target, steps)
        peer = origin.traffic()
        if target.cloud == "azure" and origin.role is Role.SIGNALING_LB:
            # A Standard Load Balancer passes packets through: the callers' own checks stand.
            peer = Traffic([], tags=frozenset())
        if origin.role in (Role.CLIENT_LB, Role.ADMIN_LB, Role.SIGNALING_LB):
            self._forward(flow, origin, target, steps)
        if peer.ranges:
            self._ingress(flow, target, peer, steps)

    def _named(self, flow: Flow, origin: Endpoint, target: Endpoint, steps: list[Step]) -> None:
        """The caller's settings document names the target: its region, with a URL on the
        target's own name or address and the flow's port."""
        document, label = self._settings_document(origin)
        region = self.regions[target.stack].region
        urls = (document.get(str(flow.named_in)) or {}).get(region) or []
        names = {str(a.network_address) for a in target.addresses}
        if target.cloud == "aws":
            names.add(str(target.resource.record.outputs.get("dnsName")))
        for url in urls:
            parts = urlsplit(str(url))
            if parts.hostname in names and parts.port == flow.from_port:
                steps.append(Step("settings", label, f"{flow.named_in}[{region}] = {url}"))
                return
        raise block(
            "settings",
            label,
            f"{flow.named_in}[{region}] is {urls or 'missing'}, not {target.resource.label} "
            f"on port {flow.from_port}",
        )

    def _settings_document(self, origin: Endpoint) -> tuple[dict[str, Any], str]:
        """The settings document the origin role's nodes boot with (SSM / Key Vault)."""
        role = origin.role.value
        for resource in self.model.of("aws:ssm/parameter:Parameter"):
            if resource.stack == origin.stack and resource.record.tags.get(ROLE_TAG) == role:
                return json.loads(str(resource.inputs.get("value"))), resource.label
        for resource in self.model.of("azure-native:keyvault:Secret"):
            if resource.stack == origin.stack and resource.inputs.get("secretName") == (
                f"{role}-settings"
            ):
                value = (resource.inputs.get("properties") or {}).get("value")
                return json.loads(str(value)), resource.label
        raise block("settings", origin.stack, f"declares no settings document for {role}")

    def _dns(self, origin: Endpoint, target: Endpoint, steps: list[Step]) -> None:
        if target.dns_zone is None:
            kind = "static address" if target.addresses else "public name, private address"
            steps.append(Step("dns", target.resource.label, kind))
            return
        if not target.dns_zone:
            raise block("dns", target.resource.label, "no private DNS zone holds its name")
        steps.append(zone_linked(self.model, target.dns_zone, origin.network_id))

    def _egress(self, flow: Flow, origin: Endpoint, to: Traffic, steps: list[Step]) -> None:
        port = flow.from_port
        if origin.cloud == "aws":
            if origin.groups:
                steps.append(
                    self.firewalls.security_groups(
                        origin.groups, "egress", to, flow.protocol, port, origin.network_id
                    )
                )
            for subnet in origin.subnets:
                if (step := self.firewalls.nacl(subnet, True, to, flow.protocol, port)) is not None:
                    steps.append(step)
        elif origin.role not in (Role.CLIENT_LB, Role.ADMIN_LB):
            own = Traffic([s.cidr for s in origin.subnets])
            for subnet in origin.subnets:
                steps.append(self.firewalls.nsg(subnet, "Outbound", to, own, flow.protocol, port))

    def _ingress(self, flow: Flow, target: Endpoint, peer: Traffic, steps: list[Step]) -> None:
        ports = (
            [flow.from_port] if flow.from_port == flow.to_port else [flow.from_port, flow.to_port]
        )
        for port in ports:
            if target.cloud == "aws":
                if target.groups:
                    steps.append(
                        self.firewalls.security_groups(
                            target.groups, "ingress", peer, flow.protocol, port, target.network_id
                        )
                    )
                elif not target.public:
                    raise block("firewall", target.resource.label, "has no security group")
                for subnet in target.subnets:
                    if (
                        step := self.firewalls.nacl(subnet, False, peer, flow.protocol, port)
                    ) is not None:
                        steps.append(step)
            elif target.nsg_enforced:
                own = Traffic(target.ranges)
                for subnet in target.subnets:
                    steps.append(
                        self.firewalls.nsg(
                            subnet,
                            "Inbound",
                            peer,
                            own,
                            flow.protocol,
                            self._service_port(target, port),
                        )
                    )

    @staticmethod
    def _service_port(target: Endpoint, port: int) -> int:
        # Azure Cache for Redis serves TLS on 6380, which is what the nodes are told to use.
        if target.cloud == "azure" and target.role is Role.REDIS:
            return 6380
        return port

    def _listener(self, flow: Flow, lb: Endpoint, steps: list[Step]) -> None:
        """The load balancer (or node) listens where the flow arrives."""
        port = flow.from_port
        record = lb.resource
        if lb.role not in (Role.CLIENT_LB, Role.ADMIN_LB, Role.SIGNALING_LB):
            return
        if lb.cloud == "aws":
            arn = record.outputs.get("arn")
            for listener in self.model.of("aws:lb/listener:Listener"):
                if (
                    listener.inputs.get("loadBalancerArn") == arn
                    and _num(listener.inputs.get("port")) == port
                ):
                    steps.append(
                        Step(
                            "listener", listener.label, f"{listener.inputs.get('protocol')}/{port}"
                        )
                    )
                    return
        elif record.record.type == "azure-native:network:ApplicationGateway":
            for frontend in record.inputs.get("frontendPorts") or []:
                if _num(frontend.get("port")) == port:
                    steps.append(Step("listener", record.label, f"frontend port {port}"))
                    return
        else:
            for rule in record.inputs.get("loadBalancingRules") or []:
                if _num(rule.get("frontendPort")) == port:
                    steps.append(
                        Step(
                            "listener",
                            f"{record.label} rule {rule.get('name')}",
                            f"frontend {port}",
                        )
                    )
                    return
        raise block("listener", record.label, f"no listener on {flow.ports}")

    def _forward(self, flow: Flow, lb: Endpoint, target: Endpoint, steps: list[Step]) -> None:
        """The LB forwards to the target's port and health-checks it there."""
        port = flow.from_port
        record = lb.resource
        if lb.cloud == "aws":
            groups = set(target.resource.inputs.get("targetGroupArns") or [])
            arn = record.outputs.get("arn")
            forwarded = []
            for listener in self.model.of("aws:lb/listener:Listener"):
                if listener.inputs.get("loadBalancerArn") != arn:
                    continue
                for action in listener.inputs.get("defaultActions") or []:
                    tg = self.model.by_arn.get(str(action.get("targetGroupArn")))
                    if tg is not None and tg.outputs.get("arn") in groups:
                        forwarded.append(tg)
            if not forwarded:
                raise block(
                    "target",
                    record.label,
                    f"no listener forwards to a target group of {target.resource.label}",
                )
            for tg in forwarded:
                if _num(tg.inputs.get("port")) != port:
                    raise block(
                        "target",
                        tg.label,
                        f"sends to port {_num(tg.inputs.get('port'))}; {target.role.value} "
                        f"listens on {port}",
                    )
                check = tg.inputs.get("healthCheck") or {}
                checked = str(check.get("port", "traffic-port"))
                if checked not in ("traffic-port", str(port)):
                    raise block("health check", tg.label, f"probes port {checked}, not {port}")
                steps.append(
                    Step(
                        "target",
                        tg.label,
                        f"{tg.inputs.get('protocol')}/{port}, health check on {checked}",
                    )
                )
            return
        configs = [
            config
            for nic in (
                (target.resource.inputs.get("virtualMachineProfile") or {}).get("networkProfile")
                or {}
            ).get("networkInterfaceConfigurations")
            or []
            for config in nic.get("ipConfigurations") or []
        ]
        if record.record.type == "azure-native:network:ApplicationGateway":
            pools = {
                p.get("id")
                for c in configs
                for p in c.get("applicationGatewayBackendAddressPools") or []
            }
            name = record.inputs.get("applicationGatewayName")
            mine = [p for p in pools if f"/applicationGateways/{name}/" in str(p)]
            if not mine:
                raise block(
                    "target",
                    record.label,
                    f"{target.resource.label} is in none of its backend pools",
                )
            for settings in record.inputs.get("backendHttpSettingsCollection") or []:
                if _num(settings.get("port")) != port:
                    raise block(
                        "target",
                        f"{record.label} backend settings {settings.get('name')}",
                        f"sends to port {_num(settings.get('port'))}; "
                        f"{target.role.value} listens on {port}",
                    )
            for probe in record.inputs.get("probes") or []:
                if _num(probe.get("port")) not in (port, -1):
                    raise block(
                        "health check",
                        f"{record.label} probe {probe.get('name')}",
                        f"probes port {_num(probe.get('port'))}, not {port}",
                    )
            steps.append(
                Step(
                    "target", record.label, f"backend pool and settings on {port}, probe on {port}"
                )
            )
            return
        pools = {
            p.get("id") for c in configs for p in c.get("loadBalancerBackendAddressPools") or []
        }
        rules = [
            r
            for r in record.inputs.get("loadBalancingRules") or []
            if (r.get("backendAddressPool") or {}).get("id") in pools
        ]
        if not rules:
            raise block(
                "target", record.label, f"no rule sends to a pool holding {target.resource.label}"
            )
        for rule in rules:
            if _num(rule.get("backendPort")) != port:
                raise block(
                    "target",
                    f"{record.label} rule {rule.get('name')}",
                    f"sends to port {_num(rule.get('backendPort'))}; "
                    f"{target.role.value} listens on {port}",
                )
        probes = {p.get("name"): p for p in record.inputs.get("probes") or []}
        for probe in probes.values():
            if _num(probe.get("port")) != port:
                raise block(
                    "health check",
                    f"{record.label} probe {probe.get('name')}",
                    f"probes port {_num(probe.get('port'))}, not {port}",
                )
        steps.append(Step("target", record.label, f"rule to pool on {port}, probe on {port}"))
        # Probes come from the AzureLoadBalancer tag, which the NSG must admit.
        probe_traffic = Traffic([AZURE_PROBE_ADDRESS], tags=frozenset({"AzureLoadBalancer"}))
        own = Traffic(target.ranges)
        for subnet in target.subnets:
            steps.append(
                self.firewalls.nsg(subnet, "Inbound", probe_traffic, own, flow.protocol, port)
            )

    def _trace_flow(self, flow: Flow, stack: str) -> Flow:
        """The flow on the receiver's own port, from the stack's rtcfleet:otlpEndpoint."""
        endpoint = getattr(self.regions[stack], flow.setting or "")
        port = receiver(str(endpoint)).port
        return replace(flow, from_port=port, to_port=port)

    def _trace_receiver(self, flow: Flow, stack: str, origin: Endpoint, steps: list[Step]) -> None:
        """Out of the nodes' firewall and network to the receiver: a name or public address
        over the way out to the internet, a private address over a route that reaches it."""
        found = receiver(str(getattr(self.regions[stack], flow.setting or "")))
        if found.address is None:
            steps.append(Step("dns", found.host, "a name the node resolves"))
        destination = ANYWHERE if found.address is None else IPv4Network(f"{found.address}/32")
        self._egress(flow, origin, Traffic([destination]), steps)
        for subnet in origin.subnets:
            reached = self.router.route(subnet, destination, steps)
            if found.private and reached == "internet":
                raise block(
                    "route", subnet.resource.label, f"{destination} is in no network it reaches"
                )
            if not found.private and reached != "internet":
                raise block(
                    "route", subnet.resource.label, f"no way out to {found.host} (the internet)"
                )

    def _cloud_services(self, flow: Flow, origin: Endpoint, steps: list[Step]) -> None:
        anywhere = Traffic([ANYWHERE])
        if origin.cloud == "aws":
            steps.append(
                self.firewalls.security_groups(
                    origin.groups,
                    "egress",
                    anywhere,
                    flow.protocol,
                    flow.from_port,
                    origin.network_id,
                )
            )
            for subnet in origin.subnets:
                if self.router.route(subnet, ANYWHERE, steps) != "internet":
                    raise block("route", subnet.resource.label, "no way out to the AWS endpoints")
                if flow.azure_service == STORAGE_ENDPOINT:
                    steps.append(self._s3_endpoint(origin, subnet))
            return
        service, acls, allowed = self._azure_service(flow, origin)
        for subnet in origin.subnets:
            endpoints = {
                e.get("service") for e in subnet.resource.inputs.get("serviceEndpoints") or []
            }
            if flow.azure_service not in endpoints:
                raise block(
                    "service endpoint",
                    subnet.resource.label,
                    f"no {flow.azure_service} service endpoint",
                )
            if acls.get("defaultAction") == "Deny" and subnet.id not in allowed:
                raise block(
                    "firewall",
                    service.label,
                    f"network rules do not admit {subnet.resource.label}",
                )
            steps.append(Step("service endpoint", service.label, f"admits {subnet.resource.label}"))
            steps.append(
                self.firewalls.nsg(
                    subnet,
                    "Outbound",
                    anywhere,
                    Traffic([subnet.cidr]),
                    flow.protocol,
                    flow.from_port,
                )
            )

    def _s3_endpoint(self, origin: Endpoint, subnet: Any) -> Step:
        """The subnet's route table carries the VPC's S3 gateway endpoint, the only way the
        media role's write grant holds."""
        table = self.router.aws_route_table(subnet)
        for endpoint in self.model.of("aws:ec2/vpcEndpoint:VpcEndpoint"):
            if (
                endpoint.stack == origin.stack
                and str(endpoint.inputs.get("serviceName", "")).endswith(".s3")
                and table is not None
                and table.id in (endpoint.inputs.get("routeTableIds") or [])
            ):
                return Step("service endpoint", endpoint.label, f"on {table.label}")
        raise block(
            "service endpoint",
            table.label if table else subnet.resource.label,
            "no S3 gateway endpoint: the media role writes recordings only through one",
        )

    def _azure_service(
        self, flow: Flow, origin: Endpoint
    ) -> tuple[Resource, Mapping[str, Any], set[str]]:
        """The stack's resource behind ``flow.azure_service``, its network rules, and the
        subnet ids they admit."""
        if flow.azure_service == STORAGE_ENDPOINT:
            kind, what = "azure-native:storage:StorageAccount", "storage account"
        else:
            kind, what = "azure-native:keyvault:Vault", "Key Vault"
        found = [r for r in self.model.of(kind) if r.stack == origin.stack]
        if not found:
            raise block("endpoint", origin.stack, f"declares no {what}")
        if flow.azure_service == STORAGE_ENDPOINT:
            acls = found[0].inputs.get("networkRuleSet") or {}
            key = "virtualNetworkResourceId"
        else:
            acls = (found[0].inputs.get("properties") or {}).get("networkAcls") or {}
            key = "id"
        allowed = {str(rule.get(key)) for rule in acls.get("virtualNetworkRules") or []}
        return found[0], acls, allowed

    def exposures(self) -> list[Exposure]:
        found: list[Exposure] = []
        for resource in self.model.resources:
            if resource.stack not in self.regions:
                continue
            kind = resource.record.type
            if kind == "aws:ec2/securityGroup:SecurityGroup":
                found += self._sg_exposures(resource)
            elif kind == "azure-native:network:NetworkSecurityGroup":
                found += self._nsg_exposures(resource)
            elif kind == "aws:lb/listener:Listener":
                found += self._listener_exposures(resource)
            elif kind == "azure-native:network:LoadBalancer":
                found += self._azure_lb_exposures(resource)
        return found

    @staticmethod
    def _needed(role: str | None, protocol: str, low: int, high: int) -> bool:
        if role not in {r.value for r in Role}:
            return False
        return (protocol, low, high) in internet_ports(Role(str(role)))

    def _sg_exposures(self, group: Resource) -> list[Exposure]:
        role = group.record.tags.get(ROLE_TAG)
        found = []
        for rule in self.firewalls.sg_rules(group, "ingress"):
            public = [
                c for c in rule.get("cidrBlocks") or [] if (n := network(c)) and not is_private(n)
            ]
            if not public:
                continue
            protocol = str(rule.get("protocol")).lower()
            low, high = _num(rule.get("fromPort")), _num(rule.get("toPort"))
            if not self._needed(role, protocol, low, high):
                found.append(
                    Exposure(
                        group.stack,
                        group.label,
                        str(role),
                        f"{protocol}/{low}-{high}",
                        ",".join(public),
                    )
                )
        return found

    def _nsg_exposures(self, group: Resource) -> list[Exposure]:
        role = group.record.tags.get(ROLE_TAG)
        found = []
        for rule in group.inputs.get("securityRules") or []:
            if rule.get("direction") != "Inbound" or rule.get("access") != "Allow":
                continue
            sources = list(rule.get("sourceAddressPrefixes") or []) + (
                [rule["sourceAddressPrefix"]] if rule.get("sourceAddressPrefix") else []
            )
            public = [
                s
                for s in sources
                if s in ("*", "Internet") or ((n := network(s)) and not is_private(n))
            ]
            if not public:
                continue
            protocol = str(rule.get("protocol")).lower()
            for text in [
                *list(rule.get("destinationPortRanges") or []),
                rule.get("destinationPortRange"),
            ]:
                if not text:
                    continue
                low, _, high = str(text).partition("-")
                if low == "*":
                    low, high = "0", "65535"
                if not self._needed(role, protocol, int(low), int(high or low)):
                    found.append(
                        Exposure(
                            group.stack,
                            f"{group.label} rule {rule.get('name')}",
                            str(role),
                            f"{protocol}/{text}",
                            ",".join(public),
                        )
                    )
        return found

    def _listener_exposures(self, listener: Resource) -> list[Exposure]:
        lb = self.model.by_arn.get(str(listener.inputs.get("loadBalancerArn")))
        if lb is None or lb.inputs.get("internal"):
            return []
        role = lb.record.tags.get(ROLE_TAG)
        protocol = "udp" if str(listener.inputs.get("protocol")).upper() == "UDP" else "tcp"
        port = _num(listener.inputs.get("port"))
        if self._needed(role, protocol, port, port):
            return []
        return [
            Exposure(
                listener.stack,
                listener.label,
                str(role),
                f"{protocol}/{port}",
                "internet-facing load balancer",
            )
        ]

    def _azure_lb_exposures(self, lb: Resource) -> list[Exposure]:
        if not any(
            f.get("publicIPAddress") for f in lb.inputs.get("frontendIPConfigurations") or []
        ):
            return []
        role = lb.record.tags.get(ROLE_TAG)
        found = []
        for rule in lb.inputs.get("loadBalancingRules") or []:
            protocol = str(rule.get("protocol")).lower()
            port = _num(rule.get("frontendPort"))
            if not self._needed(role, protocol, port, port):
                found.append(
                    Exposure(
                        lb.stack,
                        f"{lb.label} rule {rule.get('name')}",
                        str(role),
                        f"{protocol}/{port}",
                        "public frontend",
                    )
                )
        return found


def analyse(
    env: str,
    plans: Mapping[str, Sequence[RecordedResource]],
    regions: Mapping[str, RegionSettings],
) -> ReachReport:
    import time

    started = time.perf_counter()
    analysis = Analysis(plans, regions)
    results, exposures = analysis.run()
    return ReachReport(
        env=env,
        stacks=sorted(plans),
        results=results,
        exposures=exposures,
        firewall_problems=firewall_problems(),
        analysis_seconds=time.perf_counter() - started,
    )
