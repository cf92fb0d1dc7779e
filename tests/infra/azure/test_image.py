"""The Azure image template under mocks: Compute Gallery replicas in every deployment region."""

from __future__ import annotations

import json

import pytest

from infra.image_build import IMAGE_BUILD_SCRIPT, script_in
from infra.plan import runner

SHA = "cd" * 32
LOCATIONS = ["westeurope", "northeurope", "eastus"]
CONFIG = {
    "rtcfleet:version": "1.4.0",
    "rtcfleet:bundleUri": "s3://rtcfleet-bundles/bundles/rtcfleet-node-1.4.0.tar.gz",
    "rtcfleet:bundleSha256": SHA,
    "rtcfleet:homeRegion": "us-east-1",
    "rtcfleet:azureLocation": "westeurope",
    "rtcfleet:azureLocations": LOCATIONS,
    "rtcfleet:azureBundleUri": "https://rtcfleetbundles.blob.core.windows.net/b/node-1.4.0.tar.gz",
}
TEMPLATE = "azure-native:virtualmachineimages:VirtualMachineImageTemplate"


@pytest.fixture(scope="module")
def run():
    return runner.run_program("prod-image", CONFIG)


def _one(run, type_token: str):
    found = [r for r in run.resources if r.type == type_token]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def test_template_builds_debian_with_the_bundle_and_its_health_check(run) -> None:
    template = _one(run, TEMPLATE)
    source = template.inputs["source"]
    assert (source["type"], source["publisher"], source["offer"]) == (
        "PlatformImage",
        "Debian",
        "debian-12",
    )
    fetch, install = template.inputs["customize"]
    assert fetch["type"] == "File" and fetch["sourceUri"] == CONFIG["rtcfleet:azureBundleUri"]
    assert fetch["sha256Checksum"] == SHA
    assert install["type"] == "Shell"
    assert fetch["destination"] == "/tmp/rtcfleet-node.tar.gz"
    assert script_in(install["inline"]) == IMAGE_BUILD_SCRIPT
    assert install["inline"][-1] == (
        "sudo bash /tmp/rtcfleet-build-image.sh --bundle /tmp/rtcfleet-node.tar.gz "
        f"--sha256 {SHA} --cloud azure"
    )
    validation = template.inputs["validate"]
    assert validation["continueDistributeOnFailure"] is False
    assert validation["inVMValidations"][0]["inline"] == ["/opt/rtcfleet/bin/rtcfleet-health-check"]
    identity = _one(run, "azure-native:managedidentity:UserAssignedIdentity")
    assert template.inputs["identity"]["type"] == "UserAssigned"
    assert list(template.inputs["identity"]["userAssignedIdentities"]) == [identity.id]


def test_distribution_replicates_to_every_deployment_region(run) -> None:
    template = _one(run, TEMPLATE)
    (distributor,) = template.inputs["distribute"]
    image = _one(run, "azure-native:compute:GalleryImage")
    assert distributor["type"] == "SharedImage"
    assert distributor["galleryImageId"] == image.id
    targets = distributor["targetRegions"]
    assert [t["name"] for t in targets] == LOCATIONS
    assert all(t["replicaCount"] >= 1 for t in targets)
    assert image.inputs["osState"] == "Generalized" and image.inputs["hyperVGeneration"] == "V2"
    assert run.exports["azureImageVersionId"] == image.id


def test_image_builder_and_azure_template_run_the_same_build_script(run) -> None:
    """One image build script for both clouds (and the rehearsal), not parallel paths."""
    component = _one(run, "aws:imagebuilder/component:Component")
    document = json.loads(component.inputs["data"])
    (build,) = [p for p in document["phases"] if p["name"] == "build"]
    aws_commands = build["steps"][-1]["inputs"]["commands"]
    azure_commands = _one(run, TEMPLATE).inputs["customize"][-1]["inline"]
    assert script_in(aws_commands) == script_in(azure_commands) == IMAGE_BUILD_SCRIPT
    assert [c.removeprefix("sudo ") for c in azure_commands[:-1]] == aws_commands[:-1]
    same_bundle = azure_commands[-1].removeprefix("sudo ").replace("--cloud azure", "--cloud aws")
    assert same_bundle == aws_commands[-1]
