"""What a drill needs from a target: where its regions answer, and how to break and mend one."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

from rtcfleet.tokens import mint_token


class FaultKind(StrEnum):
    """How a region goes away.

    ``kill``: every process SIGKILLed (peers get resets at once); ``blackhole``: every packet to
    and from the region dropped, processes left running (what a power or network loss looks
    like from outside); ``partition``: the region and the others stop seeing each other while
    clients still reach both."""

    KILL = "kill"
    BLACKHOLE = "blackhole"
    PARTITION = "partition"


class DrillBackend(Protocol):
    target: str
    faults: frozenset[FaultKind]

    def regions(self) -> list[str]: ...

    def home(self) -> str:
        """The region holding the Postgres read/write node right now."""
        ...

    def standby(self) -> str | None:
        """The region whose replica is promoted when home dies."""
        ...

    def signal_urls(self, region: str) -> list[str]: ...

    def admin_url(self, region: str) -> str: ...

    def admin_token(self) -> str: ...

    def token(self, room: str, identity: str) -> str: ...

    async def region_healthy(self, region: str) -> bool:
        """What the DNS health check sees: the region's client entry point answering its region
        health (``infra.spec.REGION_HEALTH_PATH``): a room can be placed and its node answers."""
        ...

    async def replication_lag(self) -> dict[str, float]: ...

    async def region_replication(self) -> dict[str, dict[str, Any]]:
        """Each region's settings copy: how it replicates and how far it trails the writer."""
        ...

    async def wait_standby_replayed(self, timeout: float) -> bool:
        """Wait until the standby has replayed every write the writer had made when called;
        False if it has not within ``timeout`` seconds."""
        ...

    async def inject(self, region: str, fault: FaultKind = FaultKind.KILL) -> list[str]:
        """Take the region down; returns the steps taken, in order."""
        ...

    async def room_owner(self, region: str, room: str) -> str | None:
        """The media node the region's own state says hosts ``room`` (None: not live there)."""
        ...

    async def fail_over_database(self) -> list[str]:
        """Promote the standby region's replica after the home region died, and point every
        other region's settings copy (replica or subscription) at it."""
        ...

    async def restore(self, region: str, fault: FaultKind = FaultKind.KILL) -> list[str]: ...


class CloudRegionTarget(Protocol):
    """What a cloud drill config says of each region: where its clients and admins go."""

    @property
    def signal_urls(self) -> list[str]: ...

    @property
    def admin_url(self) -> str: ...


class CloudDrillConfig(Protocol):
    @property
    def home(self) -> str: ...

    @property
    def standby(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    @property
    def regions(self) -> Mapping[str, CloudRegionTarget]: ...


class CloudRegionFacts:
    """The facts a cloud backend reads from its drill config; the home moves on a failover."""

    config: CloudDrillConfig
    admin_token_value: str
    api_secret: str
    home_region: str

    def regions(self) -> list[str]:
        return list(self.config.regions)

    def home(self) -> str:
        return self.home_region

    def standby(self) -> str | None:
        return self.config.standby

    def signal_urls(self, region: str) -> list[str]:
        return list(self.config.regions[region].signal_urls)

    def admin_url(self, region: str) -> str:
        return self.config.regions[region].admin_url

    def admin_token(self) -> str:
        return self.admin_token_value

    def token(self, room: str, identity: str) -> str:
        return mint_token(self.config.api_key, self.api_secret, room=room, identity=identity)
