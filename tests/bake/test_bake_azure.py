"""`rtcfleet bake azure` through the Azure SDK against a local Resource Manager double.

The double plays Image Builder's part of a run: when the template runs, it writes the gallery
version its distributor names, with a replica in each target region and the artifact tags.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtcfleet.bake import azure as bake_azure
from rtcfleet.bake.azure import AzureBakeClients, AzureBakeFailed, AzureBaker, AzureBakeSpec
from rtcfleet.cli import app
from tests.drill.arm_double import ArmDouble, StaticToken

SUB = "5ca1ab1e-0000-4000-8000-0000000ba6e0"
GROUP = "rtcfleet-prod-images"
LOCATIONS = ["westeurope", "northeurope", "eastus"]
GALLERY = (
    f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Compute/galleries/prod_images"
)
DEFINITION = f"{GALLERY}/images/rtcfleet-node"
TEMPLATES = (
    f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/"
    "Microsoft.VirtualMachineImages/imageTemplates"
)


def spec(bundle: Path, version: str = "1.5.0", keep: int = 2, **changes: Any) -> AzureBakeSpec:
    values: dict[str, Any] = {
        "bundle": bundle,
        "bundle_url": "https://rtcfleetbundles.blob.core.windows.net/b/node-1.5.0.tar.gz",
        "version": version,
        "subscription_id": SUB,
        "resource_group": GROUP,
        "gallery": "prod_images",
        "location": "westeurope",
        "locations": LOCATIONS,
        "identity_id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/"
        "userAssignedIdentities/prod-image-builder",
        "staging_group_id": f"/subscriptions/{SUB}/resourceGroups/rtcfleet-prod-image-staging",
        "keep": keep,
        "tags": {"rtcfleet:env": "prod"},
    }
    return AzureBakeSpec(**(values | changes))


def image_builder_runs(double: ArmDouble, replicate_to: list[str] | None = None) -> None:
    """On every template run, write the version its distributor names (as Image Builder does)."""

    def write_version(template_id: str) -> None:
        template = double.resources[template_id.lower()]
        [distributor] = template["properties"]["distribute"]
        regions = replicate_to or [t["name"] for t in distributor["targetRegions"]]
        double.put(
            distributor["galleryImageId"],
            {
                "name": distributor["galleryImageId"].rsplit("/", 1)[-1],
                "location": template["location"],
                "tags": distributor["artifactTags"],
                "properties": {
                    "provisioningState": "Succeeded",
                    "publishingProfile": {
                        "publishedDate": datetime.datetime.now(datetime.UTC).isoformat(),
                        "targetRegions": [{"name": r, "regionalReplicaCount": 1} for r in regions],
                    },
                },
            },
        )

    for version in ("1-5-0", "1-6-0"):
        double.on[f"run {TEMPLATES.lower()}/rtcfleet-node-{version}"] = write_version


@pytest.fixture
def double(tmp_path: Path) -> Iterator[ArmDouble]:
    server = ArmDouble(tmp_path).start()
    for number, date in (("1.2.0", "2026-09-01"), ("1.3.0", "2026-10-01"), ("1.4.0", "2026-11-01")):
        server.put(
            f"{DEFINITION}/versions/{number}",
            {
                "name": number,
                "properties": {
                    "provisioningState": "Succeeded",
                    "publishingProfile": {"publishedDate": f"{date}T00:00:00+00:00"},
                },
            },
        )
    yield server
    server.stop()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "rtcfleet-node-1.5.0.tar.gz"
    path.write_bytes(b"not really a bundle, but its digest is what the template checks")
    return path


def clients(double: ArmDouble) -> AzureBakeClients:
    return AzureBakeClients.create(
        SUB, StaticToken(), double.url, connection_verify=str(double.ca_file), polling_interval=0
    )


def test_bake_builds_a_replicated_tagged_version_and_keeps_the_last_n(
    double: ArmDouble, bundle: Path
) -> None:
    image_builder_runs(double)
    result = AzureBaker(spec(bundle), clients(double)).bake()

    version = f"{DEFINITION}/versions/1.5.0"
    assert result.images == dict.fromkeys(LOCATIONS, version)
    stored = double.resources[version.lower()]
    assert [t["name"] for t in stored["properties"]["publishingProfile"]["targetRegions"]] == (
        LOCATIONS
    )
    assert stored["tags"]["rtcfleet:version"] == "1.5.0"
    assert stored["tags"]["rtcfleet:bundle-sha256"] == result.bundle_sha256
    assert stored["tags"]["rtcfleet:env"] == "prod"
    # keep=2: the new version and 1.4.0 stay, the two older ones are deleted
    left = sorted(k.rsplit("/", 1)[-1] for k in double.resources if "/versions/" in k)
    assert left == ["1.4.0", "1.5.0"]
    assert sorted(r.rsplit("/", 1)[-1] for r in result.removed) == ["1.2.0", "1.3.0"]

    template = f"{TEMPLATES}/rtcfleet-node-1-5-0"
    put = next(r for r in double.requests if r.method == "PUT")
    assert put.path == template
    properties = put.body["properties"]
    assert properties["distribute"][0]["galleryImageId"] == version
    assert properties["customize"][0]["sha256Checksum"] == result.bundle_sha256
    assert properties["stagingResourceGroup"].endswith("/rtcfleet-prod-image-staging")
    assert list(put.body["identity"]["userAssignedIdentities"]) == [spec(bundle).identity_id]
    assert double.calls() == [
        f"PUT {template}",
        f"GET {template}",  # the create's final read
        f"POST {template}/run",
        f"GET {version}",
        f"DELETE {template}",
        f"GET {DEFINITION}/versions",
        f"DELETE {DEFINITION}/versions/1.3.0",
        f"DELETE {DEFINITION}/versions/1.2.0",
    ]
    assert all(op.polls >= 2 for op in double.operations.values())


def test_a_version_missing_a_region_fails_the_bake_and_removes_nothing(
    double: ArmDouble, bundle: Path
) -> None:
    image_builder_runs(double, replicate_to=["westeurope", "northeurope"])
    with pytest.raises(AzureBakeFailed, match=r"no replica in \['eastus'\]"):
        AzureBaker(spec(bundle), clients(double)).bake()
    assert f"{TEMPLATES}/rtcfleet-node-1-5-0".lower() not in double.resources, "template left"
    assert sum("/versions/1.2.0" in k for k in double.resources) == 1, "pruned after a failure"


def test_bad_versions_are_refused_before_any_call(double: ArmDouble, bundle: Path) -> None:
    for bad, message in (({"version": "1.5.0-rc1"}, "three integers"), ({"keep": 0}, "keep")):
        with pytest.raises(ValueError, match=message):
            AzureBaker(spec(bundle, **bad), clients(double)).bake()
    assert double.requests == []


def test_bake_azure_command_prints_the_report_set_images_reads(
    double: ArmDouble, bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image_builder_runs(double)
    pointed = clients(double)
    monkeypatch.setattr(
        bake_azure.AzureBakeClients, "create", classmethod(lambda cls, sub: pointed)
    )
    base = spec(bundle)
    result = CliRunner().invoke(
        app,
        ["bake", "azure", "--bundle", str(bundle), "--bundle-url", base.bundle_url,
         "--subscription", SUB, "--resource-group", GROUP, "--gallery", "prod_images",
         "--location", "westeurope", "--region", "northeurope", "--region", "eastus",
         "--identity", base.identity_id, "--staging-group", base.staging_group_id,
         "--version", "1.6.0", "--keep", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["cloud"] == "azure" and report["version"] == "1.6.0"
    assert report["imageIds"]["eastus"] == f"{DEFINITION}/versions/1.6.0"
    assert [r.rsplit("/", 1)[-1] for r in report["removed"]] == ["1.2.0"]

    # the pull request path: stacks of each Azure region move to the new version
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    for stack in ("prod-azure-westeurope", "prod-azure-northeurope"):
        text = (Path(__file__).resolve().parents[2] / "stacks" / f"Pulumi.{stack}.yaml").read_text()
        (stacks / f"Pulumi.{stack}.yaml").write_text(text)
    (tmp_path / "bake.json").write_text(json.dumps(report))
    moved = CliRunner().invoke(
        app,
        ["stacks", "set-images", "--bake-report", str(tmp_path / "bake.json"),
         "--stacks-dir", str(stacks)],
    )  # fmt: skip
    assert moved.exit_code == 0, moved.output
    assert moved.stdout.split() == ["prod-azure-northeurope", "prod-azure-westeurope"]
    for stack in ("prod-azure-westeurope", "prod-azure-northeurope"):
        text = (stacks / f"Pulumi.{stack}.yaml").read_text()
        assert f"rtcfleet:imageId: {DEFINITION}/versions/1.6.0\n" in text
        assert "# Production Azure" in text, "comments kept"
