"""The node's room-to-worker map: only a join places a room, and a join the worker never got
takes its room out again."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from media_node.worker_pool import WORKER_COMMAND_QUEUE
from rtcfleet import bus
from rtcfleet.node_messages import NodeJoin, NodeLeave, NodeTrickle
from rtcfleet.servers import RedisServer
from rtcfleet.signaling import MAX_NAME_LENGTH
from tests.media_node.conftest import queueing_node

# what one call renewing a node's rooms may carry (docs/admin.md, "Limits a client cannot move")
MAX_CALL_BYTES = 150 * 1024


def join(room: str, identity: str = "ann") -> NodeJoin:
    return NodeJoin(
        session=uuid.uuid4().hex, room=room, identity=identity, can_publish=True, can_subscribe=True
    )


async def test_commands_for_a_room_not_on_the_node_place_nothing(
    redis: aioredis.Redis, redis_server: RedisServer
) -> None:
    supervisor, handle = queueing_node(redis, redis_server.url)
    node_bus, pool = supervisor.bus, supervisor.pool
    room, session = f"gone-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    await node_bus.handle_command(NodeLeave(session=session, room=room))
    trickle = NodeTrickle(session=session, room=room, target="publisher", candidate=None)
    await node_bus.handle_command(trickle)
    assert room not in pool.room_worker
    assert handle.commands.empty(), "a command reached the worker"
    told = node_bus.outbox.get_nowait()
    assert told[0] == session and told[1]["code"] == "not_joined", told
    assert node_bus.outbox.empty(), "a leave of nothing is answered"


async def test_a_join_refused_as_busy_leaves_no_room_and_no_claim(
    redis: aioredis.Redis, redis_server: RedisServer
) -> None:
    supervisor, handle = queueing_node(redis, redis_server.url)
    node_bus, pool = supervisor.bus, supervisor.pool
    hosted = f"hosted-{uuid.uuid4().hex[:6]}"
    await node_bus.handle_command(join(hosted))
    while not handle.commands.full():
        handle.commands.put_nowait({"op": "settings"})
    assert handle.commands.qsize() == WORKER_COMMAND_QUEUE

    new = f"new-{uuid.uuid4().hex[:6]}"
    await node_bus.handle_command(join(new))
    assert new not in pool.room_worker and new not in handle.rooms
    await node_bus.handle_command(join(hosted, "bob"))
    assert pool.room_worker.get(hosted) is handle, "a room with a join on its worker went"

    answers = [node_bus.outbox.get_nowait() for _ in range(node_bus.outbox.qsize())]
    assert [m.get("release") or m.get("code") for _, m, _ in answers] == [
        new,
        "media_error",
        "media_error",
    ]
    await node_bus.release_empty(new)
    assert not await redis.exists(bus.room_key(new)), "the refused room's claim stayed"
    assert await redis.get(bus.room_key(hosted)) == supervisor.node_id


async def test_a_node_renews_a_thousand_longest_named_rooms_in_bounded_calls(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every claim and the whole room map are written, and no script call carries more than a
    batch of rooms: Redis runs a script alone, so one call for every room would stall it."""
    node_id = f"media-{uuid.uuid4().hex[:6]}"
    rooms = {
        (f"big-{i:04d}-" + uuid.uuid4().hex).ljust(MAX_NAME_LENGTH, "x"): 1 for i in range(1300)
    }
    taken = sorted(rooms)[700]
    await redis.set(bus.room_key(taken), "media-other")
    sizes: list[int] = []
    real_eval = redis.eval

    async def measured(script: str, numkeys: int, *args: str | int) -> object:
        sizes.append(sum(len(str(a)) for a in args))
        return await real_eval(script, numkeys, *args)

    monkeypatch.setattr(redis, "eval", measured)
    lost = await bus.hold_rooms(redis, node_id, rooms)
    print(f"{len(rooms)} rooms renewed in {len(sizes)} calls of at most {max(sizes)} bytes")
    assert lost == [taken]
    assert max(sizes) <= MAX_CALL_BYTES, sizes
    owners = await redis.mget([bus.room_key(r) for r in rooms])
    assert owners.count(node_id) == len(rooms) - 1
    assert len(await redis.hgetall(bus.node_rooms_key(node_id))) == len(rooms)
    assert not await redis.exists(bus.node_rooms_staging_key(node_id))

    # the map follows the rooms the node has now, and goes with the last of them
    left = dict(list(rooms.items())[:3])
    assert await bus.hold_rooms(redis, node_id, left) == []
    assert set(await redis.hgetall(bus.node_rooms_key(node_id))) == set(left)
    assert await bus.hold_rooms(redis, node_id, {}) == []
    assert not await redis.exists(bus.node_rooms_key(node_id))
