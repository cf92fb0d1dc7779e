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
from collections.abc import Mapping
from typing import Any, cast

import redis.asyncio as aioredis
from pydantic import BaseModel

from rtcfleet import tracing

PREFIX = "rtc:"
NODES = f"{PREFIX}nodes"
GATEWAYS = f"{PREFIX}gateways"
# Every stream is bounded in entries and in bytes; past either bound its oldest entries go.
# A live reader takes entries within milliseconds, so the bounds only ever bite a reader that
# is gone or far behind (its client is disconnected at the gateway's send queue long before).
SESSION_STREAM_MAXLEN = 512
SESSION_STREAM_MAX_BYTES = 1024 * 1024
NODE_INBOX_MAXLEN = 4096
NODE_INBOX_MAX_BYTES = 8 * 1024 * 1024
# a node's inbox outlives its last command by this long: a dead node's inbox goes on its own
NODE_INBOX_TTL_SECONDS = 60
# how long a session outlives its last signaling connection before it is given up
SESSION_TTL_SECONDS = 30
SESSION_STREAM_TTL_SECONDS = SESSION_TTL_SECONDS * 4
ROOM_CLAIM_TTL_SECONDS = 30
# every key above that outlives what made it, by how long: the region's Redis holds a
# session's state for up to the longest of these after the session ends (a load that keeps
# starting and ending sessions reaches its steady key count only after that long)
STATE_TTLS_SECONDS = {
    "session": SESSION_TTL_SECONDS,
    "session stream": SESSION_STREAM_TTL_SECONDS,
    "node inbox": NODE_INBOX_TTL_SECONDS,
    "room claim": ROOM_CLAIM_TTL_SECONDS,
}


