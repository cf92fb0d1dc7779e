"""AWS instance types for the cloud-neutral size classes of ``infra.spec``."""

from __future__ import annotations

from infra.sizes import machine_type
from infra.spec import Role, Size

INSTANCE_TYPES: dict[Role, dict[Size, str]] = {
    Role.GATEWAY: {
        Size.SMALL: "t3.small",
        Size.MEDIUM: "m7i.large",
        Size.LARGE: "m7i.xlarge",
        Size.XLARGE: "m7i.2xlarge",
    },
    # Forwarding is CPU-bound (one process per core), so media nodes get compute-optimised types.
    Role.MEDIA_NODE: {
        Size.SMALL: "c7i.large",
        Size.MEDIUM: "c7i.xlarge",
        Size.LARGE: "c7i.2xlarge",
        Size.XLARGE: "c7i.4xlarge",
    },
    Role.REDIS: {
        Size.SMALL: "cache.t4g.small",
        Size.MEDIUM: "cache.r7g.large",
        Size.LARGE: "cache.r7g.xlarge",
        Size.XLARGE: "cache.r7g.2xlarge",
    },
    Role.POSTGRES: {
        Size.SMALL: "db.t4g.medium",
        Size.MEDIUM: "db.r7g.large",
        Size.LARGE: "db.r7g.xlarge",
        Size.XLARGE: "db.r7g.2xlarge",
    },
}


def instance_type(role: Role, size: Size, override: str | None = None) -> str:
    """The type to run a role at a size, unless the stack names one itself."""
    return machine_type(INSTANCE_TYPES, role, size, override)
