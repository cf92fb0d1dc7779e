"""CrossGuard policies for spot capacity: gateways stay on-demand; spot media nodes are
replaced before they go (AWS capacity rebalancing) and deleted when evicted (Azure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from infra.policy.props import Report, resource_policy, tags_of
from infra.spec import ROLE_TAG, Role

AUTOSCALING_GROUP = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SCALE_SET = "azure-native:compute:VirtualMachineScaleSet"
SPOT_PRIORITIES = ("Spot", "Low")


def _role(props: Mapping[str, Any]) -> Any:
    return tags_of(props).get(ROLE_TAG)


def _aws_spot_share(props: Mapping[str, Any]) -> str | None:
    """How an Auto Scaling group would run spot machines, or None if it never does."""
    policy = props.get("mixedInstancesPolicy")
    if not isinstance(policy, Mapping):
        return None
    distribution = policy.get("instancesDistribution") or {}
    percent = distribution.get("onDemandPercentageAboveBaseCapacity")
    # AWS's default share above the base is 100 % on-demand
    if percent is not None and percent < 100:
        return f"mixedInstancesPolicy runs {100 - int(percent)} % spot above the base"
    return None


def gateways_on_demand(args: ResourceValidationArgs, report: Report) -> None:
    """Gateways never run on spot: every join goes through them, and they are few and cheap."""
    props = args.props
    if _role(props) != Role.GATEWAY.value:
        return
    if args.resource_type == AUTOSCALING_GROUP:
        share = _aws_spot_share(props)
        if share:
            report(f"gateway group: {share}")
    elif args.resource_type == LAUNCH_TEMPLATE:
        market = props.get("instanceMarketOptions") or {}
        if market.get("marketType") == "spot":
            report("gateway launch template requests spot instances")
    elif args.resource_type == SCALE_SET:
        profile = props.get("virtualMachineProfile") or {}
        if profile.get("priority") in SPOT_PRIORITIES:
            report(f"gateway scale set has {profile.get('priority')} priority")
        if props.get("priorityMixPolicy"):
            report("gateway scale set mixes in spot priority (priorityMixPolicy)")


def spot_leaves_cleanly(args: ResourceValidationArgs, report: Report) -> None:
    """A group with spot machines replaces them ahead of an interruption (AWS capacity
    rebalancing) and an evicted Azure machine is deleted, not left deallocated."""
    props = args.props
    if args.resource_type == AUTOSCALING_GROUP and _aws_spot_share(props):
        if props.get("capacityRebalance") is not True:
            report("a group with spot machines needs capacityRebalance")
    elif args.resource_type == SCALE_SET:
        profile = props.get("virtualMachineProfile") or {}
        if profile.get("priority") in SPOT_PRIORITIES and profile.get("evictionPolicy") != "Delete":
            report(f"spot scale set evicts with {profile.get('evictionPolicy')!r}, not 'Delete'")


CAPACITY_POLICIES: Sequence[ResourceValidationPolicy] = (
    resource_policy("rtcfleet-gateways-on-demand", gateways_on_demand),
    resource_policy("rtcfleet-spot-leaves-cleanly", spot_leaves_cleanly),
)

__all__ = ["CAPACITY_POLICIES"]
