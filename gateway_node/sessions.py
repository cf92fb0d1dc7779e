"""Client sessions: the record each one keeps in the region's Redis, and the connected socket.

A session outlives its socket: its record (room, identity, grants, media node) stays in Redis
for ``bus.SESSION_TTL_SECONDS`` after the socket drops, so the client resumes it on any
gateway of the region. A connected session's messages wait in a bounded queue of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from aiohttp import web

from rtcfleet import bus
from rtcfleet.node_messages import NodeLeave
from rtcfleet.tokens import Grant

log = logging.getLogger("rtcfleet.gateway")

# Messages queued for one client before it counts as not reading and is disconnected.
SESSION_SEND_QUEUE = 256
SESSION_SEND_TIMEOUT_S = 10.0
SESSION_CLOSE_TIMEOUT_S = 2.0
# WebSocket close code for a client that let its queue fill ("try again later")
WS_CLOSE_SLOW_READER = 1013
# WebSocket close code for a session a newer join of its identity replaced
WS_CLOSE_REPLACED = 4001


# one count per identity and room; its window starts with the first join and lasts ARGV[1] ms
_COUNT_JOIN = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


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
    _stopped: bool = False

    def offer(self, cursor: str, message: dict[str, Any]) -> bool:
        """Queue one message without waiting; False once the client is too slow or gone."""
        if self.ws.closed or self.overflowed or self._stopped:
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
        # asyncio.timeout, not wait_for: under Python 3.11 wait_for swallows a cancel that
        # lands as the send completes, and the stopped writer then waits on the queue forever
        try:
            while not self._stopped:
                text = await self.outbox.get()
                async with asyncio.timeout(SESSION_SEND_TIMEOUT_S):
                    await self.ws.send_str(text)
                self.delivered += 1
                self.outbox.task_done()
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

    async def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until every queued message is on the socket."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.outbox.join()

    async def disconnect(self, code: int, reason: str) -> None:
        """Close the socket without waiting on a client that does not read."""
        try:
            async with asyncio.timeout(SESSION_CLOSE_TIMEOUT_S):
                await self.ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            if self.transport is not None:
                self.transport.abort()

    def stop(self) -> None:
        """End the writer; a message the relay still offers afterwards starts no new one (a
        writer nobody stops waits forever and is collected pending)."""
        self._stopped = True
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()


class SessionStore:
    """Session records in the region's Redis, written by the gateway that holds the socket."""

    def __init__(self, redis: Callable[[], aioredis.Redis], gateway_id: str) -> None:
        """``redis``: the gateway's client, once it has started."""
        self._redis = redis
        self.gateway_id = gateway_id

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis()

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    async def save(self, session_id: str, grant: Grant, node_id: str) -> None:
        key = bus.session_key(session_id)
        record: dict[str, str | int] = {
            "room": grant.room,
            "identity": grant.identity,
            "can_publish": int(grant.can_publish),
            "can_subscribe": int(grant.can_subscribe),
            "node_id": node_id,
            "gateway_id": self.gateway_id,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=record)  # type: ignore[arg-type]  # Mapping's key invariance
            pipe.expire(key, bus.SESSION_TTL_SECONDS)
            await pipe.execute()

    async def count_join(self, grant: Grant, window_s: float) -> int:
        """Count a fresh join of the grant's identity in its room, across the region; returns
        the joins counted in the current window (which starts at its first join)."""
        count = await self.redis.eval(
            _COUNT_JOIN,
            1,
            bus.identity_joins_key(grant.room, grant.identity),
            int(window_s * 1000),
        )
        return int(count)

    async def load(self, session_id: str) -> dict[str, str] | None:
        record = await self.redis.hgetall(bus.session_key(session_id))
        return cast(dict[str, str], record) or None

    async def end(self, session: Session) -> None:
        """An explicit leave: tell the node, forget the session everywhere."""
        await bus.send_to_node(
            self.redis,
            session.node_id,
            NodeLeave(session=session.session_id, room=session.grant.room),
        )
        stream = bus.session_stream(session.session_id)
        await self.redis.delete(
            bus.session_key(session.session_id), stream, bus.stream_bytes_key(stream)
        )