def node_key(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


# A media node's Redis connections carry this name (CLIENT SETNAME): Redis closes them when the
# node's process dies, which gateways read from CLIENT LIST (gateway_node.node_monitor).
NODE_CLIENT_PREFIX = "rtcfleet-media:"


def node_client_name(node_id: str) -> str:
    return f"{NODE_CLIENT_PREFIX}{node_id}"


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


def session_rejoin_key(session_id: str) -> str:
    return f"{PREFIX}sess:{session_id}:rejoin"


def identity_joins_key(room: str, identity: str) -> str:
    """The count of recent fresh joins of one identity in one room (``/`` is in neither name)."""
    return f"{PREFIX}joins:{room}/{identity}"


def session_stream(session_id: str) -> str:
    return f"{PREFIX}sess:{session_id}:out"


def gateway_key(gateway_id: str) -> str:
    return f"{PREFIX}gw:{gateway_id}"


def gateway_wake(gateway_id: str) -> str:
    return f"{PREFIX}gw:{gateway_id}:wake"


def stream_bytes_key(stream: str) -> str:
    """The running total of a stream's payload bytes, kept beside it for its byte bound."""
    return f"{stream}:bytes"


# Append one entry (fields after ``m`` from ARGV[5] on: trace context), then drop the oldest
# until the stream is within both bounds; the byte total lives in a counter beside the stream
# (one script, so the two never disagree), and both keys expire together.
_APPEND = """
local id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[1], unpack(ARGV, 5))
local total = redis.call('INCRBY', KEYS[2], string.len(ARGV[1]))
local maxlen, maxbytes = tonumber(ARGV[2]), tonumber(ARGV[3])
while total > maxbytes or redis.call('XLEN', KEYS[1]) > maxlen do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #oldest == 0 or oldest[1][1] == id then break end
  local fields = oldest[1][2]
  local size = 0
  for i = 1, #fields, 2 do
    if fields[i] == 'm' then size = string.len(fields[i + 1]) end
  end
  redis.call('XDEL', KEYS[1], oldest[1][1])
  total = redis.call('DECRBY', KEYS[2], size)
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return id
"""


async def append_bounded(
    redis: aioredis.Redis,
    stream: str,
    payload: str,
    maxlen: int,
    max_bytes: int,
    ttl: int,
    fields: Mapping[str, str] | None = None,
) -> str:
    """XADD within an entry bound and a byte bound, dropping the oldest entries; the id.
    ``fields``: more entry fields beside the payload (trace context)."""
    extra = [item for pair in (fields or {}).items() for item in pair]
    entry_id = await redis.eval(
        _APPEND, 2, stream, stream_bytes_key(stream), payload, maxlen, max_bytes, ttl, *extra
    )
    return str(entry_id)


async def send_to_node(redis: aioredis.Redis, node_id: str, command: BaseModel) -> None:
    """Append a command (``rtcfleet.node_messages.NodeCommand``) to the node's stream, with
    the current trace context in the entry's fields."""
    stream = node_inbox(node_id)
    op = str(getattr(command, "op", "?"))
    with tracing.child_span(
        f"send {op}",
        kind=tracing.SpanKind.PRODUCER,
        attributes={"messaging.system": "redis", "messaging.destination.name": stream},
    ):
        await append_bounded(
            redis,
            stream,
            command.model_dump_json(),
            NODE_INBOX_MAXLEN,
            NODE_INBOX_MAX_BYTES,
            NODE_INBOX_TTL_SECONDS,
            tracing.carrier(),
        )


async def send_to_session(
    redis: aioredis.Redis,
    session_id: str,
    message: dict[str, Any],
    trace: Mapping[str, str] | None = None,
) -> str:
    """Append a server message to the session's stream; returns its cursor. ``trace``: the
    context it answers (from a worker), else the current one."""
    return await append_bounded(
        redis,
        session_stream(session_id),
        json.dumps(message),
        SESSION_STREAM_MAXLEN,
        SESSION_STREAM_MAX_BYTES,
        SESSION_STREAM_TTL_SECONDS,
        tracing.carrier() if trace is None else trace,
    )


# The stream's only reader has taken every entry up to ARGV[1]: they go, and the byte count
# beside the stream goes down by their payload (a count that expired is not made again).
_DROP_TAKEN = """
local taken = redis.call('XRANGE', KEYS[1], '-', ARGV[1])
local size = 0
for _, entry in ipairs(taken) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'm' then size = size + string.len(fields[i + 1]) end
  end
  redis.call('XDEL', KEYS[1], entry[1])
end
if size > 0 and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DECRBY', KEYS[2], size) end
return #taken
"""


async def drop_taken(redis: aioredis.Redis, stream: str, last_id: str) -> int:
    """Delete a stream's entries up to ``last_id`` once its only reader has taken them (a node's
    inbox): what was read is of no use to anyone, and would fill the stream to its bounds."""
    return int(await redis.eval(_DROP_TAKEN, 2, stream, stream_bytes_key(stream), last_id))


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


# A node keeps its rooms' claims: extends its own, re-asserts lost ones (a Redis failover to a
# replica that missed the write, a restart), and reports the rooms another node holds (a split
# it must not deepen). Its room map is written beside, for the admin console: built in a staging
# hash over the batches of one renewal and renamed into place by the last, so a reader never
# sees half a map.
_HOLD_ROOMS = """
local node, ttl, first, last = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local staging, rooms = KEYS[#KEYS - 1], KEYS[#KEYS]
local lost = {}
if first == '1' then redis.call('DEL', staging) end
for i = 1, #KEYS - 2 do
  local owner = redis.call('GET', KEYS[i])
  if owner == false or owner == node then
    redis.call('SET', KEYS[i], node, 'EX', ttl)
  else
    table.insert(lost, i)
  end
end
for i = 5, #ARGV, 2 do redis.call('HSET', staging, ARGV[i], ARGV[i + 1]) end
if redis.call('EXISTS', staging) == 1 then redis.call('EXPIRE', staging, ttl) end
if last == '1' then
  if redis.call('EXISTS', staging) == 1 then
    redis.call('RENAME', staging, rooms)
  else
    redis.call('DEL', rooms)
  end
end
return lost
"""
# rooms per script call. Redis runs a script alone: one call renewing every room of a busy node
# would hold it for the whole loop, and carries about 270 bytes per room at the longest names
# (claim key, name, count); a batch carries at most about 140 KB
HOLD_ROOMS_BATCH = 512


def node_rooms_staging_key(node_id: str) -> str:
    return f"{node_rooms_key(node_id)}:next"


async def hold_rooms(
    redis: aioredis.Redis, node_id: str, room_participants: dict[str, int]
) -> list[str]:
    """Claim or extend every room the node hosts; returns the rooms another node holds."""
    rooms = sorted(room_participants)
    staging = [node_rooms_staging_key(node_id), node_rooms_key(node_id)]
    lost: list[str] = []
    starts = range(0, len(rooms), HOLD_ROOMS_BATCH) if rooms else range(1)
    for start in starts:
        batch = rooms[start : start + HOLD_ROOMS_BATCH]
        keys = [room_key(room) for room in batch] + staging
        first, last = start == 0, start + HOLD_ROOMS_BATCH >= len(rooms)
        args: list[str | int] = [node_id, ROOM_CLAIM_TTL_SECONDS, int(first), int(last)]
        for room in batch:
            args += [room, room_participants[room]]
        taken = await redis.eval(_HOLD_ROOMS, len(keys), *keys, *args)
        lost += [batch[int(index) - 1] for index in taken]
    return lost


async def release_room(redis: aioredis.Redis, room: str, node_id: str) -> None:
    """Drop ``node_id``'s claim on ``room`` (a claim naming another node stays)."""
    await redis.eval(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end",
        1,
        room_key(room),
        node_id,
    )


async def claim_for(redis: aioredis.Redis, room: str, node_id: str) -> str:
    """Claim ``room`` for ``node_id`` unless another node holds it; returns the holder."""
    owner = await redis.eval(
        "local o = redis.call('GET', KEYS[1]) "
        "if o == false or o == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) "
        "return ARGV[1] end return o",
        1,
        room_key(room),
        node_id,
        ROOM_CLAIM_TTL_SECONDS,
    )
    return str(owner)
