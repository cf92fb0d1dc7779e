"""What a region's media-signaling load balancer is planned to probe, read from a stack's plan.

The local fleet's load-balancer double applies exactly this, so a test of a region starting
from nothing runs against the probe the stack would deploy (path, port, interval, thresholds,
and what the load balancer does when every target is down), on AWS and on Azure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.plan.runner import StackPlan
from infra.spec import ROLE_TAG, Role

TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LOAD_BALANCER = "azure-native:network:LoadBalancer"
SIGNALING_TARGETS_SUFFIX = "-signaling"


@dataclass(frozen=True)
class PlannedProbe:
    cloud: str
    path: str
    port: int
    interval_s: float
    timeout_s: float
    # consecutive passes before a target gets traffic, and failures before it stops
    healthy_threshold: int
    unhealthy_threshold: int
    # with every target down: route to all of them (True) or refuse new flows (False)
    fail_open: bool


def _number(value: Any) -> int:
    return int(float(value))


def signaling_probe(plan: StackPlan) -> PlannedProbe:
    """The planned probe of the region's media-signaling load balancer (AWS or Azure)."""
    for group in plan.of_type(TARGET_GROUP):
        if not str(group.tags.get("Name", "")).endswith(SIGNALING_TARGETS_SUFFIX):
            continue
        check = group.inputs["healthCheck"]
        return PlannedProbe(
            cloud="aws",
            path=check["path"],
            port=_number(check["port"]),
            interval_s=float(check["interval"]),
            timeout_s=float(check["timeout"]),
            healthy_threshold=_number(check["healthyThreshold"]),
            unhealthy_threshold=_number(check["unhealthyThreshold"]),
            # an ALB routes to every target of a group none of whose targets is healthy
            fail_open=True,
        )
    for balancer in plan.of_type(LOAD_BALANCER):
        if balancer.tags.get(ROLE_TAG) != Role.SIGNALING_LB.value:
            continue
        [probe] = balancer.inputs["probes"]
        threshold = _number(probe.get("probeThreshold", 1))
        interval = float(probe["intervalInSeconds"])
        return PlannedProbe(
            cloud="azure",
            path=probe["requestPath"],
            port=_number(probe["port"]),
            interval_s=interval,
            # an Azure probe times out at its interval
            timeout_s=interval,
            healthy_threshold=threshold,
            unhealthy_threshold=threshold,
            # the API's default, when the property is absent, is AllProbedDown
            fail_open=probe.get("noHealthyBackendsBehavior") == "AllProbedUp",
        )
    raise LookupError(f"{plan.stack} plans no media-signaling load balancer")
