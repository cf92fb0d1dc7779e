"""The Redis layout shared by gateways and media nodes of one region.

Everything here is ephemeral: losing the region's Redis loses nothing clients cannot rebuild
by reconnecting. Messages between a client's gateway and its room's media node travel through
streams, so no gateway is sticky:

- ``node:{id}:in``  commands for a media node (join, offers, candidates, leave);
- ``sess:{id}:out`` server messages for one client session, kept briefly so a client that
  reconnects to another gateway resumes from its last cursor without losing a message.
"""

from __future__ import annotations

import json
from typing import Any, cast

import redis.asyncio as aioredis

PREFIX = "rtc:"
NODES = f"{PREFIX}nodes"
GATEWAYS = f"{PREFIX}gateways"
SESSION_STREAM_MAXLEN = 512
# how long a session outlives its last signaling connection before it is given up
SESSION_TTL_SECONDS = 30
ROOM_CLAIM_TTL_SECONDS = 30


def node_key(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


def node_inbox(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}:in"


def node_rooms_key(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}:rooms"


def node_drain_key(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}:drain"


def room_key(room: str) -> str:
    return f"{PREFIX}room:{room}"


def session_key(session_id: str) -> str:
    return f"{PREFIX}sess:{session_id}"


def session_stream(session_id: str) -> str:
    return f"{PREFIX}sess:{session_id}:out"


def gateway_key(gateway_id: str) -> str:
    return f"{PREFIX}gw:{gateway_id}"


def gateway_wake(gateway_id: str) -> str:
    return f"{PREFIX}gw:{gateway_id}:wake"


async def send_to_node(redis: aioredis.Redis, node_id: str, command: dict[str, Any]) -> None:
    await redis.xadd(node_inbox(node_id), {"m": json.dumps(command)}, maxlen=10_000)


async def send_to_session(redis: aioredis.Redis, session_id: str, message: dict[str, Any]) -> str:
    """Append a server message to the session's stream; returns its cursor."""
    stream = session_stream(session_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(stream, {"m": json.dumps(message)}, maxlen=SESSION_STREAM_MAXLEN)
        pipe.expire(stream, SESSION_TTL_SECONDS * 4)
        cursor, _ = await pipe.execute()
    return str(cursor)


StreamEntries = list[tuple[str, list[tuple[str, dict[str, str]]]]]


async def read_streams(
    redis: aioredis.Redis, streams: dict[str, str], block_ms: int, count: int = 256
) -> StreamEntries:
    """XREAD with the client's ``decode_responses=True`` shape spelled out for callers."""
    result = await redis.xread(streams, block=block_ms, count=count)  # type: ignore[arg-type]
    return cast(StreamEntries, result or [])


def decode_entry(fields: dict[str, str]) -> dict[str, Any]:
    value = json.loads(fields["m"])
    if not isinstance(value, dict):
        raise ValueError("bus entry is not an object")
    return value
