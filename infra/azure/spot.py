"""Spot media nodes on Azure: a second, Uniform scale set of Spot priority beside the regular one.

Azure's priority mix (``priorityMixPolicy``: a regular base and a spot share in one scale set)
and its instance mix exist only in Flexible orchestration, and media nodes need Uniform for
scale-in protection while rooms are live (see node_groups.py). So the on-demand base and its
share above it are the regular scale set, and the spot share is a scale set of its own, each
with its own CPU autoscale between bounds that add up to the group's ``mediaMin``/``mediaMax``.
Evicted spot machines are deleted (not deallocated: a deallocated machine still holds its disk
and public IP and comes back stale), and the price cap is the on-demand price (``-1``), so
machines are reclaimed for capacity only, never for price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi_azure_native as azure_native

from infra.spot import SpotSettings, split

# pay at most the on-demand price: eviction for capacity only
NO_PRICE_CAP = -1.0
SPOT_PREFIX_SUFFIX = "spot"


def spot_profile(spot: bool) -> dict[str, Any]:
    """Keyword arguments of a scale set's VM profile for Spot priority (none for regular)."""
    if not spot:
        return {}
    compute = azure_native.compute
    return {
        "priority": compute.VirtualMachinePriorityTypes.SPOT,
        "eviction_policy": compute.VirtualMachineEvictionPolicyTypes.DELETE,
        "billing_profile": compute.BillingProfileArgs(max_price=NO_PRICE_CAP),
    }


@dataclass(frozen=True)
class MediaCapacity:
    """The bounds of one media scale set."""

    minimum: int
    maximum: int


def media_capacity(
    media_min: int, media_max: int, spot: SpotSettings | None
) -> tuple[MediaCapacity, MediaCapacity | None]:
    """Bounds of the regular media scale set and, with spot, of the spot one."""
    if spot is None:
        return MediaCapacity(media_min, media_max), None
    regular_max, spot_max = split(media_min, media_max, spot)
    regular_min = max(min(spot.on_demand_base, regular_max), 1)
    spot_min = max(media_min - regular_min, 0)
    return MediaCapacity(regular_min, regular_max), MediaCapacity(spot_min, max(spot_max, 1))
