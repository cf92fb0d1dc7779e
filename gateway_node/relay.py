"""The sessions connected to this gateway, and the loops that serve them.

The relay moves server messages from the sessions' streams in Redis to their sockets, in
order; the keepalive keeps the connected sessions' records alive and publishes this gateway's
client count. A gateway holds nothing else of a session: any gateway can take it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from gateway_node.metrics import GatewayMetrics
from gateway_node.sessions import (
    SESSION_CLOSE_TIMEOUT_S,
    WS_CLOSE_REPLACED,
    WS_CLOSE_SLOW_READER,
    Session,
    SessionStore,
)
from rtcfleet import bus, tracing
from rtcfleet.signaling import SessionReplaced

log = logging.getLogger("rtcfleet.gateway")

RELAY_BLOCK_MS = 1000
KEEPALIVE_INTERVAL_S = 5.0
SESSION_REPLACED = SessionReplaced.model_fields["type"].default


class Relay:
    def __init__(
        self,
        gateway_id: str,
        region: str,
        redis: Callable[[], aioredis.Redis],
        store: SessionStore,
        metrics: GatewayMetrics,
        spawn: Callable[[Coroutine[Any, Any, object]], None],
    ) -> None:
        """``redis``: the gateway's client once started; ``spawn``: runs a task it keeps."""
        self.gateway_id = gateway_id
        self.region = region
        self._redis = redis
        self.store = store
        self.metrics = metrics
        self.spawn = spawn
        self.sessions: dict[str, Session] = {}

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis()

    async def attach(self, session: Session) -> None:
        self.sessions[session.session_id] = session
        self.metrics.clients.set(len(self.sessions))
        await self.redis.hset(bus.session_key(session.session_id), "gateway_id", self.gateway_id)
        await self.redis.xadd(bus.gateway_wake(self.gateway_id), {"w": "1"}, maxlen=16)

    def detach(self, session: Session) -> None:
        if self.sessions.get(session.session_id) is session:
            del self.sessions[session.session_id]
        session.stop()
        self.metrics.clients.set(len(self.sessions))

    async def run(self) -> None:
        """Move server messages from session streams to this gateway's sockets, in order.

        The loop only queues: a slow client is disconnected at its queue's bound, and a stream
        that makes Redis refuse the read (a cursor it rejects) costs only its own session.
        """
        wake = bus.gateway_wake(self.gateway_id)
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
                    if kind == SESSION_REPLACED:
                        self.spawn(self._end_replaced(target))
                if target.overflowed:
                    log.warning(
                        "session %s does not read its socket (%d queued): disconnected",
                        target.session_id,
                        target.outbox.qsize(),
                    )
                    self.detach(target)
                    self.metrics.errors.labels("slow_reader").inc()
                    self.spawn(target.disconnect(WS_CLOSE_SLOW_READER, "slow reader"))

    async def _end_replaced(self, session: Session) -> None:
        """A newer join of its identity took its place: the news reaches the client, then the
        session goes everywhere (a resume of it finds nothing)."""
        await session.flush(SESSION_CLOSE_TIMEOUT_S)
        self.detach(session)
        stream = bus.session_stream(session.session_id)
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(
                bus.session_key(session.session_id), stream, bus.stream_bytes_key(stream)
            )
        await session.disconnect(WS_CLOSE_REPLACED, "session replaced")

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

    async def keepalive(self) -> None:
        """Keep connected sessions alive in Redis and publish this gateway's client count."""
        while True:
            try:
                sessions = list(self.sessions.values())
                async with self.redis.pipeline(transaction=False) as pipe:
                    for session in sessions:
                        pipe.expire(bus.session_key(session.session_id), bus.SESSION_TTL_SECONDS)
                    pipe.set(
                        bus.gateway_key(self.gateway_id),
                        json.dumps(
                            {
                                "gateway_id": self.gateway_id,
                                "region": self.region,
                                "clients": len(self.sessions),
                            }
                        ),
                        ex=int(KEEPALIVE_INTERVAL_S * 3),
                    )
                    pipe.sadd(bus.GATEWAYS, self.gateway_id)
                    kept = await pipe.execute()
                # a record Redis lost (failover to a lagging replica) is written again, or the
                # media node would sweep a session whose client is still here
                for session, found in zip(sessions, kept, strict=False):
                    if not found and self.sessions.get(session.session_id) is session:
                        await self.store.save(session.session_id, session.grant, session.node_id)
            except (RedisError, OSError) as exc:
                log.warning("keepalive failed: %s", exc)
            await asyncio.sleep(KEEPALIVE_INTERVAL_S)
