"""The ``<env>-image`` stack: the node image of one environment, on AWS and optionally Azure.

Region stacks read its outputs when they set no image id of their own: ``imageIds`` (AMI per
AWS region) and ``azureImageVersionId`` (the Compute Gallery image their scale sets boot).
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from infra.aws.regions import AWS_REGIONS
from infra.settings import NAMESPACE, SettingsError, _decode, _describe

IMAGE_SUFFIX = "-image"
_IMAGE = re.compile(r"^(?P<env>[a-z][a-z0-9]{0,15})-image$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_image_stack(stack: str) -> bool:
    return _IMAGE.match(stack) is not None


class ImageSettings(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

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


def image_settings_from_values(stack: str, values: dict[str, Any]) -> ImageSettings:
    match = _IMAGE.match(stack)
    if match is None:
        raise SettingsError.one("stack", f"{stack!r} is not an image stack name <env>-image")
    fields = {
        key.split(":", 1)[1]: _decode(value)
        for key, value in values.items()
        if key.startswith(f"{NAMESPACE}:")
    }
    try:
        settings = ImageSettings.model_validate({**fields, "env": match["env"]})
    except ValidationError as exc:
        raise SettingsError(_describe(error) for error in exc.errors()) from None
    if settings.azure_location and not settings.azure_bundle_uri:
        raise SettingsError.one(
            f"{NAMESPACE}:azureBundleUri", "required with rtcfleet:azureLocation"
        )
    return settings


def image_program(stack: str) -> dict[str, pulumi.Output[Any]]:
    """Declare the image stack from the running program's config."""
    config = pulumi.Config(NAMESPACE)
    names = [f.alias or n for n, f in ImageSettings.model_fields.items() if n != "env"]
    values = {f"{NAMESPACE}:{name}": v for name in names if (v := config.get(name)) is not None}
    return declare_images(image_settings_from_values(stack, values))


def declare_images(s: ImageSettings) -> dict[str, pulumi.Output[Any]]:
    import pulumi_aws as aws

    from infra.aws.image import DEBIAN_12, ImageBuilderArgs, NodeImage

    tags = {"rtcfleet:env": s.env, "rtcfleet:stack": f"{s.env}{IMAGE_SUFFIX}"}
    provider = aws.Provider(f"aws-{s.home_region}", region=s.home_region)
    image = NodeImage(
        f"{s.env}-image",
        ImageBuilderArgs(
            prefix=s.env,
            version=s.version,
            home_region=s.home_region,
            regions=s.aws_regions,
            bundle_uri=s.bundle_uri,
            bundle_sha256=s.bundle_sha256,
            parent_image=s.parent_image or DEBIAN_12,
            instance_types=(s.instance_type,),
            tags=tags,
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    exports: dict[str, pulumi.Output[Any]] = {
        "imageIds": image.image_ids,
        "imagePipelineArn": image.pipeline.arn,
    }
    if s.azure_location and s.azure_bundle_uri:
        import pulumi_azure_native as azure_native

        from infra.azure.image import AzureImageArgs, AzureNodeImage

        azure = azure_native.Provider(f"azure-{s.azure_location}", location=s.azure_location)
        opts = pulumi.ResourceOptions(providers=[azure])
        group = azure_native.resources.ResourceGroup(
            f"{s.env}-images", location=s.azure_location, tags=tags, opts=opts
        )
        identity = azure_native.managedidentity.UserAssignedIdentity(
            f"{s.env}-image-builder",
            resource_group_name=group.name,
            location=s.azure_location,
            tags=tags,
            opts=opts,
        )
        azure_image = AzureNodeImage(
            f"{s.env}-azure-image",
            AzureImageArgs(
                prefix=s.env,
                version=s.version,
                resource_group_name=group.name,
                location=s.azure_location,
                locations=s.azure_locations,
                bundle_uri=s.azure_bundle_uri,
                bundle_sha256=s.bundle_sha256,
                identity_id=identity.id,
                tags=tags,
            ),
            opts=opts,
        )
        exports["azureImageVersionId"] = azure_image.image_definition.id
    return exports
