"""Auto Scaling groups of gateways and media nodes, from the baked image.

Each group gets a least-privilege instance profile: Session Manager instead of SSH, read access
to its own role's secret and settings parameter only, and (for groups that drain) completing
lifecycle actions on its own group only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.aws.iam import EC2_TRUST_POLICY
from infra.aws.spot import group_capacity
from infra.node_boot import boot_script
from infra.scaling import CpuScaling, Drain
from infra.spec import DRAIN_HOOK_NAME, ROLE_TAG, Role
from infra.spot import SpotSettings

SESSION_MANAGER_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
ROOT_DEVICE = "/dev/xvda"
HEALTH_CHECK_GRACE_SECONDS = 300


@dataclass
class NodeGroupArgs:
    prefix: str
    role: Role
    env: str
    region: str
    image_id: pulumi.Input[str]
    instance_type: str
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    secret_arn: pulumi.Input[str]
    settings_parameter_arn: pulumi.Input[str]
    settings_parameter_name: str
    min_size: int
    max_size: int
    # Media nodes advertise their own public address in ICE candidates (1:1 NAT).
    public_ip: bool = False
    target_group_arns: Sequence[pulumi.Input[str]] = ()
    scaling: CpuScaling | None = None
    drain: Drain | None = None
    # an on-demand base and spot above it (media nodes only; see infra/spot.py)
    spot: SpotSettings | None = None
    volume_gb: int = 30
    tags: dict[str, str] = field(default_factory=dict)


def user_data(role: Role, env: str, region: str, parameter: str, secret_arn: str) -> str:
    """Boot script (base64) telling a node who it is and where its settings and secrets live.

    It carries names and ARNs only; the node reads the values with its instance profile.
    """
    return boot_script(
        role,
        {
            "RTCFLEET_ROLE": role.value,
            "RTCFLEET_ENV": env,
            "RTCFLEET_REGION": region,
            "RTCFLEET_SETTINGS_PARAMETER": parameter,
            "RTCFLEET_SECRET_ARN": secret_arn,
        },
    )


def node_read_policy(secret_arn: str, parameter_arn: str) -> str:
    """What a node reads at first boot: its own secret and settings (granted before launch)."""
    statements: list[dict[str, object]] = [
        {
            "Sid": "OwnSecret",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": secret_arn,
        },
        {
            "Sid": "OwnSettings",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter"],
            "Resource": parameter_arn,
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def node_lifecycle_policy(group_arn: str) -> str:
    """What a draining node does to its own group: hold scale-in, then complete it."""
    statement = {
        "Sid": "OwnLifecycle",
        "Effect": "Allow",
        "Action": [
            "autoscaling:CompleteLifecycleAction",
            "autoscaling:RecordLifecycleActionHeartbeat",
            "autoscaling:SetInstanceProtection",
        ],
        "Resource": group_arn,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


class NodeGroup(pulumi.ComponentResource):
    """One role's machines: profile, launch template, group, and its scaling and drain rules."""

    role: aws.iam.Role
    launch_template: aws.ec2.LaunchTemplate
    group: aws.autoscaling.Group
    scaling_policy: aws.autoscaling.Policy | None
    lifecycle_hook: aws.autoscaling.LifecycleHook | None

    def __init__(
        self, name: str, args: NodeGroupArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:NodeGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        base = f"{args.prefix}-{args.role.value}"
        tags = {**args.tags, ROLE_TAG: args.role.value}

        self.role = aws.iam.Role(
            base,
            assume_role_policy=EC2_TRUST_POLICY,
            description=f"rtcfleet {args.role.value} nodes in {args.region}",
            tags=tags,
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{base}-session-manager",
            role=self.role.name,
            policy_arn=SESSION_MANAGER_POLICY,
            opts=child,
        )
        profile = aws.iam.InstanceProfile(base, role=self.role.name, tags=tags, opts=child)
        # granted before the group exists, so no node boots without leave to read its settings
        read = aws.iam.RolePolicy(
            f"{base}-node",
            role=self.role.id,
            policy=pulumi.Output.all(args.secret_arn, args.settings_parameter_arn).apply(
                lambda values: node_read_policy(values[0], values[1])
            ),
            opts=child,
        )

        boot = pulumi.Output.from_input(args.secret_arn).apply(
            lambda arn: user_data(
                args.role, args.env, args.region, args.settings_parameter_name, arn
            )
        )
        self.launch_template = aws.ec2.LaunchTemplate(
            base,
            image_id=args.image_id,
            instance_type=args.instance_type,
            update_default_version=True,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=1,
                instance_metadata_tags="enabled",
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=ROOT_DEVICE,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=args.volume_gb,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            network_interfaces=[
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    device_index=0,
                    associate_public_ip_address="true" if args.public_ip else "false",
                    security_groups=[args.security_group_id],
                    delete_on_termination="true",
                )
            ],
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            user_data=boot,
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags)
                for kind in ("instance", "volume")
            ],
            tags=tags,
            opts=child,
        )

        self.group = aws.autoscaling.Group(
            base,
            min_size=args.min_size,
            max_size=args.max_size,
            vpc_zone_identifiers=args.subnet_ids,
            **group_capacity(self.launch_template, args.spot),
            target_group_arns=args.target_group_arns,
            # Never "ELB": the target groups probe readiness, and a group that replaced machines
            # on it would replace every gateway of a region whose Redis fails over. The group
            # acts on the machine's own state; the process's liveness is systemd's to restart.
            health_check_type="EC2",
            health_check_grace_period=HEALTH_CHECK_GRACE_SECONDS,
            default_instance_warmup=args.scaling.warmup_seconds if args.scaling else None,
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=90
                ),
            ),
            enabled_metrics=[
                aws.autoscaling.Metric.GROUP_IN_SERVICE_INSTANCES,
                aws.autoscaling.Metric.GROUP_DESIRED_CAPACITY,
            ],
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in tags.items()
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[read]),
        )

        if args.drain is not None:
            aws.iam.RolePolicy(
                f"{base}-lifecycle",
                role=self.role.id,
                policy=self.group.arn.apply(node_lifecycle_policy),
                opts=child,
            )

        self.scaling_policy = None
        if args.scaling is not None:
            self.scaling_policy = aws.autoscaling.Policy(
                f"{base}-cpu",
                autoscaling_group_name=self.group.name,
                policy_type="TargetTrackingScaling",
                estimated_instance_warmup=args.scaling.warmup_seconds,
                target_tracking_configuration=aws.autoscaling.PolicyTargetTrackingConfigurationArgs(
                    predefined_metric_specification=aws.autoscaling.PolicyTargetTrackingConfigurationPredefinedMetricSpecificationArgs(
                        predefined_metric_type="ASGAverageCPUUtilization"
                    ),
                    target_value=float(args.scaling.target_percent),
                ),
                opts=child,
            )

        self.lifecycle_hook = None
        if args.drain is not None:
            self.lifecycle_hook = aws.autoscaling.LifecycleHook(
                f"{base}-drain",
                name=DRAIN_HOOK_NAME,
                autoscaling_group_name=self.group.name,
                lifecycle_transition="autoscaling:EC2_INSTANCE_TERMINATING",
                heartbeat_timeout=args.drain.heartbeat_seconds,
                # A node that stops renewing has finished or hung: terminate it either way.
                default_result="CONTINUE",
                notification_metadata=json.dumps(
                    {"drainTimeoutSeconds": args.drain.timeout_seconds}
                ),
                opts=child,
            )

        self.register_outputs({"groupName": self.group.name, "groupArn": self.group.arn})
