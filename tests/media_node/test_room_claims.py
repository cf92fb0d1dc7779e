"""A room's claim on a real Redis: an emptied room's release racing a join must not split it."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from gateway_node.placement import claim_room
from rtcfleet import bus
from rtcfleet.node_messages import NodeJoin, RoomEmpty
from rtcfleet.servers import RedisServer
from tests.media_node.conftest import queueing_node


async def test_a_join_handled_before_the_emptied_rooms_release_keeps_the_claim(
    redis: aioredis.Redis, redis_server: RedisServer
) -> None:
    """The last participant left (the release waits in the outbox behind other messages) and
    a join the gateway sent to this node, the room's holder, is handled first: the release
    must not land after it, or the next join is placed on another node beside this one."""
    supervisor, handle = queueing_node(redis, redis_server.url)
    node_bus, pool = supervisor.bus, supervisor.pool
    room = f"emptied-{uuid.uuid4().hex[:6]}"
    assert await bus.claim_for(redis, room, supervisor.node_id) == supervisor.node_id
    pool.worker_for(room)

    pool.receive(handle, RoomEmpty(room=room).model_dump())
    assert room not in pool.room_worker
    join = NodeJoin(
        session=uuid.uuid4().hex, room=room, identity="ann", can_publish=True, can_subscribe=True
    )
    await node_bus.handle_command(join)
    assert pool.room_worker[room] is handle
    assert handle.commands.get_nowait()["op"] == "join"

    outbox = asyncio.create_task(node_bus.outbox_loop())
    try:
        while not node_bus.outbox.empty():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the release, had it gone, is in Redis by now
    finally:
        outbox.cancel()
    assert await redis.get(bus.room_key(room)) == supervisor.node_id, "claim released"
    # the next join, on any gateway, finds the room here
    assert await claim_room(redis, room, None, "media-other") == supervisor.node_id
    await node_bus.hold_rooms()
    assert await redis.get(bus.room_key(room)) == supervisor.node_id


async def test_a_join_on_its_way_to_the_worker_as_the_room_empties_keeps_room_and_claim(
    redis: aioredis.Redis, redis_server: RedisServer
) -> None:
    """The worker said the room is empty before it read a join the node had already sent it:
    the worker hosts the room again a moment later, so the node keeps it and its claim."""
    supervisor, handle = queueing_node(redis, redis_server.url)
    node_bus, pool = supervisor.bus, supervisor.pool
    room = f"refilled-{uuid.uuid4().hex[:6]}"
    await bus.claim_for(redis, room, supervisor.node_id)
    pool.worker_for(room)
    join = NodeJoin(
        session=uuid.uuid4().hex, room=room, identity="bob", can_publish=True, can_subscribe=True
    )
    await node_bus.handle_command(join)

    pool.receive(handle, RoomEmpty(room=room, joins=0).model_dump())
    assert pool.room_worker.get(room) is handle, "a room with a join on its way was dropped"
    assert node_bus.outbox.empty(), "its claim is being released"
    assert await claim_room(redis, room, None, "media-other") == supervisor.node_id
    # once that join's participant has left in turn, the room goes
    pool.receive(handle, RoomEmpty(room=room, joins=1).model_dump())
    assert room not in pool.room_worker
    assert node_bus.outbox.get_nowait()[:2] == (None, {"release": room})


async def test_an_emptied_room_with_no_join_since_is_released(
    redis: aioredis.Redis, redis_server: RedisServer
) -> None:
    supervisor, handle = queueing_node(redis, redis_server.url)
    node_bus, pool = supervisor.bus, supervisor.pool
    room = f"emptied-{uuid.uuid4().hex[:6]}"
    await bus.claim_for(redis, room, supervisor.node_id)
    pool.worker_for(room)
    pool.receive(handle, RoomEmpty(room=room).model_dump())
    await node_bus.release_empty(room)
    assert await redis.get(bus.room_key(room)) is None
    assert await claim_room(redis, room, None, "media-other") == "media-other"
