"""Launch templates, groups, scaling, drain hook and least-privilege instance profiles."""

from __future__ import annotations

import base64
import json

from tests.infra.aws.helpers import of_type

GROUP = "aws:autoscaling/group:Group"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def _zones(plan, group) -> set[str]:
    subnets = {s.id: s for s in plan.of_type("aws:ec2/subnet:Subnet")}
    return {subnets[i].inputs["availabilityZone"] for i in group.inputs["vpcZoneIdentifiers"]}


def test_gateways_span_private_subnets_of_every_zone(home_plan, dev_plan) -> None:
    gateways = home_plan.named(GROUP, "prod-use1-gateway")
    assert (gateways.inputs["minSize"], gateways.inputs["maxSize"]) == (3, 12)
    assert _zones(home_plan, gateways) == {"us-east-1a", "us-east-1b", "us-east-1c"}
    subnets = {s.id: s.name for s in home_plan.of_type("aws:ec2/subnet:Subnet")}
    assert all("private" in subnets[i] for i in gateways.inputs["vpcZoneIdentifiers"])
    assert len(gateways.inputs["targetGroupArns"]) == 3
    # the target groups probe readiness; the group must not replace machines on it
    assert gateways.inputs["healthCheckType"] == "EC2"
    small = dev_plan.named(GROUP, "dev-use1-gateway")
    assert small.inputs["minSize"] >= 2 and _zones(dev_plan, small) == {"us-east-1a", "us-east-1b"}


def test_media_nodes_in_public_subnets_with_public_ips(home_plan) -> None:
    media = home_plan.named(GROUP, "prod-use1-media")
    assert (media.inputs["minSize"], media.inputs["maxSize"]) == (3, 40)
    subnets = {s.id: s.name for s in home_plan.of_type("aws:ec2/subnet:Subnet")}
    assert all("public" in subnets[i] for i in media.inputs["vpcZoneIdentifiers"])
    template = home_plan.named(TEMPLATE, "prod-use1-media")
    assert template.inputs["networkInterfaces"][0]["associatePublicIpAddress"] == "true"
    gateway_template = home_plan.named(TEMPLATE, "prod-use1-gateway")
    assert gateway_template.inputs["networkInterfaces"][0]["associatePublicIpAddress"] == "false"


def test_media_scaling_tracks_average_cpu(home_plan, plan_with) -> None:
    media = home_plan.named(GROUP, "prod-use1-media")
    policy = home_plan.named("aws:autoscaling/policy:Policy", "prod-use1-media-cpu")
    assert policy.inputs["autoscalingGroupName"] == media.outputs["name"]
    assert policy.inputs["policyType"] == "TargetTrackingScaling"
    tracking = policy.inputs["targetTrackingConfiguration"]
    assert tracking["predefinedMetricSpecification"]["predefinedMetricType"] == (
        "ASGAverageCPUUtilization"
    )
    assert tracking["targetValue"] == 50
    assert policy.inputs["estimatedInstanceWarmup"] == 180
    assert media.inputs["defaultInstanceWarmup"] == 180
    tuned = plan_with("dev-aws-us-east-1", mediaCpuTarget=65, mediaWarmupSeconds=240)
    policy = tuned.named("aws:autoscaling/policy:Policy", "dev-use1-media-cpu")
    assert policy.inputs["targetTrackingConfiguration"]["targetValue"] == 65
    assert policy.inputs["estimatedInstanceWarmup"] == 240


