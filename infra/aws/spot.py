"""How an Auto Scaling group launches its machines: the launch template alone (on-demand), or a
mixed instances policy (an on-demand base, then spot across several instance types).

Capacity rebalancing is on with spot: when EC2 signals that a spot node is at elevated risk,
the group starts its replacement first; the node's drain agent treats the same signal, and the
two-minute interruption notice, as an urgent drain.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.spot import SpotSettings


def group_capacity(
    launch_template: aws.ec2.LaunchTemplate, spot: SpotSettings | None
) -> dict[str, Any]:
    """Keyword arguments of ``aws.autoscaling.Group`` that say what it launches."""
    version: pulumi.Output[str] = launch_template.latest_version.apply(str)
    if spot is None:
        return {
            "launch_template": aws.autoscaling.GroupLaunchTemplateArgs(
                id=launch_template.id, version=version
            )
        }
    autoscaling = aws.autoscaling
    return {
        "capacity_rebalance": True,
        "mixed_instances_policy": autoscaling.GroupMixedInstancesPolicyArgs(
            instances_distribution=autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                on_demand_base_capacity=spot.on_demand_base,
                on_demand_percentage_above_base_capacity=spot.on_demand_percent_above_base,
                on_demand_allocation_strategy="prioritized",
                spot_allocation_strategy=spot.allocation_strategy,
            ),
            launch_template=autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                launch_template_specification=autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                    launch_template_id=launch_template.id, version=version
                ),
                overrides=[
                    autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(
                        instance_type=instance_type
                    )
                    for instance_type in spot.instance_types
                ],
            ),
        ),
    }
