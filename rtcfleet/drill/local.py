"""The drill's local backend: a local fleet whose region is killed with SIGKILL."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from rtcfleet.local import LocalFleet


class LocalBackend:
    target = "local"

    def __init__(self, fleet: LocalFleet) -> None:
        self.fleet = fleet

    def regions(self) -> list[str]:
        return list(self.fleet.regions)

    def home(self) -> str:
        return self.fleet.home

    def standby(self) -> str | None:
        return self.fleet.standby

    def signal_urls(self, region: str) -> list[str]:
        return self.fleet.gateway_urls(region)

    def admin_url(self, region: str) -> str:
        return self.fleet.regions[region].gateways[0].admin_url

    def admin_token(self) -> str:
        return self.fleet.spec.admin_token

    def token(self, room: str, identity: str) -> str:
        return self.fleet.token(room, identity)

    async def region_healthy(self, region: str) -> bool:
        """Healthy while any of the region's gateways passes /readyz, as a load balancer sees."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            for gateway in self.fleet.regions[region].gateways:
                try:
                    async with http.get(gateway.http_url + "/readyz") as response:
                        if response.status == 200:
                            return True
                except (aiohttp.ClientError, TimeoutError, OSError):
                    continue
        return False

    async def replication_lag(self) -> dict[str, float]:
        return await self.fleet.replication_lag()

    async def region_replication(self) -> dict[str, dict[str, Any]]:
        return await asyncio.to_thread(self.fleet.region_replication)

    async def inject(self, region: str) -> list[str]:
        processes = self.fleet.region_processes(region)
        await asyncio.to_thread(self.fleet.kill_region, region)
        names = ", ".join(p.name for p in processes)
        return [f"SIGKILL {len(processes)} processes of {region}: {names}"]

    async def fail_over_database(self) -> list[str]:
        standby = self.fleet.standby
        server = await asyncio.to_thread(self.fleet.promote_standby)
        steps = [f"promoted the Postgres replica of {standby} (port {server.port}) to read/write"]
        return steps + await asyncio.to_thread(self.fleet.follow_writer)

    async def restore(self, region: str) -> list[str]:
        await asyncio.to_thread(self.fleet.restore_region, region)
        return [
            f"restored {region}: Redis, a replica of the current primary, gateways, media nodes"
        ]
