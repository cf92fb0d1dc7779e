"""The node image on Azure: an Azure Image Builder template that bakes the bundle into a
Compute Gallery image with replicas in every region of the deployment.

The template's identity may read the bundle's blob and write the gallery image only. A File
customizer fetches the bundle (Azure Image Builder checks its SHA-256), a Shell customizer
runs the image build script on it (the one EC2 Image Builder runs), and an in-VM validation
runs its health check before distribution. Each build adds a version to the gallery image
definition; scale sets reference the definition, so they boot its latest version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from infra.image_build import BUNDLE_PATH, INSTALL_PREFIX, image_build_commands
from infra.spec import ROLE_TAG

vmi = azure_native.virtualmachineimages
compute = azure_native.compute

IMAGE_ROLE = "image"
DEBIAN_12 = ("Debian", "debian-12", "12-gen2")


@dataclass
class AzureImageArgs:
    prefix: str
    version: str
    resource_group_name: pulumi.Input[str]
    location: str
    # every region of the deployment gets a replica (the build location included)
    locations: Sequence[str]
    # https URL of the bundle blob (the template's identity reads it) and its SHA-256
    bundle_uri: str
    bundle_sha256: str
    identity_id: pulumi.Input[str]
    replicas_per_region: int = 1
    vm_size: str = "Standard_D2s_v5"
    base: tuple[str, str, str] = DEBIAN_12
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def all_locations(self) -> list[str]:
        return [self.location, *(loc for loc in self.locations if loc != self.location)]


class AzureNodeImage(pulumi.ComponentResource):
    """Gallery, image definition, and the image template that builds versions into it."""

    gallery: compute.Gallery
    image_definition: compute.GalleryImage
    template: vmi.VirtualMachineImageTemplate

    def __init__(
        self, name: str, args: AzureImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:NodeImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {**args.tags, ROLE_TAG: IMAGE_ROLE, "rtcfleet:version": args.version}
        gallery_name = args.prefix.replace("-", "_") + "_images"

        self.gallery = compute.Gallery(
            f"{args.prefix}-gallery",
            gallery_name=gallery_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            description="rtcfleet node images",
            tags=tags,
            opts=child,
        )
        self.image_definition = compute.GalleryImage(
            f"{args.prefix}-node",
            gallery_image_name="rtcfleet-node",
            gallery_name=self.gallery.name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            os_type=compute.OperatingSystemTypes.LINUX,
            os_state=compute.OperatingSystemStateTypes.GENERALIZED,
            hyper_v_generation=compute.HyperVGeneration.V2,
            identifier=compute.GalleryImageIdentifierArgs(
                publisher="rtcfleet", offer="rtcfleet-node", sku=args.base[1]
            ),
            tags=tags,
            opts=child,
        )
        publisher, offer, sku = args.base
        health = f"{INSTALL_PREFIX}/bin/rtcfleet-health-check"
        self.template = vmi.VirtualMachineImageTemplate(
            f"{args.prefix}-node",
            image_template_name=f"{args.prefix}-node-{args.version.replace('+', '-')}",
            resource_group_name=args.resource_group_name,
            location=args.location,
            identity=vmi.ImageTemplateIdentityArgs(
                type=vmi.ResourceIdentityType.USER_ASSIGNED,
                user_assigned_identities=[args.identity_id],
            ),
            source=vmi.ImageTemplatePlatformImageSourceArgs(
                type="PlatformImage",
                publisher=publisher,
                offer=offer,
                sku=sku,
                version="latest",
            ),
            customize=[
                vmi.ImageTemplateFileCustomizerArgs(
                    type="File",
                    name="bundle",
                    source_uri=args.bundle_uri,
                    sha256_checksum=args.bundle_sha256,
                    destination=BUNDLE_PATH,
                ),
                vmi.ImageTemplateShellCustomizerArgs(
                    type="Shell",
                    name="install",
                    inline=image_build_commands("azure", args.bundle_sha256, sudo=True),
                ),
            ],
            validate=vmi.ImageTemplatePropertiesValidateArgs(
                continue_distribute_on_failure=False,
                in_vm_validations=[
                    vmi.ImageTemplateShellValidatorArgs(
                        type="Shell", name="health-check", inline=[health]
                    )
                ],
            ),
            distribute=[
                vmi.ImageTemplateSharedImageDistributorArgs(
                    type="SharedImage",
                    gallery_image_id=self.image_definition.id,
                    run_output_name="rtcfleet-node",
                    artifact_tags={"rtcfleet:version": args.version},
                    target_regions=[
                        vmi.TargetRegionArgs(name=location, replica_count=args.replicas_per_region)
                        for location in args.all_locations
                    ],
                )
            ],
            vm_profile=vmi.ImageTemplateVmProfileArgs(vm_size=args.vm_size, os_disk_size_gb=30),
            build_timeout_in_minutes=90,
            tags=tags,
            opts=child,
        )
        self.register_outputs(
            {"galleryImageId": self.image_definition.id, "templateName": self.template.name}
        )
