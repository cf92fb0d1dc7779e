"""Where a room lives: in which region, and on which media node of this region.

A room is new here only when no other region hosts it: the other regions are asked first,
concurrently and within a bound, and the room's home region (``gateway_node.room_home``)
arbitrates when some cannot be asked. In this region a room is placed on its live owner, or
claimed for the least-loaded placeable node (``gateway_node.placement``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

import aiohttp
import redis.asyncio as aioredis

from gateway_node.metrics import GatewayMetrics
from gateway_node.placement import NoAvailableNodes, claim_room, placeable, select_node
from gateway_node.registry import NodeRegistry
from gateway_node.room_home import RESERVATION_TTL_S, reservation_key, room_home
from gateway_node.settings import GatewaySettings
from rtcfleet import bus
from rtcfleet.nodes import NodeState

PLACEMENT_ATTEMPTS = 3

# SET the reservation to ARGV[1] unless another region holds it; ARGV[2] is a holder known to
# be stale (empty: none). Returns the holder afterwards.
RESERVE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if (not current) or current == ARGV[1] or current == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  return ARGV[1]
end
return current
"""


class Unreachable:
    """A region that did not answer a room lookup in time."""


UNREACHABLE = Unreachable()


class RoomElsewhere(Exception):
    """The room is live in another region; the client should join it there."""

    def __init__(self, region: str, urls: list[str]) -> None:
        super().__init__(f"room lives in {region}")
        self.region = region
        self.urls = urls


class RoomPlacement:
    def __init__(
        self,
        settings: GatewaySettings,
        redis: Callable[[], aioredis.Redis],
        registry: Callable[[], NodeRegistry],
        http: Callable[[], aiohttp.ClientSession | None],
        metrics: GatewayMetrics,
    ) -> None:
        """``redis``, ``registry``, ``http``: the gateway's clients, once it has started."""
        self.settings = settings
        self._redis = redis
        self._registry = registry
        self._http = http
        self.metrics = metrics

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis()

    async def local_owner(self, room: str) -> NodeState | None:
        """The fresh node of this region that hosts ``room``, if any."""
        owner = cast(str | None, await self.redis.get(bus.room_key(room)))
        if owner is None:
            return None
        registry = self._registry()
        node = await registry.get(owner)
        return node if node is not None and registry.is_fresh(node) else None

    def all_regions(self) -> list[str]:
        return [self.settings.region, *self.settings.peer_regions]

    def is_home(self, room: str) -> bool:
        return room_home(room, self.all_regions()) == self.settings.region

    def redirect_to(self, region: str) -> RoomElsewhere | None:
        """Where to send a client for ``region``; None when its URLs are not configured."""
        urls = self.settings.peer_signal_urls.get(region)
        return RoomElsewhere(region, list(urls)) if urls else None

    async def reserve(self, room: str, holder: str, stale: str | None = None) -> str:
        """Record in this (home) region that ``holder`` holds ``room``, unless another region
        does (``stale``: a holder known not to host it any more); returns the holder."""
        result = await self.redis.eval(
            RESERVE_SCRIPT, 1, reservation_key(room), holder, stale or "", str(RESERVATION_TTL_S)
        )
        return str(result)

    async def ask_regions(self, room: str) -> dict[str, RoomElsewhere | Unreachable | None]:
        """Ask every other region, concurrently and within a bound, whether it hosts ``room``:
        where it lives, ``None`` (not there; the room's home has then reserved it for this
        region), or ``UNREACHABLE``."""
        http = self._http()
        if not self.settings.peer_regions or http is None:
            return {}
        secret = self.settings.cluster_secret.get_secret_value()
        headers = {"Authorization": f"Bearer {secret}"}
        asker = {"for": self.settings.region}

        async def ask(region: str, urls: list[str]) -> RoomElsewhere | Unreachable | None:
            for url in urls:
                try:
                    async with http.get(
                        f"{url.rstrip('/')}/internal/rooms/{room}", headers=headers, params=asker
                    ) as response:
                        if response.status == 404:
                            return None
                        if response.status == 200:
                            body = await response.json()
                            return RoomElsewhere(body["region"], list(body["signal_urls"]))
                except (TimeoutError, aiohttp.ClientError, ValueError, KeyError):
                    continue
            return UNREACHABLE

        regions = list(self.settings.peer_regions)
        answers = await asyncio.gather(
            *(ask(region, self.settings.peer_regions[region]) for region in regions),
            return_exceptions=True,
        )
        return {
            region: UNREACHABLE if isinstance(answer, BaseException) else answer
            for region, answer in zip(regions, answers, strict=True)
        }

    async def may_create(
        self,
        room: str,
        answers: dict[str, RoomElsewhere | Unreachable | None],
        unreachable: frozenset[str],
    ) -> None:
        """Raise ``RoomElsewhere`` unless this region may create ``room`` now (see
        ``gateway_node.room_home``); ``unreachable``: regions the client cannot reach."""
        found = [a for a in answers.values() if isinstance(a, RoomElsewhere)]
        if found:
            ranked = self.settings.ordered_regions()
            found.sort(key=lambda a: ranked.index(a.region) if a.region in ranked else len(ranked))
            raise found[0]
        home = room_home(room, self.all_regions())
        if home != self.settings.region:
            if answers.get(home) is UNREACHABLE and home not in unreachable:
                redirect = self.redirect_to(home)
                if redirect is not None:
                    raise redirect
            return
        holder = await self.reserve(room, self.settings.region)
        if holder == self.settings.region:
            return
        # reserved by another region that did not say it hosts the room
        if answers.get(holder) is UNREACHABLE and holder not in unreachable:
            redirect = self.redirect_to(holder)
            if redirect is not None:
                raise redirect
        await self.reserve(room, self.settings.region, stale=holder)

    async def place(
        self,
        room: str,
        *,
        look_elsewhere: bool = True,
        avoid: str | None = None,
        unreachable: frozenset[str] = frozenset(),
    ) -> NodeState:
        """The node that hosts ``room``: its live owner, or a newly claimed least-loaded node.

        ``avoid``: a node believed dead before its heartbeat goes stale; the room moves off it.
        Raises ``RoomElsewhere`` when the room is new here but live in another region.
        """
        registry = self._registry()
        if look_elsewhere and await self.local_owner(room) is None:
            await self.may_create(room, await self.ask_regions(room), unreachable)
        for _ in range(PLACEMENT_ATTEMPTS):
            nodes = {node.node_id: node for node in await registry.nodes()}
            if avoid is not None:
                nodes.pop(avoid, None)
            now = time.time()
            owner = cast(str | None, await self.redis.get(bus.room_key(room)))
            if owner in nodes and nodes[owner].is_fresh(now, registry.stale_after):
                return nodes[owner]
            chosen = select_node(
                placeable(nodes.values(), now, registry.stale_after),
                self.settings.ordered_regions(),
            )
            claimed = await claim_room(self.redis, room, owner, chosen.node_id)
            if claimed == chosen.node_id:
                self.metrics.placements.inc()
                return chosen
        raise NoAvailableNodes(f"room {room!r} could not be claimed")
