"""Azure machine sizes for the cloud-neutral size classes of ``infra.spec``.

Redis is Premium (the tier with zones and replicas) at capacity P1-P4; Postgres is General
Purpose, the smallest tier that offers zone-redundant high availability.
"""

from __future__ import annotations

from infra.sizes import SizeTable, machine_type
from infra.spec import Role, Size

VM_SIZES: SizeTable = {
    Role.GATEWAY: {
        Size.SMALL: "Standard_D2s_v5",
        Size.MEDIUM: "Standard_D2s_v5",
        Size.LARGE: "Standard_D4s_v5",
        Size.XLARGE: "Standard_D8s_v5",
    },
    # Forwarding is CPU-bound (one process per core), so media nodes get compute-optimised sizes.
    Role.MEDIA_NODE: {
        Size.SMALL: "Standard_F2s_v2",
        Size.MEDIUM: "Standard_F4s_v2",
        Size.LARGE: "Standard_F8s_v2",
        Size.XLARGE: "Standard_F16s_v2",
    },
    Role.REDIS: {Size.SMALL: "1", Size.MEDIUM: "2", Size.LARGE: "3", Size.XLARGE: "4"},
    Role.POSTGRES: {
        Size.SMALL: "Standard_D2ds_v5",
        Size.MEDIUM: "Standard_D4ds_v5",
        Size.LARGE: "Standard_D8ds_v5",
        Size.XLARGE: "Standard_D16ds_v5",
    },
}


def vm_size(role: Role, size: Size, override: str | None = None) -> str:
    return machine_type(VM_SIZES, role, size, override)


def postgres_tier(sku: str) -> str:
    """The Flexible Server tier an SKU belongs to (Burstable has no HA)."""
    if sku.startswith("Standard_B"):
        return "Burstable"
    if sku.startswith("Standard_E"):
        return "MemoryOptimized"
    return "GeneralPurpose"
