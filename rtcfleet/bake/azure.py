"""Bake the node image on Azure: an Image Builder run that adds a Compute Gallery version.

One bake: create an image template whose File customizer fetches the bundle from its blob
(checking the SHA-256), whose Shell customizer installs it and whose in-VM validation runs its
health check; run it; the run writes version ``<version>`` of the gallery image definition,
replicated to every region of the environment and tagged. Then check the version reached
every region, delete the versions older than the last N, and delete the template (a template
is immutable: each bake makes its own).

The template's identity needs the roles the image stack grants (``infra.azure.image``): read on
the bundle's container, Contributor on the staging group, gallery versions on the gallery.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.image_build import image_build_commands
from rtcfleet.azure_arm import arm_client_options
from rtcfleet.bake.aws import BUNDLE_TAG, IMAGE_TAG, INSTALL_PREFIX, VERSION_TAG, file_sha256

log = logging.getLogger("rtcfleet.bake")

BUNDLE_PATH = "/tmp/rtcfleet-node.tar.gz"
DEBIAN_12 = ("Debian", "debian-12", "12-gen2")
_GALLERY_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class AzureBakeFailed(RuntimeError):
    """The build failed, or its version did not reach every region."""


@dataclass
class AzureBakeSpec:
    """What to bake and where: built in ``location``, replicated to every location."""

    bundle: Path
    # https URL of the bundle's blob, which the template's identity may read
    bundle_url: str
    version: str
    subscription_id: str
    resource_group: str
    gallery: str
    location: str
    locations: Sequence[str]
    # the user-assigned identity the image stack made for Image Builder, and its staging group
    identity_id: str
    staging_group_id: str
    image_definition: str = "rtcfleet-node"
    vm_size: str = "Standard_D2s_v5"
    replicas_per_region: int = 1
    keep: int = 3
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def all_locations(self) -> list[str]:
        return [self.location, *(loc for loc in self.locations if loc != self.location)]

    @property
    def template_name(self) -> str:
        return f"{self.image_definition}-{self.version.replace('.', '-')}"

    def definition_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/galleries/{self.gallery}/images/{self.image_definition}"
        )

    def version_id(self) -> str:
        return f"{self.definition_id()}/versions/{self.version}"


@dataclass
class AzureBakeResult:
    version: str
    bundle_sha256: str
    template: str
    # location -> the gallery version id every scale set there boots (one id, replicated)
    images: dict[str, str]
    removed: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cloud": "azure",
            "version": self.version,
            "bundleSha256": self.bundle_sha256,
            "template": self.template,
            "imageIds": self.images,
            "removed": self.removed,
        }


@dataclass
class AzureBakeClients:
    compute: Any
    imagebuilder: Any

    @classmethod
    def create(
        cls,
        subscription_id: str,
        credential: Any = None,
        base_url: str | None = None,
        **options: Any,
    ) -> AzureBakeClients:
        """``base_url`` points both clients at another Resource Manager (a test double)."""
        from azure.mgmt.compute import ComputeManagementClient
        from azure.mgmt.imagebuilder import ImageBuilderClient

        credential, options = arm_client_options(credential, base_url, **options)
        return cls(
            compute=ComputeManagementClient(credential, subscription_id, **options),
            imagebuilder=ImageBuilderClient(credential, subscription_id, **options),
        )


def install_commands(sha256: str) -> list[str]:
    """The image build script (the one EC2 Image Builder and the Pulumi template run)."""
    return image_build_commands("azure", sha256, sudo=True)


class AzureBaker:
    def __init__(self, spec: AzureBakeSpec, clients: AzureBakeClients) -> None:
        self.spec = spec
        self.clients = clients

    def tags(self, sha256: str) -> dict[str, str]:
        return self.spec.tags | {
            IMAGE_TAG: self.spec.image_definition,
            VERSION_TAG: self.spec.version,
            BUNDLE_TAG: sha256,
        }

    def template(self, sha256: str) -> dict[str, Any]:
        """The image template as Resource Manager takes it (REST shape)."""
        spec = self.spec
        publisher, offer, sku = DEBIAN_12
        return {
            "location": spec.location,
            "tags": self.tags(sha256),
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {spec.identity_id: {}}},
            "properties": {
                "source": {
                    "type": "PlatformImage",
                    "publisher": publisher,
                    "offer": offer,
                    "sku": sku,
                    "version": "latest",
                },
                "customize": [
                    {
                        "type": "File",
                        "name": "bundle",
                        "sourceUri": spec.bundle_url,
                        "sha256Checksum": sha256,
                        "destination": BUNDLE_PATH,
                    },
                    {"type": "Shell", "name": "install", "inline": install_commands(sha256)},
                ],
                "validate": {
                    "continueDistributeOnFailure": False,
                    "inVMValidations": [
                        {
                            "type": "Shell",
                            "name": "health-check",
                            "inline": [f"{INSTALL_PREFIX}/bin/rtcfleet-health-check"],
                        }
                    ],
                },
                "distribute": [
                    {
                        "type": "SharedImage",
                        "galleryImageId": spec.version_id(),
                        "runOutputName": spec.template_name,
                        "artifactTags": self.tags(sha256),
                        "targetRegions": [
                            {"name": location, "replicaCount": spec.replicas_per_region}
                            for location in spec.all_locations
                        ],
                    }
                ],
                "stagingResourceGroup": spec.staging_group_id,
                "vmProfile": {"vmSize": spec.vm_size, "osDiskSizeGB": 30},
                "buildTimeoutInMinutes": 90,
            },
        }

    def check_version(self) -> None:
        """The new version exists, succeeded, and has a replica in every location."""
        spec = self.spec
        version = self.clients.compute.gallery_image_versions.get(
            spec.resource_group, spec.gallery, spec.image_definition, spec.version
        )
        properties = version.properties
        state = getattr(properties, "provisioning_state", None)
        if state != "Succeeded":
            raise AzureBakeFailed(f"version {spec.version}: provisioning state {state}")
        targets = {_location(t.name) for t in properties.publishing_profile.target_regions or ()}
        missing = sorted({_location(loc) for loc in spec.all_locations} - targets)
        if missing:
            raise AzureBakeFailed(f"version {spec.version} has no replica in {missing}")

    def prune(self) -> list[str]:
        """Delete this definition's versions older than the last ``keep``."""
        spec = self.spec
        versions = list(
            self.clients.compute.gallery_image_versions.list_by_gallery_image(
                spec.resource_group, spec.gallery, spec.image_definition
            )
        )
        versions.sort(
            key=lambda v: str(getattr(v.properties.publishing_profile, "published_date", "")),
            reverse=True,
        )
        removed = []
        for old in versions[spec.keep :]:
            self.clients.compute.gallery_image_versions.begin_delete(
                spec.resource_group, spec.gallery, spec.image_definition, old.name
            ).result()
            removed.append(str(old.id))
        return removed

    def bake(self) -> AzureBakeResult:
        spec = self.spec
        if spec.keep < 1:
            raise ValueError("keep must be at least 1: the image just baked stays")
        if not _GALLERY_VERSION.match(spec.version):
            raise ValueError(f"version {spec.version!r}: a gallery version is three integers")
        sha256 = file_sha256(spec.bundle)
        templates = self.clients.imagebuilder.virtual_machine_image_templates
        templates.begin_create_or_update(
            spec.resource_group, spec.template_name, self.template(sha256)
        ).result()
        log.info("template %s created; building", spec.template_name)
        try:
            templates.begin_run(spec.resource_group, spec.template_name).result()
            self.check_version()
        finally:
            templates.begin_delete(spec.resource_group, spec.template_name).result()
        removed = self.prune()
        images = dict.fromkeys(spec.all_locations, spec.version_id())
        return AzureBakeResult(spec.version, sha256, spec.template_name, images, removed)


def _location(name: str) -> str:
    """``West Europe`` and ``westeurope`` are the same location."""
    return name.replace(" ", "").lower()
