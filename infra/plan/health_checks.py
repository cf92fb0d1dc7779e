"""The health checks a planned stack declares, per node role, read from its recorded resources.

AWS: each target group's health check, for the roles whose Auto Scaling groups register in it.
Azure: each load balancer probe, for the roles whose scale sets sit in its backend pools, and
each scale set's Application Health extension. Whatever the stacks declare is what a booted node
of that role must answer, so checks are read here, never restated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from infra.plan.mocks import RecordedResource
from infra.spec import ROLE_TAG

AWS_TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
AWS_GROUP = "aws:autoscaling/group:Group"
AZURE_LOAD_BALANCER = "azure-native:network:LoadBalancer"
AZURE_APPLICATION_GATEWAY = "azure-native:network:ApplicationGateway"
AZURE_SCALE_SET = "azure-native:compute:VirtualMachineScaleSet"


@dataclass(frozen=True)
class DeclaredHealthCheck:
    role: str
    source: str  # the resource that declares it
    protocol: str  # "http" or "tcp"
    port: int
    path: str | None = None
    matcher: str = "200"
    # probed from inside the machine (Azure's Application Health extension asks localhost)
    local: bool = False


def _aws(resources: list[RecordedResource]) -> list[DeclaredHealthCheck]:
    roles_by_target: dict[str, set[str]] = {}
    for group in (r for r in resources if r.type == AWS_GROUP):
        role = group.tags.get(ROLE_TAG)
        for arn in group.inputs.get("targetGroupArns") or ():
            if role:
                roles_by_target.setdefault(str(arn), set()).add(role)
    checks = []
    for target in (r for r in resources if r.type == AWS_TARGET_GROUP):
        check = target.inputs.get("healthCheck") or {}
        if check.get("enabled") is False:
            continue
        port = check.get("port", "traffic-port")
        port = target.inputs["port"] if port == "traffic-port" else port
        protocol = str(check.get("protocol") or target.inputs.get("protocol", "HTTP")).lower()
        for role in sorted(roles_by_target.get(str(target.outputs.get("arn")), ())):
            checks.append(
                DeclaredHealthCheck(
                    role=role,
                    source=target.name,
                    protocol="tcp" if protocol == "tcp" else "http",
                    port=int(float(port)),
                    path=check.get("path") if protocol != "tcp" else None,
                    matcher=str(check.get("matcher") or "200"),
                )
            )
    return checks


def _scale_set_role(scale_set: RecordedResource) -> str | None:
    role = (scale_set.inputs.get("tags") or {}).get(ROLE_TAG)
    return str(role) if role else None


def _azure(resources: list[RecordedResource]) -> list[DeclaredHealthCheck]:
    scale_sets = [r for r in resources if r.type == AZURE_SCALE_SET]
    checks = []
    balancers = (r for r in resources if r.type in (AZURE_LOAD_BALANCER, AZURE_APPLICATION_GATEWAY))
    for balancer in balancers:
        # a scale set is behind this balancer when its NICs name one of its backend pools
        members = [
            s
            for s in scale_sets
            if balancer.id and balancer.id in json.dumps(s.inputs, default=str)
        ]
        for probe in balancer.inputs.get("probes") or ():
            protocol = str(probe.get("protocol", "Tcp")).lower()
            for scale_set in members:
                role = _scale_set_role(scale_set)
                if role:
                    checks.append(
                        DeclaredHealthCheck(
                            role=role,
                            source=f"{balancer.name}/{probe.get('name')}",
                            protocol="tcp" if protocol == "tcp" else "http",
                            port=int(float(probe["port"])),
                            path=probe.get("requestPath") or probe.get("path"),
                            matcher=str(
                                ((probe.get("match") or {}).get("statusCodes") or ["200"])[0]
                            ),
                        )
                    )
    for scale_set in scale_sets:
        profile: dict[str, Any] = scale_set.inputs.get("virtualMachineProfile") or {}
        for extension in (profile.get("extensionProfile") or {}).get("extensions") or ():
            if str(extension.get("type", "")).startswith("ApplicationHealth"):
                settings = extension.get("settings") or {}
                role = _scale_set_role(scale_set)
                if role:
                    checks.append(
                        DeclaredHealthCheck(
                            role=role,
                            source=f"{scale_set.name}/{extension.get('name')}",
                            protocol=str(settings.get("protocol", "http")).lower(),
                            port=int(float(settings["port"])),
                            path=settings.get("requestPath"),
                            local=True,
                        )
                    )
    return checks


def declared_health_checks(resources: list[RecordedResource]) -> list[DeclaredHealthCheck]:
    """Every health check in a plan's resources, AWS and Azure alike."""
    return _aws(resources) + _azure(resources)
