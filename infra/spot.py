"""Spot capacity for media nodes, cloud-neutral: the ``rtcfleet:mediaSpot`` setting.

Media is the bulk of the bill and spot costs a fraction of on-demand. A media group keeps an
on-demand base (rooms always have somewhere to go when spot capacity dries up), then takes a
share of spot machines above it, spread over several instance types so one pool running out
does not stop scale-out. A reclaimed node drains urgently on its notice (two minutes on AWS,
about 30 s on Azure): its clients rejoin on another node. Gateways never run on spot (a
policy enforces it): they are few, cheap, and every join goes through them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from infra.settings import RegionSettings

KEY = "rtcfleet:mediaSpot"
_AWS_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_AZURE_SIZE = re.compile(r"^Standard_[A-Za-z0-9_]+$")
# A Uniform scale set (the media nodes' mode, for instance protection) has one VM size;
# Azure's instance mix and priority mix exist only in Flexible orchestration.
AZURE_MAX_SPOT_SIZES = 1
AWS_MIN_INSTANCE_TYPES = 2


class SpotSettings(BaseModel):
    """On-demand base, on-demand share above it, and the instance types spot may use."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    on_demand_base: int = Field(ge=0)
    # of the machines above the base, the percentage that stays on-demand (0: all spot)
    on_demand_percent_above_base: int = Field(0, ge=0, le=100)
    # AWS instance types (c6i.xlarge) or Azure VM sizes (Standard_F4s_v2)
    instance_types: list[str] = Field(min_length=1, max_length=20)
    # AWS: how spot picks its pools; price-capacity-optimized avoids the pools most likely to
    # be reclaimed while keeping the price low
    allocation_strategy: Literal["price-capacity-optimized", "capacity-optimized"] = (
        "price-capacity-optimized"
    )

    @field_validator("instance_types")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists an instance type twice")
        return value


def split(media_min: int, media_max: int, spot: SpotSettings) -> tuple[int, int]:
    """How many machines, at most, stay on-demand and how many may be spot, for a group that
    scales up to ``media_max`` (Azure's two scale sets are sized from this)."""
    base = min(spot.on_demand_base, media_max)
    above = media_max - base
    on_demand_above = math.ceil(above * spot.on_demand_percent_above_base / 100)
    return base + on_demand_above, above - on_demand_above


def spot_problems(settings: RegionSettings) -> list[tuple[str, str]]:
    """Cross-field problems of ``rtcfleet:mediaSpot`` against the stack's other settings."""
    spot = getattr(settings, "media_spot", None)
    if not isinstance(spot, SpotSettings):
        return []
    problems: list[tuple[str, str]] = []
    if spot.on_demand_base > settings.media_max:
        problems.append(
            (
                KEY,
                f"onDemandBase {spot.on_demand_base} is above rtcfleet:mediaMax "
                f"{settings.media_max}",
            )
        )
    if settings.production and spot.on_demand_base < 1:
        problems.append(
            (
                KEY,
                "onDemandBase must be at least 1 in production: a region whose spot capacity "
                "is reclaimed at once must keep a media node",
            )
        )
    if settings.cloud == "aws":
        bad = [t for t in spot.instance_types if not _AWS_TYPE.match(t)]
        if bad:
            problems.append((KEY, f"instanceTypes {bad} are not EC2 instance types (c6i.xlarge)"))
        if len(spot.instance_types) < AWS_MIN_INSTANCE_TYPES:
            problems.append(
                (
                    KEY,
                    f"list at least {AWS_MIN_INSTANCE_TYPES} instanceTypes: one spot pool "
                    "running dry would stop scale-out",
                )
            )
    elif settings.cloud == "azure":
        bad = [t for t in spot.instance_types if not _AZURE_SIZE.match(t)]
        if bad:
            problems.append((KEY, f"instanceTypes {bad} are not Azure VM sizes (Standard_...)"))
        if len(spot.instance_types) > AZURE_MAX_SPOT_SIZES:
            problems.append(
                (
                    KEY,
                    "Azure media scale sets are Uniform (for scale-in protection) and have "
                    "one VM size: list one instanceType",
                )
            )
        if spot.allocation_strategy != "price-capacity-optimized":
            problems.append((KEY, "allocationStrategy is an AWS setting"))
    return problems


def group_launch_template_id(group_inputs: Mapping[str, Any]) -> str | None:
    """The launch template an Auto Scaling group's recorded inputs launch, whether on its own
    or inside a mixed instances policy."""
    direct = group_inputs.get("launchTemplate")
    if isinstance(direct, Mapping) and direct.get("id"):
        return str(direct["id"])
    mixed = group_inputs.get("mixedInstancesPolicy")
    if isinstance(mixed, Mapping):
        template = mixed.get("launchTemplate") or {}
        specification = template.get("launchTemplateSpecification") or {}
        if specification.get("launchTemplateId"):
            return str(specification["launchTemplateId"])
    return None
