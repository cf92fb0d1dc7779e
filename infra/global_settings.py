"""Typed settings of the ``<env>-global`` stack, read from its Pulumi config.

The global stack ties an environment's region stacks together (DNS, the private network
between regions, which region is home). It names those regions by stack name, so every
error points at a key of ``stacks/Pulumi.<env>-global.yaml`` such as ``rtcfleet:regions``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from ipaddress import IPv4Network
from typing import Any

from pydantic import Field, field_validator

from infra.aws.regions import AWS_REGIONS
from infra.settings import RegionSettings, StackName
from infra.settings_errors import SettingsError, config_key
from infra.stack_config import StackConfigModel, pulumi_config_values, validate_stack_config
from infra.stack_names import global_stack_env, global_stack_name

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{4,31}$")
# Route 53 checks from at least three of its checker regions; it accepts 10 or 30 seconds.
HEALTH_CHECK_INTERVALS = (10, 30)


# Route 53 measures latency to AWS regions only: each Azure region answers as its nearest one.
AZURE_LATENCY_REGIONS: dict[str, str] = {
    "eastus": "us-east-1",
    "eastus2": "us-east-1",
    "centralus": "us-east-2",
    "westus2": "us-west-2",
    "westus3": "us-west-2",
    "canadacentral": "ca-central-1",
    "brazilsouth": "sa-east-1",
    "northeurope": "eu-west-1",
    "westeurope": "eu-central-1",
    "uksouth": "eu-west-2",
    "francecentral": "eu-west-3",
    "germanywestcentral": "eu-central-1",
    "swedencentral": "eu-north-1",
    "centralindia": "ap-south-1",
    "southeastasia": "ap-southeast-1",
    "australiaeast": "ap-southeast-2",
    "japaneast": "ap-northeast-1",
}


def latency_region(name: StackName) -> str | None:
    """The AWS region Route 53 measures a region stack's latency against."""
    if name.cloud == "aws":
        return name.region if name.region in AWS_REGIONS else None
    return AZURE_LATENCY_REGIONS.get(name.region)


