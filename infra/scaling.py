"""How a node group grows, shrinks and lets its nodes go, in the same terms on both clouds.

AWS turns these into a target-tracking policy and a termination lifecycle hook; Azure into
an Azure Monitor autoscale setting, a terminate notice and scale-in self-protection.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.spec import LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS


@dataclass(frozen=True)
class CpuScaling:
    """Scale a group on its average CPU, keeping it near ``target_percent``."""

    target_percent: int
    # how long a new node runs before its CPU counts (and, on Azure, the cooldown)
    warmup_seconds: int

    @property
    def scale_in_percent(self) -> int:
        """Below half the target: far enough from the scale-out line that it does not flap
        (Azure's rules need it; AWS target tracking derives its own)."""
        return self.target_percent // 2


@dataclass(frozen=True)
class Drain:
    """Hold a leaving node while its rooms finish, for at most ``timeout_seconds``."""

    timeout_seconds: int
    # how often a draining node renews its hold (AWS lifecycle hook heartbeat)
    heartbeat_seconds: int = LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS
