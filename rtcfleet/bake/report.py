"""Run on a builder instance: tag the instance with its bundle health check's result.

The bake job polls that tag (``rtcfleet:bake``), so the builder needs no inbound access and
the job needs no shell on it. Identity comes from IMDSv2; the tag call from the builder's
instance profile.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp

from media_node.cloud_metadata import Ec2Metadata
from rtcfleet.bake.aws import STATUS_TAG


async def _identity(metadata_url: str | None) -> tuple[str, str]:
    async with aiohttp.ClientSession() as session:
        metadata = Ec2Metadata(session, metadata_url)
        return await metadata.instance_id(), await metadata.region()


def report(status: str, metadata_url: str | None = None, endpoint_url: str | None = None) -> None:
    import boto3

    instance_id, region = asyncio.run(_identity(metadata_url))
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url)
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": STATUS_TAG, "Value": status}])


if __name__ == "__main__":
    report(sys.argv[1] if len(sys.argv) > 1 else "failed")
