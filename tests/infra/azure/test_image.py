"""The Azure image template under mocks: Compute Gallery replicas in every deployment region."""

from __future__ import annotations

import pytest

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
    assert any("install.sh --prefix /opt/rtcfleet" in line for line in install["inline"])
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
