"""Bake the node image on AWS with boto3, for CI jobs that do not run EC2 Image Builder.

One bake: put the bundle in S3, launch a builder from the base image whose user data installs
the bundle and runs its health check, wait until the builder reports the result in its own
``rtcfleet:bake`` tag, create the image, copy it to every region of the deployment, tag every
copy, and deregister (with their snapshots) the images of the same name older than the last N.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("rtcfleet.bake")

IMAGE_TAG = "rtcfleet:image"
VERSION_TAG = "rtcfleet:version"
BUNDLE_TAG = "rtcfleet:bundle-sha256"
STATUS_TAG = "rtcfleet:bake"
HEALTHY = "healthy"
INSTALL_PREFIX = "/opt/rtcfleet"
PRESIGNED_URL_SECONDS = 3600


class BakeFailed(RuntimeError):
    """The builder reported a failed health check, or did not report in time."""


@dataclass
class AwsBakeSpec:
    """What to bake and where: the home region builds, every region gets a copy."""

    bundle: Path
    version: str
    bucket: str
    home_region: str
    regions: Sequence[str]
    # An AMI id, or ``ssm:<public parameter>`` (Debian publishes /aws/service/debian/...)
    base_image: str = "ssm:/aws/service/debian/release/12/latest/amd64"
    name: str = "rtcfleet-node"
    instance_type: str = "c6i.large"
    subnet_id: str | None = None
    security_group_ids: Sequence[str] = ()
    # Lets the builder tag itself with the health check's result.
    instance_profile: str | None = None
    keep: int = 3
    health_timeout_seconds: float = 1200.0
    poll_seconds: float = 10.0
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def all_regions(self) -> list[str]:
        return [self.home_region, *(r for r in self.regions if r != self.home_region)]


@dataclass
class BakeResult:
    version: str
    bundle_sha256: str
    builder_instance: str
    # region -> AMI id
    images: dict[str, str]
    # region -> AMI ids deregistered as older than the last N
    removed: dict[str, list[str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "bundleSha256": self.bundle_sha256,
            "builderInstance": self.builder_instance,
            "imageIds": self.images,
            "removed": self.removed,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def builder_user_data(bundle_url: str, sha256: str, name: str) -> str:
    """The builder's script: fetch and verify the bundle, install it, report the health check."""
    return "\n".join(
        [
            "#!/bin/bash",
            "set -uo pipefail",
            "work=$(mktemp -d)",
            f"curl -fsSL --retry 5 -o \"$work/{name}.tar.gz\" '{bundle_url}'",
            f"echo '{sha256}  '\"$work/{name}.tar.gz\" | sha256sum -c - || exit 1",
            f'tar -xzf "$work/{name}.tar.gz" -C "$work"',
            f'status=failed; "$work"/*/install.sh --prefix {INSTALL_PREFIX} \\',
            f"  && {INSTALL_PREFIX}/bin/rtcfleet-health-check && status={HEALTHY}",
            # the image must boot like a new machine: cloud-init runs user data again
            "cloud-init clean --logs || true",
            f'{INSTALL_PREFIX}/venv/bin/python -m rtcfleet.bake.report "$status"',
            "",
        ]
    )


ClientFactory = Callable[[str, str], Any]


def boto3_clients(endpoint_url: str | None = None) -> ClientFactory:
    """``(service, region) -> client``; an endpoint override points every client at moto."""
    import boto3

    def client(service: str, region: str) -> Any:
        return boto3.client(service, region_name=region, endpoint_url=endpoint_url)

    return client