class GlobalSettings(StackConfigModel):
    """One environment's DNS names, its regions, and which region is home and standby."""

    env: str
    regions: list[str] = Field(min_length=1)
    home_region: str
    standby_region: str | None = None
    domain: str
    hosted_zone_id: str
    signaling_name: str = "api"
    fallback_name: str = "api-backup"
    record_ttl: int = Field(60, ge=10, le=3600)
    health_check_interval: int = 10
    health_check_failures: int = Field(3, ge=1, le=10)
    # The AWS region whose provider manages the global services (Route 53).
    dns_provider_region: str = "us-east-1"

    @field_validator("regions")
    @classmethod
    def _region_stacks(cls, value: list[str]) -> list[str]:
        for stack in value:
            StackName.parse(stack)
        if len(set(value)) != len(value):
            raise ValueError("lists a region stack twice")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not _DOMAIN.match(value):
            raise ValueError(f"{value!r} is not a DNS domain (example.com)")
        return value

    @field_validator("hosted_zone_id")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not _ZONE_ID.match(value):
            raise ValueError(f"{value!r} is not a Route 53 hosted zone id (Z...)")
        return value

    @field_validator("signaling_name", "fallback_name")
    @classmethod
    def _label(cls, value: str) -> str:
        if not _LABEL.match(value):
            raise ValueError(f"{value!r} is not a DNS label")
        return value

    @field_validator("health_check_interval")
    @classmethod
    def _interval(cls, value: int) -> int:
        if value not in HEALTH_CHECK_INTERVALS:
            raise ValueError(f"Route 53 checks every {HEALTH_CHECK_INTERVALS} seconds only")
        return value

    @property
    def stack(self) -> str:
        return global_stack_name(self.env)

    @property
    def signaling_fqdn(self) -> str:
        return f"{self.signaling_name}.{self.domain}"

    @property
    def fallback_fqdn(self) -> str:
        return f"{self.fallback_name}.{self.domain}"

    @property
    def failover_stacks(self) -> tuple[str, str | None]:
        """The fallback name's PRIMARY (home) and SECONDARY (standby) region stacks."""
        return self.home_region, self.standby_region

    def region_names(self) -> dict[str, StackName]:
        return {stack: StackName.parse(stack) for stack in self.regions}

    def referenced_stacks(self) -> list[str]:
        """The region stacks whose outputs this stack reads."""
        return list(self.regions)

    def check(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        for stack, name in self.region_names().items():
            if name.env != self.env:
                problems.append(
                    (config_key("regions"), f"{stack} is not a stack of environment {self.env}")
                )
            if latency_region(name) is None:
                problems.append(
                    (config_key("regions"), f"{stack}: no latency region known for {name.region}")
                )
        if self.dns_provider_region not in AWS_REGIONS:
            problems.append(
                (config_key("dnsProviderRegion"), f"unknown aws region {self.dns_provider_region}")
            )
        if self.home_region not in self.regions:
            problems.append(
                (config_key("homeRegion"), f"{self.home_region} is not in rtcfleet:regions")
            )
        if self.standby_region is not None:
            if self.standby_region not in self.regions:
                problems.append(
                    (
                        config_key("standbyRegion"),
                        f"{self.standby_region} is not in rtcfleet:regions",
                    )
                )
            elif self.standby_region == self.home_region:
                problems.append(
                    (config_key("standbyRegion"), "is the home region; name another region")
                )
        elif len(self.regions) > 1:
            problems.append(
                (
                    config_key("standbyRegion"),
                    "required when there is more than one region: failover promotes it",
                )
            )
        if self.signaling_name == self.fallback_name:
            problems.append((config_key("fallbackName"), "must differ from rtcfleet:signalingName"))
        return problems

    def check_regions(
        self,
        regions: Mapping[str, RegionSettings],
        networks: Mapping[str, IPv4Network] | None = None,
    ) -> list[tuple[str, str]]:
        """Problems between this stack and the settings of the region stacks it names.

        Every region must agree on the home region, and every region's ``peeredCidrs`` must
        admit each other region's network: a region's security groups and routes to the
        private network are built from its own ``peeredCidrs``, and the global stack links
        every pair of regions. ``networks`` adds regions known only by their network (a
        cloud whose region program is read through its outputs alone).
        """
        problems: list[tuple[str, str]] = []
        cidrs = {stack: region.vpc_cidr for stack, region in regions.items()}
        cidrs.update(networks or {})
        home = regions.get(self.home_region)
        for stack, region in regions.items():
            if (
                home is not None
                and region.cloud == home.cloud
                and region.home_region != home.region
            ):
                problems.append(
                    (
                        config_key("homeRegion"),
                        f"{stack} names home region {region.home_region}, "
                        f"the global stack {self.home_region}",
                    )
                )
            for other_stack, cidr in cidrs.items():
                if other_stack == stack or cidr in region.peered_cidrs:
                    continue
                if cidr.overlaps(region.vpc_cidr):
                    message = f"{stack} and {other_stack} use overlapping networks"
                else:
                    message = f"{stack}: rtcfleet:peeredCidrs lacks {cidr} of {other_stack}"
                problems.append((config_key("regions"), message))
        return problems


def global_settings_from_values(stack: str, values: Mapping[str, Any]) -> GlobalSettings:
    """Validate a global stack's ``rtcfleet:`` config values; other namespaces are ignored."""
    env = global_stack_env(stack)
    if env is None:
        raise SettingsError.one("stack", f"{stack!r} is not a global stack name <env>-global")
    return validate_stack_config(GlobalSettings, stack, values, {"env": env})


def global_settings_from_pulumi_config(stack: str) -> GlobalSettings:
    """The settings of the running global stack program, from ``pulumi.Config("rtcfleet")``."""
    names = GlobalSettings.setting_names(("env",))
    return global_settings_from_values(stack, pulumi_config_values(names))
