"""The drill's local backend: a local fleet whose region is killed, blackholed or cut off.

``kill`` works on any local fleet; ``blackhole`` and ``partition`` need the fleet on a network
fabric (``rtcfleet.netfault``): each host in its own namespace, the fault a set of drop rules.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import aiohttp
from redis.exceptions import RedisError

from infra.spec import REGION_HEALTH_PATH
from rtcfleet import bus
from rtcfleet.drill.backend import FaultKind
from rtcfleet.local import LocalFleet
from rtcfleet.netfault import Blackhole, Partition
from rtcfleet.redis_url import connect


class LocalBackend:
    target = "local"

    def __init__(self, fleet: LocalFleet) -> None:
        self.fleet = fleet
        self._redis: dict[str, Any] = {}
        kinds = {FaultKind.KILL}
        if fleet.fabric is not None:
            kinds |= {FaultKind.BLACKHOLE, FaultKind.PARTITION}
        self.faults = frozenset(kinds)
        # regions a blackhole cut off: running, unreachable until restored
        self.cut_off: set[str] = set()

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
        """Healthy while a gateway of the region answers its region health with 200: what a DNS
        health check sees through the client load balancer."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            for gateway in self.fleet.regions[region].gateways:
                try:
                    async with http.get(gateway.http_url + REGION_HEALTH_PATH) as response:
                        if response.status == 200:
                            return True
                except (aiohttp.ClientError, TimeoutError, OSError):
                    continue
        return False

    async def replication_lag(self) -> dict[str, float]:
        return await self.fleet.replication_lag()

    async def region_replication(self) -> dict[str, dict[str, Any]]:
        return await asyncio.to_thread(self.fleet.region_replication)

    async def wait_standby_replayed(self, timeout: float) -> bool:
        return await self.fleet.wait_standby_replayed(timeout)

    def _addresses(self, regions: list[str]) -> tuple[str, ...]:
        return self.fleet.host_addresses(*(h for r in regions for h in self.fleet.region_hosts(r)))

    async def inject(self, region: str, fault: FaultKind = FaultKind.KILL) -> list[str]:
        if fault not in self.faults:
            raise ValueError(f"this local fleet injects {sorted(self.faults)}, not {fault}")
        if fault is FaultKind.KILL:
            processes = self.fleet.region_processes(region)
            await asyncio.to_thread(self.fleet.kill_region, region)
            names = ", ".join(p.name for p in processes)
            return [f"SIGKILL {len(processes)} processes of {region}: {names}"]
        assert self.fleet.fabric is not None
        mine = self._addresses([region])
        rule: Blackhole | Partition
        if fault is FaultKind.BLACKHOLE:
            rule = Blackhole(mine)
            self.cut_off.add(region)
        else:
            others = self._addresses([r for r in self.fleet.regions if r != region])
            rule = Partition(mine, others)
        await asyncio.to_thread(self.fleet.fabric.apply, [rule])
        return [f"nftables on the fabric bridge: {rule.describe()}"]

    async def room_owner(self, region: str, room: str) -> str | None:
        url = self.fleet.regions[region].redis.url
        if url not in self._redis:
            self._redis[url] = connect(url)
        try:
            async with asyncio.timeout(1):
                return cast(str | None, await self._redis[url].get(bus.room_key(room)))
        except (RedisError, OSError, TimeoutError):
            return None

    async def close(self) -> None:
        for redis in self._redis.values():
            with contextlib.suppress(RedisError, OSError):
                await redis.aclose()
        self._redis.clear()

    async def fail_over_database(self) -> list[str]:
        standby = self.fleet.standby
        server = await asyncio.to_thread(self.fleet.promote_standby)
        steps = [f"promoted the Postgres replica of {standby} (port {server.port}) to read/write"]
        return steps + await asyncio.to_thread(self.fleet.follow_writer, sorted(self.cut_off))

    async def restore(self, region: str, fault: FaultKind = FaultKind.KILL) -> list[str]:
        await self.close()  # the state readers of the fault's duration
        steps = []
        if self.fleet.fabric is not None and self.fleet.fabric.faults:
            await asyncio.to_thread(self.fleet.fabric.heal)
            steps.append("removed the fault rules from the fabric bridge")
        self.cut_off.discard(region)
        if fault is FaultKind.PARTITION:
            return steps
        # a blackholed region's processes kept running on stale state (and its Postgres may
        # still think it is the primary): it comes back fresh, as after a kill
        await asyncio.to_thread(self.fleet.restore_region, region)
        return [
            *steps,
            f"restored {region}: Redis, a replica of the current primary, gateways, media nodes",
        ]
