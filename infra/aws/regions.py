"""The AWS regions a stack may name, with the availability zones the platform may use there.

Kept as data (no pulumi_aws import) so settings validate offline and fast.
"""

from __future__ import annotations

AWS_REGIONS: dict[str, tuple[str, ...]] = {
    "us-east-1": ("a", "b", "c", "d", "e", "f"),
    "us-east-2": ("a", "b", "c"),
    "us-west-1": ("b", "c"),
    "us-west-2": ("a", "b", "c", "d"),
    "ca-central-1": ("a", "b", "d"),
    "sa-east-1": ("a", "b", "c"),
    "eu-west-1": ("a", "b", "c"),
    "eu-west-2": ("a", "b", "c"),
    "eu-west-3": ("a", "b", "c"),
    "eu-central-1": ("a", "b", "c"),
    "eu-north-1": ("a", "b", "c"),
    "ap-south-1": ("a", "b", "c"),
    "ap-southeast-1": ("a", "b", "c"),
    "ap-southeast-2": ("a", "b", "c"),
    "ap-northeast-1": ("a", "c", "d"),
}


def availability_zones(region: str) -> tuple[str, ...]:
    """Zone names (``us-east-1a``...) of a known region."""
    return tuple(region + suffix for suffix in AWS_REGIONS[region])
