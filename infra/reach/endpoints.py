"""Where each role of a region stack lives in the network: subnets, groups, public or not."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

from infra.flows import Database
from infra.reach.network import NetworkModel, Resource, Subnet, Traffic, block, network
from infra.spec import ROLE_TAG, SUBSCRIBER_TAG, Role
from infra.spot import group_launch_template_id


@dataclass
class Endpoint:
    """One role of one region stack, as the network sees it."""

    stack: str
    cloud: str
    role: Role
    resource: Resource
    subnets: list[Subnet]
    groups: frozenset[str] = frozenset()
    public: bool = False
    # Addresses traffic to it is sent to (a static frontend address), else its subnets.
    addresses: list[IPv4Network] = field(default_factory=list)
    # Azure private DNS zone its name lives in.
    dns_zone: str | None = None
    # Private endpoints of Azure apply their subnet's NSG only when network policies are on.
    nsg_enforced: bool = True

    @property
    def network_id(self) -> str:
        return self.subnets[0].network_id if self.subnets else ""

    @property
    def ranges(self) -> list[IPv4Network]:
        return self.addresses or [s.cidr for s in self.subnets]

    def traffic(self) -> Traffic:
        return Traffic([s.cidr for s in self.subnets], self.groups, self.network_id)


def _role(resource: Resource) -> str | None:
    tags = resource.record.tags
    if ROLE_TAG in tags:
        return tags[ROLE_TAG]
    for spec in resource.inputs.get("tagSpecifications") or []:
        role = (spec.get("tags") or {}).get(ROLE_TAG)
        if role:
            return str(role)
    return None


class Endpoints:
    """Finds a role's endpoint in a stack, in either cloud."""

    def __init__(self, model: NetworkModel, clouds: dict[str, str]) -> None:
        self.model = model
        self.clouds = clouds
        self._cache: dict[tuple[str, Role, Database | None], Endpoint] = {}

    def find(self, stack: str, role: Role, database: Database | None = None) -> Endpoint:
        key = (stack, role, database)
        if key not in self._cache:
            finder = self._aws if self.clouds[stack] == "aws" else self._azure
            self._cache[key] = finder(stack, role, database)
        return self._cache[key]

    def _in(self, stack: str, type_token: str) -> list[Resource]:
        return [r for r in self.model.of(type_token) if r.stack == stack]

    def _subnets(self, ids: Any) -> list[Subnet]:
        return [self.model.subnets[str(i)] for i in ids or [] if str(i) in self.model.subnets]

    def _missing(self, stack: str, role: Role, what: str) -> Exception:
        return block("endpoint", stack, f"declares no {what} for {role.value}")

    def _aws(self, stack: str, role: Role, database: Database | None) -> Endpoint:
        if role in (Role.GATEWAY, Role.MEDIA_NODE):
            templates = {
                r.id: r
                for r in self._in(stack, "aws:ec2/launchTemplate:LaunchTemplate")
                if _role(r) == role.value
            }
            for group in self._in(stack, "aws:autoscaling/group:Group"):
                template = templates.get(str(group_launch_template_id(group.inputs)))
                if template is None:
                    continue
                interfaces = template.inputs.get("networkInterfaces") or [{}]
                groups = set(template.inputs.get("vpcSecurityGroupIds") or [])
                public = False
                for interface in interfaces:
                    groups |= set(interface.get("securityGroups") or [])
                    public = public or str(interface.get("associatePublicIpAddress")) == "true"
                return Endpoint(
                    stack,
                    "aws",
                    role,
                    group,
                    self._subnets(group.inputs.get("vpcZoneIdentifiers")),
                    frozenset(groups),
                    public,
                )
            raise self._missing(stack, role, "Auto Scaling group")
        if role in (Role.CLIENT_LB, Role.ADMIN_LB, Role.SIGNALING_LB):
            for lb in self._in(stack, "aws:lb/loadBalancer:LoadBalancer"):
                if _role(lb) == role.value:
                    return Endpoint(
                        stack,
                        "aws",
                        role,
                        lb,
                        self._subnets(lb.inputs.get("subnets")),
                        frozenset(lb.inputs.get("securityGroups") or []),
                        not lb.inputs.get("internal"),
                    )
            raise self._missing(stack, role, "load balancer")
        if role is Role.REDIS:
            for cache in self._in(stack, "aws:elasticache/replicationGroup:ReplicationGroup"):
                subnets = self._subnet_group(
                    stack,
                    "aws:elasticache/subnetGroup:SubnetGroup",
                    cache.inputs.get("subnetGroupName"),
                )
                return Endpoint(
                    stack,
                    "aws",
                    role,
                    cache,
                    subnets,
                    frozenset(cache.inputs.get("securityGroupIds") or []),
                )
            raise self._missing(stack, role, "replication group")
        instances = self._in(stack, "aws:rds/instance:Instance")
        writers = [i for i in instances if not i.inputs.get("replicateSourceDb")]
        readers = [i for i in instances if i.inputs.get("replicateSourceDb")]
        chosen = (writers if database is Database.WRITER else readers) or []
        if not chosen:
            raise self._missing(stack, role, f"Postgres {database or 'server'}")
        instance = chosen[0]
        subnets = self._subnet_group(
            stack, "aws:rds/subnetGroup:SubnetGroup", instance.inputs.get("dbSubnetGroupName")
        )
        return Endpoint(
            stack,
            "aws",
            role,
            instance,
            subnets,
            frozenset(instance.inputs.get("vpcSecurityGroupIds") or []),
            bool(instance.inputs.get("publiclyAccessible")),
        )

    def _subnet_group(self, stack: str, type_token: str, name: Any) -> list[Subnet]:
        groups = self._in(stack, type_token)
        # A same-region replica names no group: it lives in its source's.
        match = [g for g in groups if name and g.outputs.get("name", g.inputs.get("name")) == name]
        chosen = match or groups
        return self._subnets(chosen[0].inputs.get("subnetIds")) if chosen else []

    def _azure(self, stack: str, role: Role, database: Database | None) -> Endpoint:
        if role in (Role.GATEWAY, Role.MEDIA_NODE):
            for scale_set in self._in(stack, "azure-native:compute:VirtualMachineScaleSet"):
                if _role(scale_set) != role.value:
                    continue
                subnets, public = [], False
                profile = (scale_set.inputs.get("virtualMachineProfile") or {}).get(
                    "networkProfile"
                ) or {}
                for nic in profile.get("networkInterfaceConfigurations") or []:
                    for config in nic.get("ipConfigurations") or []:
                        subnets += self._subnets([(config.get("subnet") or {}).get("id")])
                        public = public or bool(config.get("publicIPAddressConfiguration"))
                return Endpoint(stack, "azure", role, scale_set, subnets, public=public)
            raise self._missing(stack, role, "scale set")
        if role in (Role.CLIENT_LB, Role.ADMIN_LB):
            for gateway in self._in(stack, "azure-native:network:ApplicationGateway"):
                if _role(gateway) != role.value:
                    continue
                ids = [
                    (c.get("subnet") or {}).get("id")
                    for c in gateway.inputs.get("gatewayIPConfigurations") or []
                ]
                public = any(
                    f.get("publicIPAddress")
                    for f in gateway.inputs.get("frontendIPConfigurations") or []
                )
                return Endpoint(stack, "azure", role, gateway, self._subnets(ids), public=public)
            raise self._missing(stack, role, "Application Gateway")
        if role is Role.SIGNALING_LB:
            for lb in self._in(stack, "azure-native:network:LoadBalancer"):
                if _role(lb) != role.value:
                    continue
                frontends = lb.inputs.get("frontendIPConfigurations") or []
                ids = [(f.get("subnet") or {}).get("id") for f in frontends]
                addresses = [
                    n for n in (network(f.get("privateIPAddress")) for f in frontends) if n
                ]
                return Endpoint(stack, "azure", role, lb, self._subnets(ids), addresses=addresses)
            raise self._missing(stack, role, "internal load balancer")
        if role is Role.REDIS:
            caches = {c.id for c in self._in(stack, "azure-native:redis:Redis")}
            for endpoint in self._in(stack, "azure-native:network:PrivateEndpoint"):
                links = endpoint.inputs.get("privateLinkServiceConnections") or []
                if not any(link.get("privateLinkServiceId") in caches for link in links):
                    continue
                subnet_id = (endpoint.inputs.get("subnet") or {}).get("id")
                zone = None
                for group in self._in(stack, "azure-native:network:PrivateDnsZoneGroup"):
                    if group.inputs.get("privateEndpointName") == endpoint.inputs.get(
                        "privateEndpointName"
                    ):
                        configs = group.inputs.get("privateDnsZoneConfigs") or [{}]
                        zone = configs[0].get("privateDnsZoneId")
                subnets = self._subnets([subnet_id])
                enforced = bool(subnets) and subnets[0].resource.inputs.get(
                    "privateEndpointNetworkPolicies"
                ) in ("Enabled", "NetworkSecurityGroupEnabled")
                return Endpoint(
                    stack,
                    "azure",
                    role,
                    endpoint,
                    subnets,
                    dns_zone=zone or "",
                    nsg_enforced=enforced,
                )
            raise self._missing(stack, role, "private endpoint to its cache")
        servers = self._in(stack, "azure-native:dbforpostgresql:Server")
        # A logical-replication subscriber is the region's reader, never a writer.
        subscribers = [s for s in servers if SUBSCRIBER_TAG in s.record.tags]
        writers = [
            s
            for s in servers
            if s.inputs.get("createMode", "Create") != "Replica" and s not in subscribers
        ]
        readers = [s for s in servers if s.inputs.get("createMode") == "Replica"] + subscribers
        chosen = writers if database is Database.WRITER else readers
        if not chosen:
            raise self._missing(stack, role, f"Postgres {database or 'server'}")
        net = chosen[0].inputs.get("network") or {}
        return Endpoint(
            stack,
            "azure",
            role,
            chosen[0],
            self._subnets([net.get("delegatedSubnetResourceId")]),
            public=net.get("publicNetworkAccess") == "Enabled",
            dns_zone=net.get("privateDnsZoneArmResourceId") or "",
        )
