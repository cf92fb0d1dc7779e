"""The ``<env>-image`` stack: the node image of one environment, on AWS and optionally Azure.

Region stacks read its outputs when they set no image id of their own: ``imageIds`` (AMI per
AWS region) and ``azureImageVersionId`` (the Compute Gallery image version their scale sets
boot, ``.../images/rtcfleet-node/versions/<version>``).
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
from pydantic import Field, field_validator

from infra.aws.regions import AWS_REGIONS
from infra.outputs import IMAGE_IDS, IMAGE_PIPELINE_ARN, IMAGE_VERSION_ID
from infra.settings_errors import NAMESPACE, SettingsError
from infra.stack_config import StackConfigModel, pulumi_config_values, validate_stack_config
from infra.stack_names import image_stack_env, image_stack_name

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A Compute Gallery version name: three integers.
_GALLERY_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_BLOB_URI = re.compile(
    r"^https://(?P<account>[a-z0-9]{3,24})\.blob\.core\.windows\.net/(?P<container>[^/]+)/.+"
)
_STORAGE_ACCOUNT_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Storage/storageAccounts/"
    r"(?P<account>[a-z0-9]{3,24})$",
    re.IGNORECASE,
)


class ImageSettings(StackConfigModel):
    """One environment's node image: the bundle it bakes and where it is distributed."""

    env: str
    version: str = Field(min_length=1)
    bundle_uri: str
    bundle_sha256: str
    home_region: str
    regions: list[str] = Field(default_factory=list)
    parent_image: str | None = None
    instance_type: str = "c6i.large"
    azure_location: str | None = None
    azure_locations: list[str] = Field(default_factory=list)
    azure_bundle_uri: str | None = None
    # the storage account holding the bundle blob (its resource id)
    azure_bundle_storage_id: str | None = None

    @field_validator("bundle_uri")
    @classmethod
    def _s3(cls, value: str) -> str:
        if not re.match(r"^s3://[a-z0-9.-]{3,63}/.+", value):
            raise ValueError("must be s3://<bucket>/<key> of the bundle")
        return value

    @field_validator("bundle_sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be the bundle's SHA-256 (64 hex digits)")
        return value

    @field_validator("home_region", "regions")
    @classmethod
    def _aws_regions(cls, value: str | list[str]) -> str | list[str]:
        for region in [value] if isinstance(value, str) else value:
            if region not in AWS_REGIONS:
                raise ValueError(f"unknown aws region {region!r}")
        return value

    @property
    def aws_regions(self) -> list[str]:
        return [self.home_region, *(r for r in self.regions if r != self.home_region)]

    def check(self) -> list[tuple[str, str]]:
        """With ``azureLocation``, the bundle's blob, its storage account and the version."""
        if not self.azure_location:
            return []
        problems = []
        uri = _BLOB_URI.match(self.azure_bundle_uri or "")
        account = _STORAGE_ACCOUNT_ID.match(self.azure_bundle_storage_id or "")
        if uri is None:
            problems.append(
                (
                    f"{NAMESPACE}:azureBundleUri",
                    "required with rtcfleet:azureLocation: https://<account>.blob.core.windows.net/"
                    "<container>/<blob>",
                )
            )
        if account is None:
            problems.append(
                (
                    f"{NAMESPACE}:azureBundleStorageId",
                    "required with rtcfleet:azureLocation: the bundle's storage account "
                    "resource id",
                )
            )
        elif uri is not None and uri["account"] != account["account"].lower():
            problems.append(
                (
                    f"{NAMESPACE}:azureBundleStorageId",
                    f"names account {account['account']}; the bundle is in {uri['account']}",
                )
            )
        if not _GALLERY_VERSION.match(self.version):
            problems.append(
                (f"{NAMESPACE}:version", "a Compute Gallery version is three integers (1.4.0)")
            )
        return problems


def image_settings_from_values(stack: str, values: dict[str, Any]) -> ImageSettings:
    """Validate an image stack's ``rtcfleet:`` config values; other namespaces are ignored."""
    env = image_stack_env(stack)
    if env is None:
        raise SettingsError.one("stack", f"{stack!r} is not an image stack name <env>-image")
    return validate_stack_config(ImageSettings, stack, values, {"env": env})


def bundle_container_id(settings: ImageSettings) -> str:
    """The bundle's container as a resource id: the image builder reads there only."""
    uri = _BLOB_URI.match(settings.azure_bundle_uri or "")
    if uri is None or settings.azure_bundle_storage_id is None:
        raise SettingsError.one(f"{NAMESPACE}:azureBundleUri", "not a blob URL")
    return f"{settings.azure_bundle_storage_id}/blobServices/default/containers/{uri['container']}"


def image_program(stack: str) -> dict[str, pulumi.Output[Any]]:
    """Declare the image stack from the running program's config."""
    values = pulumi_config_values(ImageSettings.setting_names(("env",)))
    return declare_images(image_settings_from_values(stack, values))


def declare_images(settings: ImageSettings) -> dict[str, pulumi.Output[Any]]:
    import pulumi_aws as aws

    from infra.aws.image import DEBIAN_12, NodeImage, NodeImageArgs

    tags = {"rtcfleet:env": settings.env, "rtcfleet:stack": image_stack_name(settings.env)}
    provider = aws.Provider(f"aws-{settings.home_region}", region=settings.home_region)
    image = NodeImage(
        f"{settings.env}-image",
        NodeImageArgs(
            prefix=settings.env,
            version=settings.version,
            home_region=settings.home_region,
            regions=settings.aws_regions,
            bundle_uri=settings.bundle_uri,
            bundle_sha256=settings.bundle_sha256,
            parent_image=settings.parent_image or DEBIAN_12,
            instance_types=(settings.instance_type,),
            tags=tags,
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    exports: dict[str, pulumi.Output[Any]] = {
        IMAGE_IDS: image.image_ids,
        IMAGE_PIPELINE_ARN: image.pipeline.arn,
    }
    if settings.azure_location and settings.azure_bundle_uri:
        import pulumi_azure_native as azure_native

        from infra.azure.image import AzureImageArgs, AzureNodeImage

        location = settings.azure_location
        azure = azure_native.Provider(f"azure-{location}", location=location)
        opts = pulumi.ResourceOptions(providers=[azure])
        client = azure_native.authorization.get_client_config_output(
            opts=pulumi.InvokeOptions(provider=azure)
        )
        group = azure_native.resources.ResourceGroup(
            f"{settings.env}-images", location=settings.azure_location, tags=tags, opts=opts
        )
        # Image Builder wants the staging group empty and in the template's region.
        staging = azure_native.resources.ResourceGroup(
            f"{settings.env}-image-staging", location=settings.azure_location, tags=tags, opts=opts
        )
        identity = azure_native.managedidentity.UserAssignedIdentity(
            f"{settings.env}-image-builder",
            resource_group_name=group.name,
            location=settings.azure_location,
            tags=tags,
            opts=opts,
        )
        azure_image = AzureNodeImage(
            f"{settings.env}-azure-image",
            AzureImageArgs(
                prefix=settings.env,
                version=settings.version,
                resource_group_name=group.name,
                location=settings.azure_location,
                locations=settings.azure_locations,
                bundle_uri=settings.azure_bundle_uri,
                bundle_sha256=settings.bundle_sha256,
                bundle_container_id=bundle_container_id(settings),
                subscription_id=client.subscription_id,
                identity_id=identity.id,
                identity_principal_id=identity.principal_id,
                staging_group_id=staging.id,
                tags=tags,
            ),
            opts=opts,
        )
        exports[IMAGE_VERSION_ID] = azure_image.version_id
    return exports
