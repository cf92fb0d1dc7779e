"""The ``<env>-image`` stack under mocks: Image Builder resources, distribution to every region,
and region stacks that boot the AMI the image stack built for them."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from infra.image_build import IMAGE_BUILD_SCRIPT, script_in
from infra.plan import runner
from infra.plan.mocks import RecordingMocks
from infra.settings_errors import SettingsError
from tests.infra.conftest import example_values

SHA = "ab" * 32
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
IMAGE_CONFIG = {
    "rtcfleet:version": "1.4.0",
    "rtcfleet:bundleUri": "s3://rtcfleet-bundles/bundles/rtcfleet-node-1.4.0.tar.gz",
    "rtcfleet:bundleSha256": SHA,
    "rtcfleet:homeRegion": "us-east-1",
    "rtcfleet:regions": REGIONS,
}


class ImageBuilderMocks(RecordingMocks):
    """Answers an Image Builder build with one AMI per region of its distribution."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == "aws:imagebuilder/image:Image":
            arn = args.inputs["distributionConfigurationArn"]
            distribution = next(
                r for r in self.resources if r.outputs.get("arn") == arn and r.custom
            )
            amis = [
                {"region": d["region"], "image": f"ami-0{i:016x}"}
                for i, d in enumerate(distribution.inputs["distributions"], 1)
            ]
            outputs = {**outputs, "outputResources": [{"amis": amis}]}
            self.resources[-1].outputs["outputResources"] = outputs["outputResources"]
        return resource_id, outputs


@pytest.fixture
def image_run(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(runner, "RecordingMocks", ImageBuilderMocks)
    return runner.run_program("prod-image", IMAGE_CONFIG)


def _one(run, type_token: str):
    found = [r for r in run.resources if r.type == type_token]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def test_component_installs_the_bundle_from_s3_and_checks_it(image_run) -> None:
    component = _one(image_run, "aws:imagebuilder/component:Component")
    assert component.inputs["platform"] == "Linux"
    assert component.inputs["version"] == "1.4.0"
    document = json.loads(component.inputs["data"])
    phases = {p["name"]: p["steps"] for p in document["phases"]}
    download, install = phases["build"]
    assert download["action"] == "S3Download"
    assert download["inputs"][0]["source"] == IMAGE_CONFIG["rtcfleet:bundleUri"]
    assert download["inputs"][0]["destination"] == "/tmp/rtcfleet-node.tar.gz"
    commands = install["inputs"]["commands"]
    assert script_in(commands) == IMAGE_BUILD_SCRIPT
    assert commands[-1] == (
        "bash /tmp/rtcfleet-build-image.sh --bundle /tmp/rtcfleet-node.tar.gz "
        f"--sha256 {SHA} --cloud aws"
    )
    for phase in ("validate", "test"):
        assert phases[phase][0]["inputs"]["commands"] == ["/opt/rtcfleet/bin/rtcfleet-health-check"]


def test_recipe_on_debian_with_an_encrypted_disk(image_run) -> None:
    recipe = _one(image_run, "aws:imagebuilder/imageRecipe:ImageRecipe")
    component = _one(image_run, "aws:imagebuilder/component:Component")
    assert recipe.inputs["parentImage"] == "ssm:/aws/service/debian/release/12/latest/amd64"
    assert [c["componentArn"] for c in recipe.inputs["components"]] == [component.outputs["arn"]]
    ebs = recipe.inputs["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] == "true" and ebs["volumeType"] == "gp3"
    # Debian has no SSM agent of its own: the one Image Builder installs stays in the AMI
    assert recipe.inputs["systemsManagerAgent"] == {"uninstallAfterBuild": False}


def test_builder_runs_imdsv2_only_and_reads_only_the_bundle(image_run) -> None:
    infra = _one(
        image_run, "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration"
    )
    assert infra.inputs["instanceMetadataOptions"]["httpTokens"] == "required"
    assert infra.inputs["terminateInstanceOnFailure"] is True
    profile = _one(image_run, "aws:iam/instanceProfile:InstanceProfile")
    assert infra.inputs["instanceProfileName"] == profile.outputs["name"]
    policy = json.loads(_one(image_run, "aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    assert policy["Statement"] == [
        {
            "Sid": "Bundle",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": "arn:aws:s3:::rtcfleet-bundles/bundles/rtcfleet-node-1.4.0.tar.gz",
        }
    ]


def test_distribution_to_every_deployment_region_and_pipeline(image_run) -> None:
    distribution = _one(
        image_run, "aws:imagebuilder/distributionConfiguration:DistributionConfiguration"
    )
    regions = [d["region"] for d in distribution.inputs["distributions"]]
    assert regions == REGIONS
    for item in distribution.inputs["distributions"]:
        ami = item["amiDistributionConfiguration"]
        assert ami["name"] == "rtcfleet-node-1.4.0-{{ imagebuilder:buildDate }}"
        assert ami["amiTags"]["rtcfleet:version"] == "1.4.0"
        assert ami["amiTags"]["rtcfleet:image"] == "rtcfleet-node"
    pipeline = _one(image_run, "aws:imagebuilder/imagePipeline:ImagePipeline")
    recipe = _one(image_run, "aws:imagebuilder/imageRecipe:ImageRecipe")
    assert pipeline.inputs["imageRecipeArn"] == recipe.outputs["arn"]
    assert pipeline.inputs["distributionConfigurationArn"] == distribution.outputs["arn"]
    assert pipeline.inputs["imageTestsConfiguration"]["imageTestsEnabled"] is True
    image = _one(image_run, "aws:imagebuilder/image:Image")
    assert image.inputs["distributionConfigurationArn"] == distribution.outputs["arn"]
    assert set(image_run.exports["imageIds"]) == set(REGIONS)
    assert all(r.region == "us-east-1" for r in image_run.resources if r.type.startswith("aws:"))


def test_region_stack_boots_the_image_stacks_ami(home_plan, image_run) -> None:
    values = example_values("prod-aws-eu-west-1")
    values.pop("rtcfleet:imageId")
    values["rtcfleet:imageStack"] = "prod-image"
    values.pop("rtcfleet:peerStacks")  # outputs of the stacks named here only
    run = runner.run_program(
        "prod-aws-eu-west-1",
        values,
        stack_outputs={"prod-aws-us-east-1": home_plan.exports, "prod-image": image_run.exports},
    )
    templates = [r for r in run.resources if r.type == "aws:ec2/launchTemplate:LaunchTemplate"]
    assert len(templates) == 2
    assert {t.inputs["imageId"] for t in templates} == {image_run.exports["imageIds"]["eu-west-1"]}


def test_image_settings_errors_name_the_key() -> None:
    from infra.image_stack import image_settings_from_values

    with pytest.raises(SettingsError) as caught:
        image_settings_from_values(
            "prod-image",
            {**IMAGE_CONFIG, "rtcfleet:bundleSha256": "nope", "rtcfleet:regions": ["mars-1"]},
        )
    assert sorted(caught.value.keys) == ["rtcfleet:bundleSha256", "rtcfleet:regions"]
