"""The node image on Azure: an Azure Image Builder template that bakes the bundle into a
Compute Gallery image version with replicas in every region of the deployment.

The template's identity holds exactly what a build needs, each on its own scope: Storage Blob
Data Reader on the bundle's container, Contributor on an empty staging resource group where the
build VM runs, and a custom role that writes image versions on the gallery. The template is
created after those roles have propagated and runs on creation (``autoRun``); a new version
means a new template. A File customizer fetches the bundle (Image Builder checks its SHA-256), a
Shell customizer runs the image build script on it
(the one EC2 Image Builder runs), and an in-VM validation runs its health check before
distribution. The template writes version ``<version>`` of the image definition, whose id
(``version_id``) is what region stacks boot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native
import pulumiverse_time as time

from infra.azure.identities import grant, role_definition_id, stable_guid
from infra.image_build import image_build_commands
from infra.spec import ROLE_TAG
from rtcfleet.bake.aws import INSTALL_PREFIX
from rtcfleet.bake.azure import BUNDLE_PATH, DEBIAN_12

vmi = azure_native.virtualmachineimages
compute = azure_native.compute

IMAGE_ROLE = "image"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
# Azure Image Builder's documented permissions for distributing to a Compute Gallery.
GALLERY_ACTIONS = (
    "Microsoft.Compute/galleries/read",
    "Microsoft.Compute/galleries/images/read",
    "Microsoft.Compute/galleries/images/versions/read",
    "Microsoft.Compute/galleries/images/versions/write",
    "Microsoft.Compute/images/write",
    "Microsoft.Compute/images/read",
    "Microsoft.Compute/images/delete",
)
ROLE_PROPAGATION = "300s"


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
    # the storage container holding the bundle, as a resource id (the identity's read scope)
    bundle_container_id: str
    subscription_id: pulumi.Input[str]
    identity_id: pulumi.Input[str]
    identity_principal_id: pulumi.Input[str]
    # an empty group the build VM runs in; the identity is Contributor there and nowhere else
    staging_group_id: pulumi.Input[str]
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
    version_id: pulumi.Output[str]

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
        self.version_id = pulumi.Output.concat(self.image_definition.id, "/versions/", args.version)
        propagated = self._grant_build_roles(args)
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
            staging_resource_group=args.staging_group_id,
            # Each template builds once, when created: a new version is a new template.
            auto_run=vmi.ImageTemplateAutoRunArgs(state=vmi.AutoRunState.AUTO_RUN_ENABLED),
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
                    gallery_image_id=self.version_id,
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[propagated]),
        )
        self.register_outputs(
            {
                "galleryImageId": self.image_definition.id,
                "versionId": self.version_id,
                "templateName": self.template.name,
            }
        )

    def _grant_build_roles(self, args: AzureImageArgs) -> time.Sleep:
        """Read the bundle, build in the staging group, write gallery versions; then wait."""
        group_id = pulumi.Output.concat(
            "/subscriptions/", args.subscription_id, "/resourceGroups/", args.resource_group_name
        )
        gallery_writer = azure_native.authorization.RoleDefinition(
            f"{args.prefix}-image-builder-gallery",
            role_definition_id=stable_guid(args.prefix, "image-builder-gallery"),
            role_name=f"rtcfleet {args.prefix} image builder: gallery versions",
            description="Azure Image Builder writes image versions into the node gallery",
            role_type="CustomRole",
            scope=group_id,
            assignable_scopes=[group_id],
            permissions=[azure_native.authorization.PermissionArgs(actions=list(GALLERY_ACTIONS))],
            opts=pulumi.ResourceOptions(parent=self),
        )
        grants = [
            grant(
                f"{args.prefix}-image-builder-reads-bundle",
                args.identity_principal_id,
                role_definition_id(args.subscription_id, STORAGE_BLOB_DATA_READER),
                args.bundle_container_id,
                "rtcfleet image builds read the node bundle",
                parent=self,
            ),
            grant(
                f"{args.prefix}-image-builder-stages",
                args.identity_principal_id,
                role_definition_id(args.subscription_id, CONTRIBUTOR),
                args.staging_group_id,
                "rtcfleet image builds run their VM in the staging group",
                parent=self,
            ),
            grant(
                f"{args.prefix}-image-builder-writes-gallery",
                args.identity_principal_id,
                gallery_writer.id,
                self.gallery.id,
                "rtcfleet image builds write versions into the node gallery",
                parent=self,
            ),
        ]
        return time.Sleep(
            f"{args.prefix}-image-builder-propagation",
            create_duration=ROLE_PROPAGATION,
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
        )
