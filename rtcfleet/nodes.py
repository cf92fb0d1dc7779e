"""What a media node tells its region about itself: identity, capacity and load.

Shared by the media node (which reports it) and the gateway (which places rooms with it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rtcfleet.settings_store import PlatformSettings

NODE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class NodeLoad(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rooms: int = Field(default=0, ge=0)
    participants: int = Field(default=0, ge=0)
    forwarded_streams: int = Field(default=0, ge=0)
    bitrate_out_bps: int = Field(default=0, ge=0)
    cpu_percent: float = Field(default=0.0, ge=0.0)
    # Accepted from nodes of earlier versions (so a rolling deploy keeps them placeable) and
    # dropped by the registry: it grew a heartbeat with every room name. A node now keeps its
    # room map in Redis itself (``bus.hold_rooms``).
    room_participants: dict[str, int] = Field(default_factory=dict)


class NodeRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node_id: str = Field(pattern=NODE_ID_PATTERN)
    region: str = Field(min_length=1, max_length=64)
    public_ip: str | None = None
    workers: int = Field(ge=1, le=1024)
    # forwarded streams the node can carry at its target load (all workers together)
    capacity_streams: int = Field(ge=1)
    version: str = "unknown"


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    load: NodeLoad
    draining: bool = False
    # the platform settings the node applies now, as read from its region's copy
    settings: PlatformSettings | None = None


class DrainReport(BaseModel):
    """How a drain the cloud asked for went, sent by the node as it leaves."""

    model_config = ConfigDict(extra="forbid")

    cloud: Literal["aws", "azure"]
    # interruption: Spot notice (EC2 instance-action, Azure Preempt), rooms moved at once;
    # rebalance: EC2 rebalance recommendation; scale_in: the group removes the node
    notice: Literal["interruption", "rebalance", "scale_in"]
    # from the notice to the node empty (or to the platform's deadline, whichever came first)
    seconds: float = Field(ge=0)
    # the notice the platform gave (None when it named no deadline)
    notice_seconds: float | None = None
    sessions_moved: int = Field(default=0, ge=0)
    rooms_left: int = Field(default=0, ge=0)


class NodeState(BaseModel):
    """The registry's record: the registration, the latest load, and when it was heard from."""

    registration: NodeRegistration
    load: NodeLoad = Field(default_factory=NodeLoad)
    draining: bool = False
    settings: PlatformSettings | None = None
    registered_at: float
    heartbeat_at: float
    # set by a gateway that found the node's process gone before its heartbeat went stale (its
    # Redis connections closed); the node's next heartbeat clears it
    lost_at: float | None = None

    @property
    def node_id(self) -> str:
        return self.registration.node_id

    @property
    def utilization(self) -> float:
        """0..1+: the larger of CPU share and stream share, so either limit counts."""
        streams = self.load.forwarded_streams / self.registration.capacity_streams
        cpu = self.load.cpu_percent / (100.0 * self.registration.workers)
        return max(streams, cpu)

    def is_fresh(self, now: float, stale_after: float) -> bool:
        return self.lost_at is None and now - self.heartbeat_at <= stale_after