def test_media_termination_hook_holds_nodes_for_drain(home_plan) -> None:
    media = home_plan.named(GROUP, "prod-use1-media")
    hook = home_plan.named("aws:autoscaling/lifecycleHook:LifecycleHook", "prod-use1-media-drain")
    assert hook.inputs["autoscalingGroupName"] == media.outputs["name"]
    assert hook.inputs["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook.inputs["name"] == "rtcfleet-drain"  # the name the drain agent completes
    assert hook.inputs["heartbeatTimeout"] == 300
    assert json.loads(hook.inputs["notificationMetadata"]) == {"drainTimeoutSeconds": 3600}
    hooks = home_plan.of_type("aws:autoscaling/lifecycleHook:LifecycleHook")
    assert [h.name for h in hooks] == ["prod-use1-media-drain"]


def test_launch_templates_imdsv2_encrypted_no_key(home_plan) -> None:
    templates = home_plan.of_type(TEMPLATE)
    assert len(templates) == 2
    for template in templates:
        assert template.inputs["metadataOptions"]["httpTokens"] == "required"
        assert template.inputs["imageId"] == "ami-0f1e2d3c4b5a69788"
        disks = [m["ebs"] for m in template.inputs["blockDeviceMappings"]]
        assert disks and all(d["encrypted"] == "true" for d in disks)
        assert "keyName" not in template.inputs


def test_user_data_says_who_and_where_but_holds_no_secret(home_plan) -> None:
    secrets = {
        r.outputs["result"] for r in home_plan.of_type("random:index/randomPassword:RandomPassword")
    }
    assert len(secrets) == 5
    for role in ("gateway", "media"):
        template = home_plan.named(TEMPLATE, f"prod-use1-{role}")
        script = base64.b64decode(template.inputs["userData"]).decode()
        secret = home_plan.named("aws:secretsmanager/secret:Secret", f"prod-use1-{role}")
        assert f"RTCFLEET_ROLE={role}" in script
        assert "RTCFLEET_REGION=us-east-1" in script
        assert f"RTCFLEET_SETTINGS_PARAMETER=/rtcfleet/prod/us-east-1/{role}/settings" in script
        assert f"RTCFLEET_SECRET_ARN={secret.outputs['arn']}" in script
        assert not any(value in script for value in secrets)


def _statements(plan, name):
    policy = plan.named("aws:iam/rolePolicy:RolePolicy", name)
    return {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}


def test_instance_profiles_reach_only_their_own_secret_settings_and_group(home_plan) -> None:
    for role in ("gateway", "media"):
        statements = _statements(home_plan, f"prod-use1-{role}-node")
        secret = home_plan.named("aws:secretsmanager/secret:Secret", f"prod-use1-{role}")
        parameter = home_plan.named("aws:ssm/parameter:Parameter", f"prod-use1-{role}-settings")
        assert statements["OwnSecret"]["Resource"] == secret.outputs["arn"]
        assert statements["OwnSettings"]["Resource"] == parameter.outputs["arn"]
        assert all(s["Effect"] == "Allow" and s["Resource"] != "*" for s in statements.values())
    media = home_plan.named(GROUP, "prod-use1-media")
    assert "OwnLifecycle" not in _statements(home_plan, "prod-use1-media-node")
    lifecycle = _statements(home_plan, "prod-use1-media-lifecycle")["OwnLifecycle"]
    assert lifecycle["Resource"] == media.outputs["arn"]
    assert set(lifecycle["Action"]) == {
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:RecordLifecycleActionHeartbeat",
        "autoscaling:SetInstanceProtection",
    }
    policies = home_plan.of_type("aws:iam/rolePolicy:RolePolicy")
    assert "prod-use1-gateway-lifecycle" not in {p.name for p in policies}
    attachments = of_type(home_plan.resources, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert {a.inputs["policyArn"] for a in attachments} == {
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    }


def test_nodes_may_read_their_secret_before_their_group_launches_them(home_plan) -> None:
    """A policy naming the group's ARN would exist only after the group's first nodes boot."""
    order = [(r.type, r.name) for r in home_plan.resources]
    for role in ("gateway", "media"):
        read = home_plan.named("aws:iam/rolePolicy:RolePolicy", f"prod-use1-{role}-node")
        assert "OwnLifecycle" not in read.inputs["policy"]
        assert order.index((read.type, read.name)) < order.index((GROUP, f"prod-use1-{role}"))