class AwsBaker:
    def __init__(self, spec: AwsBakeSpec, clients: ClientFactory) -> None:
        self.spec = spec
        self.clients = clients
        self.home_ec2 = clients("ec2", spec.home_region)

    # ---- steps ------------------------------------------------------------------------------

    def upload_bundle(self, sha256: str) -> str:
        """Put the bundle in S3 under its digest; returns a presigned URL for the builder."""
        s3 = self.clients("s3", self.spec.home_region)
        key = f"bundles/{self.spec.name}-{self.spec.version}-{sha256[:12]}.tar.gz"
        s3.upload_file(str(self.spec.bundle), self.spec.bucket, key)
        return str(
            s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.spec.bucket, "Key": key},
                ExpiresIn=PRESIGNED_URL_SECONDS,
            )
        )

    def base_image_id(self) -> str:
        base = self.spec.base_image
        if not base.startswith("ssm:"):
            return base
        ssm = self.clients("ssm", self.spec.home_region)
        return str(ssm.get_parameter(Name=base.removeprefix("ssm:"))["Parameter"]["Value"])

    def launch_builder(self, user_data: str, sha256: str) -> str:
        network: dict[str, Any] = {}
        if self.spec.subnet_id:
            network["SubnetId"] = self.spec.subnet_id
        if self.spec.security_group_ids:
            network["SecurityGroupIds"] = list(self.spec.security_group_ids)
        if self.spec.instance_profile:
            network["IamInstanceProfile"] = {"Name": self.spec.instance_profile}
        tags = self._tags(sha256) | {"Name": f"{self.spec.name}-builder-{self.spec.version}"}
        reservation = self.home_ec2.run_instances(
            ImageId=self.base_image_id(),
            InstanceType=self.spec.instance_type,
            MinCount=1,
            MaxCount=1,
            UserData=user_data,
            MetadataOptions={
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "InstanceMetadataTags": "enabled",
            },
            TagSpecifications=[{"ResourceType": "instance", "Tags": _tag_list(tags)}],
            **network,
        )
        instance_id = str(reservation["Instances"][0]["InstanceId"])
        log.info("builder %s launched", instance_id)
        return instance_id

    def wait_for_health(self, instance_id: str) -> None:
        deadline = time.monotonic() + self.spec.health_timeout_seconds
        while True:
            found = self.home_ec2.describe_tags(
                Filters=[
                    {"Name": "resource-id", "Values": [instance_id]},
                    {"Name": "key", "Values": [STATUS_TAG]},
                ]
            )["Tags"]
            if found:
                status = str(found[0]["Value"])
                if status == HEALTHY:
                    log.info("builder %s: bundle health check passed", instance_id)
                    return
                raise BakeFailed(f"builder {instance_id}: health check reported {status!r}")
            if time.monotonic() > deadline:
                raise BakeFailed(
                    f"builder {instance_id}: no health report in "
                    f"{self.spec.health_timeout_seconds:.0f} s"
                )
            time.sleep(self.spec.poll_seconds)

    def create_image(self, instance_id: str, stamp: str) -> str:
        image_id = str(
            self.home_ec2.create_image(
                InstanceId=instance_id,
                Name=f"{self.spec.name}-{self.spec.version}-{stamp}",
                Description=f"rtcfleet node services {self.spec.version}",
            )["ImageId"]
        )
        self._wait_available(self.home_ec2, image_id)
        return image_id

    def copy_to_regions(self, image_id: str, stamp: str) -> dict[str, str]:
        images = {self.spec.home_region: image_id}
        for region in self.spec.all_regions[1:]:
            ec2 = self.clients("ec2", region)
            images[region] = str(
                ec2.copy_image(
                    SourceImageId=image_id,
                    SourceRegion=self.spec.home_region,
                    Name=f"{self.spec.name}-{self.spec.version}-{stamp}",
                    Description=f"rtcfleet node services {self.spec.version}",
                )["ImageId"]
            )
        for region, copy in images.items():
            self._wait_available(self.clients("ec2", region), copy)
        return images

    def tag_images(self, images: dict[str, str], sha256: str) -> None:
        for region, image_id in images.items():
            self.clients("ec2", region).create_tags(
                Resources=[image_id], Tags=_tag_list(self._tags(sha256))
            )

    def prune(self, region: str) -> list[str]:
        """Deregister this image name's AMIs older than the last ``keep``, with their snapshots."""
        ec2 = self.clients("ec2", region)
        images = ec2.describe_images(
            Owners=["self"], Filters=[{"Name": f"tag:{IMAGE_TAG}", "Values": [self.spec.name]}]
        )["Images"]
        images.sort(key=lambda image: str(image.get("CreationDate", "")), reverse=True)
        removed = []
        for image in images[self.spec.keep :]:
            ec2.deregister_image(ImageId=image["ImageId"])
            for mapping in image.get("BlockDeviceMappings") or ():
                snapshot = (mapping.get("Ebs") or {}).get("SnapshotId")
                if snapshot:
                    ec2.delete_snapshot(SnapshotId=snapshot)
            removed.append(str(image["ImageId"]))
        return removed

    # ---- the bake ---------------------------------------------------------------------------

    def bake(self) -> BakeResult:
        if self.spec.keep < 1:
            raise ValueError("keep must be at least 1: the image just baked stays")
        sha256 = file_sha256(self.spec.bundle)
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        url = self.upload_bundle(sha256)
        instance_id = self.launch_builder(builder_user_data(url, sha256, self.spec.name), sha256)
        try:
            self.wait_for_health(instance_id)
            image_id = self.create_image(instance_id, stamp)
        finally:
            self.home_ec2.terminate_instances(InstanceIds=[instance_id])
        images = self.copy_to_regions(image_id, stamp)
        self.tag_images(images, sha256)
        removed = {region: self.prune(region) for region in images}
        return BakeResult(self.spec.version, sha256, instance_id, images, removed)

    # ---- helpers ----------------------------------------------------------------------------

    def _tags(self, sha256: str) -> dict[str, str]:
        return self.spec.tags | {
            IMAGE_TAG: self.spec.name,
            VERSION_TAG: self.spec.version,
            BUNDLE_TAG: sha256,
        }

    def _wait_available(self, ec2: Any, image_id: str) -> None:
        ec2.get_waiter("image_available").wait(
            ImageIds=[image_id],
            WaiterConfig={"Delay": max(int(self.spec.poll_seconds), 1), "MaxAttempts": 180},
        )


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]
