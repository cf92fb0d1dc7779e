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
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError, ResponseError

from gateway_node.health import RegionHealth
from gateway_node.metrics import GatewayMetrics
from gateway_node.placement import NoAvailableNodes, claim_room, placeable, select_node
from gateway_node.registry import NodeRegistry
from gateway_node.replication import SettingsReplication
from gateway_node.room_home import RESERVATION_TTL_S, reservation_key, room_home
from gateway_node.settings import GatewaySettings
from gateway_node.settings_copy import SettingsCopy
from rtcfleet import bus, settings_store, tracing
from rtcfleet.node_messages import NodeLeave
from rtcfleet.nodes import NodeState
from rtcfleet.redis_url import connect
from rtcfleet.signaling import IceServer, Reconnect
from rtcfleet.tokens import Grant, turn_credentials

log = logging.getLogger("rtcfleet.gateway")

RELAY_BLOCK_MS = 1000
MONITOR_INTERVAL_S = 0.5
KEEPALIVE_INTERVAL_S = 5.0
PLACEMENT_ATTEMPTS = 3
# Messages queued for one client before it counts as not reading and is disconnected.
SESSION_SEND_QUEUE = 256
SESSION_SEND_TIMEOUT_S = 10.0
SESSION_CLOSE_TIMEOUT_S = 2.0
# WebSocket close code for a client that let its queue fill ("try again later")
WS_CLOSE_SLOW_READER = 1013

# A client that lost its media names its node; the gateway believes it once the node has also
# missed a heartbeat (1.5 intervals without one): a client's own network problem then does not
# move a room off a node that is fine, and a dead node loses its rooms in seconds, not at
# staleness.
SUSPECT_AFTER_BEATS = 1.5


