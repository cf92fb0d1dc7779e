"""What a drill needs from a target: where its regions answer, and how to break and mend one."""

from __future__ import annotations

from typing import Any, Protocol


class DrillBackend(Protocol):
    target: str

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
        """What the DNS health check sees: the region's client entry point answering /readyz."""
        ...

    async def replication_lag(self) -> dict[str, float]: ...

    async def region_replication(self) -> dict[str, dict[str, Any]]:
        """Each region's settings copy: how it replicates and how far it trails the writer."""
        ...

    async def inject(self, region: str) -> list[str]:
        """Take the region down; returns the steps taken, in order."""
        ...

    async def fail_over_database(self) -> list[str]:
        """Promote the standby region's replica after the home region died, and point every
        other region's settings copy (replica or subscription) at it."""
        ...

    async def restore(self, region: str) -> list[str]: ...
