"""The Azure image template under mocks: Compute Gallery replicas in every deployment region."""

from __future__ import annotations

import copy
import json
import re

import pytest

from infra.azure.image import STORAGE_BLOB_DATA_READER
from infra.image_build import IMAGE_BUILD_SCRIPT, script_in
from infra.plan import runner
from infra.plan.checks import evaluate
from infra.policy import POLICIES

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
    "rtcfleet:azureBundleStorageId": (
        "/subscriptions/s/resourceGroups/bundles/providers/Microsoft.Storage/"
        "storageAccounts/rtcfleetbundles"
    ),
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
    assert distributor["galleryImageId"] == f"{image.id}/versions/1.4.0"
    targets = distributor["targetRegions"]
    assert [t["name"] for t in targets] == LOCATIONS
    assert all(t["replicaCount"] >= 1 for t in targets)
    assert image.inputs["osState"] == "Generalized" and image.inputs["hyperVGeneration"] == "V2"
    # region stacks boot exactly this version
    assert run.exports["azureImageVersionId"] == f"{image.id}/versions/1.4.0"
    assert re.fullmatch(
        r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/galleries/"
        r"prod_images/images/rtcfleet-node/versions/1\.4\.0",
        run.exports["azureImageVersionId"],
    )


def test_template_runs_once_its_identity_may_build(run) -> None:
    template = _one(run, TEMPLATE)
    assert template.inputs["autoRun"] == {"state": "Enabled"}
    identity = _one(run, "azure-native:managedidentity:UserAssignedIdentity")
    staging = next(r for r in run.resources if r.name == "prod-image-staging")
    assert template.inputs["stagingResourceGroup"] == staging.id
    grants = {
        r.name.removeprefix("prod-image-builder-"): r.inputs
        for r in run.resources
        if r.type == "azure-native:authorization:RoleAssignment"
    }
    assert {g["principalId"] for g in grants.values()} == {identity.outputs["principalId"]}
    gallery = _one(run, "azure-native:compute:Gallery")
    assert grants["reads-bundle"]["scope"] == (
        f"{CONFIG['rtcfleet:azureBundleStorageId']}/blobServices/default/containers/b"
    )
    assert grants["reads-bundle"]["roleDefinitionId"].endswith(STORAGE_BLOB_DATA_READER)
    assert grants["stages"]["scope"] == staging.id
    assert grants["writes-gallery"]["scope"] == gallery.id
    role = _one(run, "azure-native:authorization:RoleDefinition").inputs
    assert "Microsoft.Compute/galleries/images/versions/write" in role["permissions"][0]["actions"]
    assert role["assignableScopes"] == [role["scope"]] and "/resourceGroups/" in role["scope"]
    # the template waits for the roles to apply: a propagation wait between them
    [wait] = [r for r in run.resources if r.type == "time:index/sleep:Sleep"]
    assert wait.urn in template.dependencies
    assert sum("RoleAssignment" in d for d in wait.dependencies) == 3
    assert evaluate(run.resources, POLICIES) == []


def _template(resources):
    return next(r for r in resources if r.type == TEMPLATE)


def never_runs(resources):
    _template(resources).inputs.pop("autoRun")


def builds_at_once(resources):
    template = _template(resources)
    template.dependencies = [d for d in template.dependencies if "sleep" not in d]


def unnamed_version(resources):
    distributor = _template(resources).inputs["distribute"][0]
    distributor["galleryImageId"] = distributor["galleryImageId"].split("/versions/")[0]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (never_runs, "never runs"),
        (builds_at_once, "holds no role on the staging resource group"),
        (unnamed_version, "unnamed version"),
    ],
)
def test_image_policy_fails_a_template_that_cannot_build(run, breakage, message) -> None:
    resources = copy.deepcopy(run.resources)
    breakage(resources)
    violations = evaluate(resources, POLICIES)
    assert any(
        v.policy == "rtcfleet-azure-image-builder-can-build" and message in v.message
        for v in violations
    ), violations


def test_azure_image_settings_are_checked() -> None:
    from infra.image_stack import image_settings_from_values
    from infra.settings_errors import SettingsError

    values = {**CONFIG, "rtcfleet:version": "1.4.0-rc1"}
    values.pop("rtcfleet:azureBundleStorageId")
    with pytest.raises(SettingsError) as caught:
        image_settings_from_values("prod-image", values)
    assert set(caught.value.keys) == {"rtcfleet:version", "rtcfleet:azureBundleStorageId"}


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