# SET the reservation to ARGV[1] unless another region holds it; ARGV[2] is a holder known to
# be stale (empty: none). Returns the holder afterwards.
_RESERVE = """
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


@dataclass
class Session:
    """A client session whose signaling socket is connected to this gateway.

    Messages for the client wait in a bounded queue that one writer task drains, so the relay
    never waits for a socket: a client that stops reading fills only its own queue, and at the
    bound it is disconnected (it resumes from its last cursor once it reads again).
    """

    session_id: str
    grant: Grant
    node_id: str
    ws: web.WebSocketResponse
    # how far the relay has read this session's stream (queued, not necessarily sent yet)
    cursor: str = "0-0"
    reconnect_sent: bool = False
    delivered: int = 0
    placed_at: float = field(default_factory=time.time)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    outbox: asyncio.Queue[str] = field(
        default_factory=lambda: asyncio.Queue(maxsize=SESSION_SEND_QUEUE)
    )
    overflowed: bool = False
    # the socket's transport, cut when a closing handshake cannot get through a full buffer
    transport: asyncio.Transport | None = None
    _writer: asyncio.Task[None] | None = None

    def offer(self, cursor: str, message: dict[str, Any]) -> bool:
        """Queue one message without waiting; False once the client is too slow or gone."""
        if self.ws.closed or self.overflowed:
            return False
        try:
            self.outbox.put_nowait(json.dumps(message | {"cursor": cursor}))
        except asyncio.QueueFull:
            self.overflowed = True
            return False
        self.cursor = cursor
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name=f"send-{self.session_id}")
        return True

    async def _write(self) -> None:
        try:
            while True:
                text = await self.outbox.get()
                await asyncio.wait_for(self.ws.send_str(text), SESSION_SEND_TIMEOUT_S)
                self.delivered += 1
        except TimeoutError:
            self.overflowed = True
            log.warning(
                "session %s did not take a message in %.0f s: disconnected",
                self.session_id,
                SESSION_SEND_TIMEOUT_S,
            )
            await self.disconnect(WS_CLOSE_SLOW_READER, "slow reader")
        except (ConnectionError, RuntimeError):
            self.overflowed = True

    async def disconnect(self, code: int, reason: str) -> None:
        """Close the socket without waiting on a client that does not read."""
        try:
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode()), SESSION_CLOSE_TIMEOUT_S
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            if self.transport is not None:
                self.transport.abort()

    def stop(self) -> None:
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()


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
        self._unseen_since: dict[str, float] = {}
        self._http: aiohttp.ClientSession | None = None
        self.platform = SettingsCopy()
        self.metrics.settings_age.set_function(lambda: self.platform.age() or float("inf"))
        self.region_health = RegionHealth(self)
        self._background: set[asyncio.Task[object]] = set()
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

    @property
    def heartbeat_interval(self) -> float:
        """How often media nodes beat (told to them at registration)."""
        return min(1.0, self.settings.node_stale_seconds / 5)

    async def node_suspect(self, node_id: str) -> bool:
        """Has the node missed a heartbeat (or left the registry)? Corroborates a client's
        report that its media died."""
        node = await self.registry.get(node_id)
        if node is None:
            return True
        return time.time() - node.heartbeat_at > SUSPECT_AFTER_BEATS * self.heartbeat_interval

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
            asyncio.create_task(self._settings_loop(), name="settings"),
            asyncio.create_task(self.replication.run(), name="settings-replication"),
        ]
        self.region_health.start()

    async def close(self) -> None:
        await self.region_health.stop()
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
            # a hung writer must not hold the gateway's shutdown
            try:
                await asyncio.wait_for(self._pg.close(), 5)
            except TimeoutError:
                self._pg.terminate()
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.srem(bus.GATEWAYS, self.id)
            await self._redis.aclose()

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Run ``coro`` in the background, holding a reference until it ends."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        """The settings writer; only admin writes use it, never a join or a health signal."""
        if self._pg is None:
            raise ConnectionError("the settings database's read/write node is not connected")
        return self._pg

    async def _settings_loop(self) -> None:
        """Keep a copy of the settings fresh; joins use the copy, never the database."""
        source = self.settings.settings_replica_dsn or self.settings.postgres_dsn
        while True:
            if not await self.platform.refresh(source.get_secret_value()):
                age = self.platform.age()
                log.warning(
                    "%s; serving %s",
                    self.platform.last_error,
                    "the defaults" if age is None else f"the settings read {age:.0f} s ago",
                )
            await asyncio.sleep(self.settings.settings_refresh_seconds)

    # ---- placement ------------------------------------------------------------------------

    async def local_owner(self, room: str) -> NodeState | None:
        """The fresh node of this region that hosts ``room``, if any."""
        owner = cast(str | None, await self.redis.get(bus.room_key(room)))
        if owner is None:
            return None
        node = await self.registry.get(owner)
        return node if node is not None and self.registry.is_fresh(node) else None

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
            _RESERVE, 1, reservation_key(room), holder, stale or "", str(RESERVATION_TTL_S)
        )
        return str(result)

    async def ask_regions(self, room: str) -> dict[str, RoomElsewhere | Unreachable | None]:
        """Ask every other region, concurrently and within a bound, whether it hosts ``room``:
        where it lives, ``None`` (not there; the room's home has then reserved it for this
        region), or ``UNREACHABLE``."""
        if not self.settings.peer_regions or self._http is None:
            return {}
        secret = self.settings.cluster_secret.get_secret_value()
        headers = {"Authorization": f"Bearer {secret}"}
        asker = {"for": self.settings.region}

        async def ask(region: str, urls: list[str]) -> RoomElsewhere | Unreachable | None:
            assert self._http is not None
            for url in urls:
                try:
                    async with self._http.get(
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
        registry = self.registry
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
        session.stop()
        self.metrics.clients.set(len(self.sessions))

    async def end_session(self, session: Session) -> None:
        """An explicit leave: tell the node, forget the session everywhere."""
        self.detach(session)
        await bus.send_to_node(
            self.redis,
            session.node_id,
            NodeLeave(session=session.session_id, room=session.grant.room),
        )
        stream = bus.session_stream(session.session_id)
        await self.redis.delete(
            bus.session_key(session.session_id), stream, bus.stream_bytes_key(stream)
        )

    async def _wake_relay(self) -> None:
        await self.redis.xadd(bus.gateway_wake(self.id), {"w": "1"}, maxlen=16)

    # ---- loops ----------------------------------------------------------------------------

    async def _relay_loop(self) -> None:
        """Move server messages from session streams to this gateway's sockets, in order.

        The loop only queues: a slow client is disconnected at its queue's bound, and a stream
        that makes Redis refuse the read (a cursor it rejects) costs only its own session.
        """
        wake = bus.gateway_wake(self.id)
        while True:
            streams = {wake: "$"}
            sessions = list(self.sessions.values())
            for session in sessions:
                streams[bus.session_stream(session.session_id)] = session.cursor
            try:
                result = await bus.read_streams(self.redis, streams, RELAY_BLOCK_MS)
            except ResponseError as exc:
                log.warning("relay read refused: %s", exc)
                await self._drop_unreadable(sessions)
                continue
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
                    kind = message.get("type", "?")
                    self.metrics.messages.labels("out", kind).inc()
                    with tracing.continued(f"deliver {kind}", fields):
                        queued = target.offer(cursor, message)
                    if not queued:
                        break
                if target.overflowed:
                    log.warning(
                        "session %s does not read its socket (%d queued): disconnected",
                        target.session_id,
                        target.outbox.qsize(),
                    )
                    self.detach(target)
                    self.metrics.errors.labels("slow_reader").inc()
                    self.spawn(target.disconnect(WS_CLOSE_SLOW_READER, "slow reader"))

    async def _drop_unreadable(self, sessions: list[Session]) -> None:
        """Find the sessions whose stream read Redis refuses and disconnect them alone."""
        for session in sessions:
            stream = bus.session_stream(session.session_id)
            try:
                await self.redis.xread({stream: session.cursor}, count=1)
            except ResponseError:
                log.warning("session %s has an unreadable cursor; dropped", session.session_id)
                self.detach(session)
                self.spawn(session.disconnect(1008, "unreadable cursor"))
            except (RedisError, OSError):
                return

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
        # a node counts as lost once it has been missing or stale for a whole staleness bound:
        # a node whose record Redis lost registers again within a heartbeat
        for node_id in fresh:
            self._unseen_since.pop(node_id, None)
        lost = set()
        for session in self.sessions.values():
            if session.node_id not in fresh:
                since = self._unseen_since.setdefault(session.node_id, now)
                if now - since >= self.settings.node_stale_seconds or any(
                    n.node_id == session.node_id for n in nodes
                ):
                    lost.add(session.node_id)
        for session in list(self.sessions.values()):
            # a session placed after the snapshot may sit on a node the snapshot predates
            placed_before = session.placed_at < snapshot_at
            if placed_before and session.node_id in lost and not session.reconnect_sent:
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
                sessions = list(self.sessions.values())
                async with self.redis.pipeline(transaction=False) as pipe:
                    for session in sessions:
                        pipe.expire(bus.session_key(session.session_id), bus.SESSION_TTL_SECONDS)
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
                    kept = await pipe.execute()
                # a record Redis lost (failover to a lagging replica) is written again, or the
                # media node would sweep a session whose client is still here
                for session, found in zip(sessions, kept, strict=False):
                    if not found and self.sessions.get(session.session_id) is session:
                        await self.save_session(session.session_id, session.grant, session.node_id)
            except (RedisError, OSError) as exc:
                log.warning("keepalive failed: %s", exc)
            await asyncio.sleep(KEEPALIVE_INTERVAL_S)

    async def gateways(self) -> list[dict[str, Any]]:
        ids = sorted(cast(set[str], await self.redis.smembers(bus.GATEWAYS)))
        if not ids:
            return []
        raws = await self.redis.mget([bus.gateway_key(i) for i in ids])
        return [json.loads(raw) for raw in raws if raw]
