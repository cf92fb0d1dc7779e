"""The node image on AWS: EC2 Image Builder bakes the bundle and distributes the AMI.

A component installs the bundle from S3 (checked against its SHA-256) and runs its health
check; the recipe puts it on a Debian base; the infrastructure configuration builds on an
IMDSv2-only instance that may read only the bundle; the distribution copies the AMI to every
region of the deployment. The pipeline rebuilds on demand; one ``Image`` build is part of the
stack, so its AMI ids per region become the stack's ``imageIds`` output the regions read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.aws.iam import EC2_TRUST_POLICY
from infra.image_build import BUNDLE_PATH, INSTALL_PREFIX, image_build_commands
from infra.spec import ROLE_TAG

# Debian publishes its AMIs as public SSM parameters; Image Builder resolves ``ssm:`` itself.
DEBIAN_12 = "ssm:/aws/service/debian/release/12/latest/amd64"
BUILDER_POLICIES = (
    "arn:aws:iam::aws:policy/EC2InstanceProfileForImageBuilder",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
)
IMAGE_ROLE = "image"


@dataclass
class NodeImageArgs:
    prefix: str
    version: str
    home_region: str
    regions: Sequence[str]
    # s3://bucket/key of the bundle from ``rtcfleet bundle``, and its SHA-256
    bundle_uri: str
    bundle_sha256: str
    parent_image: str = DEBIAN_12
    instance_types: Sequence[str] = ("c6i.large",)
    subnet_id: pulumi.Input[str] | None = None
    security_group_ids: Sequence[pulumi.Input[str]] = ()
    volume_gb: int = 30
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def all_regions(self) -> list[str]:
        return [self.home_region, *(r for r in self.regions if r != self.home_region)]

    @property
    def bucket(self) -> str:
        return self.bundle_uri.removeprefix("s3://").split("/", 1)[0]


def component_document(bundle_uri: str, sha256: str) -> str:
    """The AWSTOE document: build runs the image build script, the tests its health check."""
    health = {
        "name": "HealthCheck",
        "action": "ExecuteBash",
        "inputs": {"commands": [f"{INSTALL_PREFIX}/bin/rtcfleet-health-check"]},
    }
    document = {
        "name": "rtcfleet-node",
        "description": "Installs the rtcfleet node bundle",
        "schemaVersion": 1.0,
        "phases": [
            {
                "name": "build",
                "steps": [
                    {
                        "name": "Download",
                        "action": "S3Download",
                        "inputs": [{"source": bundle_uri, "destination": BUNDLE_PATH}],
                    },
                    {
                        "name": "BuildImage",
                        "action": "ExecuteBash",
                        "inputs": {"commands": image_build_commands("aws", sha256)},
                    },
                ],
            },
            {"name": "validate", "steps": [health]},
            {"name": "test", "steps": [health]},
        ],
    }
    return json.dumps(document, indent=2)


def bundle_read_policy(bundle_uri: str) -> str:
    """The builder may read the one bundle object and nothing else in S3."""
    path = bundle_uri.removeprefix("s3://")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Bundle",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": f"arn:aws:s3:::{path}",
                }
            ],
        }
    )


class NodeImage(pulumi.ComponentResource):
    """Component, recipe, infrastructure, distribution, pipeline and one build of the AMI."""

    component: aws.imagebuilder.Component
    recipe: aws.imagebuilder.ImageRecipe
    infrastructure: aws.imagebuilder.InfrastructureConfiguration
    distribution: aws.imagebuilder.DistributionConfiguration
    pipeline: aws.imagebuilder.ImagePipeline
    image: aws.imagebuilder.Image
    image_ids: pulumi.Output[dict[str, str]]

    def __init__(
        self, name: str, args: NodeImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:NodeImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        base = f"{args.prefix}-node"
        tags = {**args.tags, ROLE_TAG: IMAGE_ROLE, "rtcfleet:version": args.version}

        role = aws.iam.Role(
            f"{base}-builder",
            assume_role_policy=EC2_TRUST_POLICY,
            description="rtcfleet image builder instances",
            tags=tags,
            opts=child,
        )
        for index, policy in enumerate(BUILDER_POLICIES):
            aws.iam.RolePolicyAttachment(
                f"{base}-builder-{index}", role=role.name, policy_arn=policy, opts=child
            )
        aws.iam.RolePolicy(
            f"{base}-builder-bundle",
            role=role.id,
            policy=bundle_read_policy(args.bundle_uri),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{base}-builder", role=role.name, tags=tags, opts=child)

        self.component = aws.imagebuilder.Component(
            f"{base}-bundle",
            name=f"{base}-bundle",
            platform="Linux",
            version=args.version,
            data=component_document(args.bundle_uri, args.bundle_sha256),
            description="rtcfleet node bundle: install and health check",
            tags=tags,
            opts=child,
        )
        self.recipe = aws.imagebuilder.ImageRecipe(
            base,
            name=base,
            version=args.version,
            parent_image=args.parent_image,
            components=[
                aws.imagebuilder.ImageRecipeComponentArgs(component_arn=self.component.arn)
            ],
            block_device_mappings=[
                aws.imagebuilder.ImageRecipeBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.imagebuilder.ImageRecipeBlockDeviceMappingEbsArgs(
                        volume_size=args.volume_gb,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            working_directory="/tmp",
            # Debian ships no SSM agent: keep the one Image Builder installs, for Session Manager
            systems_manager_agent=aws.imagebuilder.ImageRecipeSystemsManagerAgentArgs(
                uninstall_after_build=False
            ),
            tags=tags,
            opts=child,
        )
        self.infrastructure = aws.imagebuilder.InfrastructureConfiguration(
            base,
            name=base,
            instance_types=list(args.instance_types),
            instance_profile_name=profile.name,
            subnet_id=args.subnet_id,
            security_group_ids=list(args.security_group_ids) or None,
            terminate_instance_on_failure=True,
            instance_metadata_options=(
                aws.imagebuilder.InfrastructureConfigurationInstanceMetadataOptionsArgs(
                    http_tokens="required", http_put_response_hop_limit=1
                )
            ),
            resource_tags=tags,
            tags=tags,
            opts=child,
        )
        ami_tags = {**tags, "rtcfleet:image": "rtcfleet-node"}
        self.distribution = aws.imagebuilder.DistributionConfiguration(
            base,
            name=base,
            distributions=[
                aws.imagebuilder.DistributionConfigurationDistributionArgs(
                    region=region,
                    ami_distribution_configuration=(
                        aws.imagebuilder.DistributionConfigurationDistributionAmiDistributionConfigurationArgs(
                            name=f"rtcfleet-node-{args.version}-{{{{ imagebuilder:buildDate }}}}",
                            description=f"rtcfleet node services {args.version}",
                            ami_tags=ami_tags,
                        )
                    ),
                )
                for region in args.all_regions
            ],
            tags=tags,
            opts=child,
        )
        tests = aws.imagebuilder.ImagePipelineImageTestsConfigurationArgs(
            image_tests_enabled=True, timeout_minutes=60
        )
        self.pipeline = aws.imagebuilder.ImagePipeline(
            base,
            name=base,
            image_recipe_arn=self.recipe.arn,
            infrastructure_configuration_arn=self.infrastructure.arn,
            distribution_configuration_arn=self.distribution.arn,
            image_tests_configuration=tests,
            status="ENABLED",
            tags=tags,
            opts=child,
        )
        self.image = aws.imagebuilder.Image(
            base,
            image_recipe_arn=self.recipe.arn,
            infrastructure_configuration_arn=self.infrastructure.arn,
            distribution_configuration_arn=self.distribution.arn,
            image_tests_configuration=aws.imagebuilder.ImageImageTestsConfigurationArgs(
                image_tests_enabled=True, timeout_minutes=60
            ),
            tags=tags,
            opts=child,
        )
        self.image_ids = self.image.output_resources.apply(_amis_by_region)
        self.register_outputs({"imageIds": self.image_ids, "pipelineArn": self.pipeline.arn})


def _amis_by_region(resources: Any) -> dict[str, str]:
    amis: dict[str, str] = {}
    for resource in resources or ():
        for ami in resource.amis or ():
            if ami.region and ami.image:
                amis[ami.region] = ami.image
    return amis
