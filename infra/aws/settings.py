"""The settings of a region stack on AWS: the neutral settings plus AWS names and overrides."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from pydantic import field_validator

from infra.aws.regions import AWS_REGIONS
from infra.certificates import acm_arn_problem
from infra.settings import RegionSettings
from infra.settings_errors import config_key

_ACM_ARN = re.compile(r"^arn:aws:acm:(?P<region>[a-z0-9-]+):\d{12}:certificate/[A-Za-z0-9-]+$")
_AMI = re.compile(r"^ami-[0-9a-f]{8,17}$")


class AwsRegionSettings(RegionSettings):
    """A region on AWS: the neutral settings plus AWS names and instance-type overrides."""

    gateway_instance_type: str | None = None
    media_instance_type: str | None = None
    redis_node_type: str | None = None
    postgres_instance_class: str | None = None
    nat_per_az: bool = True
    redis_engine_version: str = "7.1"
    postgres_engine_version: str = "16"

    cloud_regions: ClassVar[Mapping[str, tuple[str, ...]]] = AWS_REGIONS

    @field_validator("certificate", "admin_certificate")
    @classmethod
    def _acm_arn(cls, value: str | None) -> str | None:
        problem = None if value is None else acm_arn_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("image_id")
    @classmethod
    def _ami(cls, value: str | None) -> str | None:
        if value is not None and not _AMI.match(value):
            raise ValueError("must be an AMI id (ami-...)")
        return value

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        for key, arn in (
            ("certificate", self.certificate),
            ("adminCertificate", self.admin_certificate),
        ):
            match = _ACM_ARN.match(arn or "")
            if match and match["region"] != self.region:
                problems.append(
                    (config_key(key), f"certificate is in {match['region']}, not {self.region}")
                )
        return problems
