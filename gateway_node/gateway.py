"""The gateway's shared state and background loops.

A gateway is stateless in the sense that matters: everything a client's session needs lives in
the region's Redis, so any gateway serves any client. What a gateway holds in memory is only
the WebSockets connected to it and where each one has read up to in its session stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from gateway_node.metrics import GatewayMetrics
from gateway_node.placement import NoAvailableNodes, claim_room, placeable, select_node
from gateway_node.registry import NodeRegistry
from gateway_node.replication import SettingsReplication
from gateway_node.settings import GatewaySettings
from rtcfleet import bus, settings_store
from rtcfleet.nodes import NodeState
from rtcfleet.redis_url import connect
from rtcfleet.signaling import IceServer, Reconnect
from rtcfleet.tokens import Grant, turn_credentials

log = logging.getLogger("rtcfleet.gateway")

RELAY_BLOCK_MS = 1000
MONITOR_INTERVAL_S = 0.5
KEEPALIVE_INTERVAL_S = 5.0
PLACEMENT_ATTEMPTS = 3


class RoomElsewhere(Exception):
    """The room is live in another region; the client should join it there."""

    def __init__(self, region: str, urls: list[str]) -> None:
        super().__init__(f"room lives in {region}")
        self.region = region
        self.urls = urls


@dataclass
class Session:
    """A client session whose signaling socket is connected to this gateway."""

    session_id: str
    grant: Grant
    node_id: str
    ws: web.WebSocketResponse
    cursor: str = "0-0"
    reconnect_sent: bool = False
    delivered: int = 0
    placed_at: float = field(default_factory=time.time)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def deliver(self, cursor: str, message: dict[str, Any]) -> bool:
        if self.ws.closed:
            return False
        try:
            await self.ws.send_str(json.dumps(message | {"cursor": cursor}))
        except (ConnectionError, RuntimeError):
            return False
        self.cursor = cursor
        self.delivered += 1
        return True


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.id = settings.gateway_id
        self.metrics = GatewayMetrics()
        self.sessions: dict[str, Session] = {}
        self._redis: aioredis.Redis | None = None
        self._pg: asyncpg.Pool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._fresh_nodes: set[str] = set()
        self._http: aiohttp.ClientSession | None = None
        self.replication = SettingsReplication(
            settings.region,
            settings.settings_replica_dsn,
            lambda: self.postgres,
            self.metrics,
            subscription=settings.settings_subscription,
            writer_conninfo=settings.postgres_dsn,
        )

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("gateway not started")
        return self._redis

    @property
    def registry(self) -> NodeRegistry:
        return NodeRegistry(self.redis, self.settings.node_stale_seconds)

    async def start(self) -> None:
        self._redis = connect(self.settings.redis_url)
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.peer_lookup_timeout_seconds)
        )
        self._tasks = [
            asyncio.create_task(self._relay_loop(), name="relay"),
            asyncio.create_task(self._monitor_loop(), name="monitor"),
            asyncio.create_task(self._keepalive_loop(), name="keepalive"),
            asyncio.create_task(self._connect_postgres(), name="postgres"),
            asyncio.create_task(self.replication.run(), name="settings-replication"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for session in list(self.sessions.values()):
            await session.ws.close()
        if self._http is not None:
            await self._http.close()
        if self._pg is not None:
            await self._pg.close()
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.srem(bus.GATEWAYS, self.id)
            await self._redis.aclose()

    async def _connect_postgres(self) -> None:
        """Keep trying: the gateway serves signaling while Postgres is still coming up."""
        dsn = self.settings.postgres_dsn.get_secret_value()
        while self._pg is None:
            try:
                pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, timeout=5)
                async with pool.acquire() as conn:
                    await settings_store.ensure_schema(conn)
                self._pg = pool
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("postgres not reachable yet: %s", exc)
                await asyncio.sleep(1.0)

    @property
    def postgres(self) -> asyncpg.Pool:
        if self._pg is None:
            raise ConnectionError("postgres is not connected")
        return self._pg

    # ---- health ---------------------------------------------------------------------------

    async def readiness(self) -> list[str]:
        """Reasons this gateway should not get traffic; empty when it is ready."""
        reasons = []
        try:
            await asyncio.wait_for(self.redis.ping(), 2)
            nodes = await self.registry.nodes()
            if not any(self.registry.is_fresh(node) for node in nodes):
                reasons.append("no media node with a fresh heartbeat")
        except (TimeoutError, RedisError, OSError) as exc:
            reasons.append(f"redis unreachable: {exc}")
        try:
            async with self.postgres.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
        except (TimeoutError, ConnectionError, OSError, asyncpg.PostgresError) as exc:
            reasons.append(f"postgres unreachable: {exc}")
        return reasons

    # ---- placement ------------------------------------------------------------------------

    async def local_owner(self, room: str) -> NodeState | None:
        """The fresh node of this region that hosts ``room``, if any."""
        owner = cast(str | None, await self.redis.get(bus.room_key(room)))
        if owner is None:
            return None
        node = await self.registry.get(owner)
        return node if node is not None and self.registry.is_fresh(node) else None

    async def find_remote(self, room: str) -> RoomElsewhere | None:
        """Ask every other region, concurrently and within a bound, whether it hosts ``room``.

        An unreachable or slow region is skipped: a region outage must not block joins here.
        """
        if not self.settings.peer_regions or self._http is None:
            return None
        secret = self.settings.cluster_secret.get_secret_value()
        headers = {"Authorization": f"Bearer {secret}"}

        async def ask(region: str, urls: list[str]) -> RoomElsewhere | None:
            assert self._http is not None
            for url in urls:
                try:
                    async with self._http.get(
                        f"{url.rstrip('/')}/internal/rooms/{room}", headers=headers
                    ) as response:
                        if response.status == 404:
                            return None
                        if response.status == 200:
                            body = await response.json()
                            return RoomElsewhere(body["region"], list(body["signal_urls"]))
                except (TimeoutError, aiohttp.ClientError, ValueError, KeyError):
                    continue
            return None

        answers = await asyncio.gather(
            *(ask(region, urls) for region, urls in self.settings.peer_regions.items()),
            return_exceptions=True,
        )
        found = [a for a in answers if isinstance(a, RoomElsewhere)]
        ranked = self.settings.ordered_regions()
        found.sort(key=lambda a: ranked.index(a.region) if a.region in ranked else len(ranked))
        return found[0] if found else None

    async def place(self, room: str, *, look_elsewhere: bool = True) -> NodeState:
        """The node that hosts ``room``: its live owner, or a newly claimed least-loaded node.

        Raises ``RoomElsewhere`` when the room is new here but live in another region.
        """
        registry = self.registry
        if look_elsewhere and await self.local_owner(room) is None:
            elsewhere = await self.find_remote(room)
            if elsewhere is not None:
                raise elsewhere
        for _ in range(PLACEMENT_ATTEMPTS):
            nodes = {node.node_id: node for node in await registry.nodes()}
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

    def ice_servers(self, identity: str, node_address: str | None = None) -> list[IceServer]:
        """STUN and TURN for a session: the configured servers, then its media node's coturn."""
        settings = self.settings
        stun = list(settings.stun_urls)
        turn = list(settings.turn_urls)
        port = settings.node_turn_port
        if node_address and port and settings.turn_secret is not None:
            host = f"[{node_address}]" if ":" in node_address else node_address
            stun.append(f"stun:{host}:{port}")
            turn += [f"turn:{host}:{port}?transport=udp", f"turn:{host}:{port}?transport=tcp"]
        servers = [IceServer(urls=stun)] if stun else []
        if turn and settings.turn_secret is not None:
            username, credential = turn_credentials(
                settings.turn_secret.get_secret_value(), identity, settings.turn_ttl_seconds
            )
            servers.append(IceServer(urls=turn, username=username, credential=credential))
        return servers

    def fallback_urls(self) -> list[str]:
        own = self.settings.public_url
        return [url for url in self.settings.fallback_urls if url != own]

    # ---- sessions -------------------------------------------------------------------------

    @staticmethod
    def new_session_id() -> str:
        return uuid.uuid4().hex

    async def save_session(self, session_id: str, grant: Grant, node_id: str) -> None:
        key = bus.session_key(session_id)
        record: dict[str, str | int] = {
            "room": grant.room,
            "identity": grant.identity,
            "can_publish": int(grant.can_publish),
            "can_subscribe": int(grant.can_subscribe),
            "node_id": node_id,
            "gateway_id": self.id,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=record)  # type: ignore[arg-type]  # Mapping's key invariance
            pipe.expire(key, bus.SESSION_TTL_SECONDS)
            await pipe.execute()

    async def load_session(self, session_id: str) -> dict[str, str] | None:
        record = await self.redis.hgetall(bus.session_key(session_id))
        return cast(dict[str, str], record) or None

    async def attach(self, session: Session) -> None:
        self.sessions[session.session_id] = session
        self.metrics.clients.set(len(self.sessions))
        await self.redis.hset(bus.session_key(session.session_id), "gateway_id", self.id)
        await self._wake_relay()

    def detach(self, session: Session) -> None:
        if self.sessions.get(session.session_id) is session:
            del self.sessions[session.session_id]
        self.metrics.clients.set(len(self.sessions))

    async def end_session(self, session: Session) -> None:
        """An explicit leave: tell the node, forget the session everywhere."""
        self.detach(session)
        await bus.send_to_node(
            self.redis,
            session.node_id,
            {"op": "leave", "session": session.session_id, "room": session.grant.room},
        )
        await self.redis.delete(
            bus.session_key(session.session_id), bus.session_stream(session.session_id)
        )

    async def _wake_relay(self) -> None:
        await self.redis.xadd(bus.gateway_wake(self.id), {"w": "1"}, maxlen=16)

    # ---- loops ----------------------------------------------------------------------------

    async def _relay_loop(self) -> None:
        """Move server messages from session streams to this gateway's sockets, in order."""
        wake = bus.gateway_wake(self.id)
        while True:
            streams = {wake: "$"}
            sessions = list(self.sessions.values())
            for session in sessions:
                streams[bus.session_stream(session.session_id)] = session.cursor
            try:
                result = await bus.read_streams(self.redis, streams, RELAY_BLOCK_MS)
            except (RedisError, OSError) as exc:
                log.warning("relay read failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for stream, entries in result:
                if stream == wake:
                    continue
                session_id = stream[len(bus.PREFIX) + len("sess:") : -len(":out")]
                target = self.sessions.get(session_id)
                if target is None:
                    continue
                for cursor, fields in entries:
                    message = bus.decode_entry(fields)
                    self.metrics.messages.labels("out", message.get("type", "?")).inc()
                    if not await target.deliver(cursor, message):
                        break

    async def _monitor_loop(self) -> None:
        """Notice dead media nodes and tell their sessions to place their media again."""
        while True:
            try:
                await self._check_nodes()
            except (RedisError, OSError) as exc:
                log.warning("node monitor failed: %s", exc)
            await asyncio.sleep(MONITOR_INTERVAL_S)

    async def _check_nodes(self) -> None:
        snapshot_at = time.time()
        nodes = await self.registry.nodes()
        now = time.time()
        fresh = {n.node_id for n in nodes if n.is_fresh(now, self.settings.node_stale_seconds)}
        self._fresh_nodes = fresh
        draining = sum(1 for n in nodes if n.node_id in fresh and n.draining)
        self.metrics.nodes.labels("healthy").set(len(fresh) - draining)
        self.metrics.nodes.labels("draining").set(draining)
        self.metrics.nodes.labels("stale").set(len(nodes) - len(fresh))
        for session in list(self.sessions.values()):
            # a session placed after the snapshot may sit on a node the snapshot predates
            placed_before = session.placed_at < snapshot_at
            if placed_before and session.node_id not in fresh and not session.reconnect_sent:
                session.reconnect_sent = True
                log.info(
                    "node %s lost: session %s must rejoin", session.node_id, session.session_id
                )
                message = Reconnect(reason="media_node_lost").model_dump(mode="json")
                await bus.send_to_session(self.redis, session.session_id, message)

    async def _keepalive_loop(self) -> None:
        """Keep connected sessions alive in Redis and publish this gateway's client count."""
        while True:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for session_id in self.sessions:
                        pipe.expire(bus.session_key(session_id), bus.SESSION_TTL_SECONDS)
                    pipe.set(
                        bus.gateway_key(self.id),
                        json.dumps(
                            {
                                "gateway_id": self.id,
                                "region": self.settings.region,
                                "clients": len(self.sessions),
                            }
                        ),
                        ex=int(KEEPALIVE_INTERVAL_S * 3),
                    )
                    pipe.sadd(bus.GATEWAYS, self.id)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("keepalive failed: %s", exc)
            await asyncio.sleep(KEEPALIVE_INTERVAL_S)

    async def gateways(self) -> list[dict[str, Any]]:
        ids = sorted(cast(set[str], await self.redis.smembers(bus.GATEWAYS)))
        if not ids:
            return []
        raws = await self.redis.mget([bus.gateway_key(i) for i in ids])
        return [json.loads(raw) for raw in raws if raw]
