"""Spot media capacity on AWS: the mixed instances policy of the example prod stack, and its
settings' validation."""

from __future__ import annotations

import pytest

from infra.settings_errors import SettingsError
from infra.spot import SpotSettings, split

GROUP = "aws:autoscaling/group:Group"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def test_media_group_mixes_an_on_demand_base_with_spot(home_plan) -> None:
    media = home_plan.named(GROUP, "prod-use1-media")
    template = home_plan.named(TEMPLATE, "prod-use1-media")
    assert "launchTemplate" not in media.inputs
    assert media.inputs["capacityRebalance"] is True
    policy = media.inputs["mixedInstancesPolicy"]
    assert policy["instancesDistribution"] == {
        "onDemandBaseCapacity": 3,
        "onDemandPercentageAboveBaseCapacity": 20,
        "onDemandAllocationStrategy": "prioritized",
        "spotAllocationStrategy": "price-capacity-optimized",
    }
    spec = policy["launchTemplate"]["launchTemplateSpecification"]
    assert spec["launchTemplateId"] == template.id
    assert [o["instanceType"] for o in policy["launchTemplate"]["overrides"]] == [
        "c7i.2xlarge",
        "c6i.2xlarge",
        "c6a.2xlarge",
        "c5.2xlarge",
    ]
    # the drain hook still holds every machine, spot or not
    hook = home_plan.named("aws:autoscaling/lifecycleHook:LifecycleHook", "prod-use1-media-drain")
    assert hook.inputs["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"


def test_gateways_and_groups_without_spot_launch_their_template(home_plan, dev_plan) -> None:
    for plan, name in ((home_plan, "prod-use1-gateway"), (dev_plan, "dev-use1-media")):
        group = plan.named(GROUP, name)
        assert "mixedInstancesPolicy" not in group.inputs
        assert group.inputs["launchTemplate"]["id"] == plan.named(TEMPLATE, name).id


@pytest.mark.parametrize(
    ("spot", "message"),
    [
        ({"onDemandBase": 2, "instanceTypes": ["c7i.2xlarge"]}, "at least 2 instanceTypes"),
        ({"onDemandBase": 50, "instanceTypes": ["c7i.xlarge", "c6i.xlarge"]}, "above"),
        ({"onDemandBase": 0, "instanceTypes": ["c7i.xlarge", "c6i.xlarge"]}, "at least 1 in prod"),
        ({"onDemandBase": 2, "instanceTypes": ["Standard_F8s_v2", "c6i.xlarge"]}, "not EC2"),
        ({"onDemandBase": 2, "instanceTypes": ["c6i.xlarge", "c6i.xlarge"]}, "twice"),
        (
            {"onDemandBase": 2, "onDemandPercentAboveBase": 120, "instanceTypes": ["c6i.large"]},
            "less than or equal to 100",
        ),
    ],
)
def test_bad_spot_settings_name_the_key(plan_with, spot, message) -> None:
    with pytest.raises(SettingsError) as caught:
        plan_with("prod-aws-us-east-1", mediaSpot=spot)
    assert set(caught.value.keys) == {"rtcfleet:mediaSpot"}
    assert message in str(caught.value)


def test_split_of_a_group_between_on_demand_and_spot() -> None:
    spot = SpotSettings(on_demand_base=3, on_demand_percent_above_base=20, instance_types=["x.y"])
    assert split(3, 40, spot) == (11, 29)
    everything_spot = SpotSettings(on_demand_base=0, instance_types=["x.y"])
    assert split(1, 10, everything_spot) == (0, 10)
    assert split(1, 2, SpotSettings(on_demand_base=5, instance_types=["x.y"])) == (2, 0)
