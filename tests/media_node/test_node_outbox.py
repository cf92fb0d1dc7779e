"""The node's outbox to Redis at its bound: no session is left with a hole in what it hears.

Redis stalls (here: the outbox loop has not run yet) while workers keep talking. A message for a
session that does not fit is not sent, nor is anything after it but one ``reconnect``, which
comes after everything the session was sent before; the client's rejoin brings it back to the
messages of its new state. A room's release that did not fit is made once there is room.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import redis.asyncio as aioredis

from media_node.node_bus import RESYNC_REASON, NodeBus
from media_node.worker_pool import WorkerPool
from rtcfleet import bus
from rtcfleet.node_messages import NodeJoin, NodeProbe, RoomEmpty, ToSession
from rtcfleet.servers import RedisServer
from rtcfleet.settings_store import PlatformSettings
from tests.media_node.conftest import (
    offline_node_settings,
    queueing_worker,
    wait_until,
)

LIMIT = 8


def join(session: str, room: str, identity: str) -> NodeJoin:
    return NodeJoin(
        session=session, room=room, identity=identity, can_publish=True, can_subscribe=True
    )


async def heard(redis: aioredis.Redis, session: str) -> list[dict[str, Any]]:
    entries = await redis.xrange(bus.session_stream(session)) or []
    return [json.loads(str((fields or {})["m"])) for _, fields in entries]


async def test_a_session_whose_message_does_not_fit_hears_nothing_more_but_reconnect(
    redis: aioredis.Redis, redis_server: RedisServer
) -> None:
    settings = offline_node_settings(redis_server.url)
    stopped = asyncio.Event()
    node_bus = NodeBus(settings.node_id, lambda: False, stopped, outbox_limit=LIMIT)
    pool = WorkerPool(settings, PlatformSettings, node_bus, stopped)
    # a worker that only queues the commands it is given
    handle = queueing_worker()
    pool.workers.append(handle)
    node_bus.attach(pool, redis)
    room, emptied = f"full-{uuid.uuid4().hex[:6]}", f"emptied-{uuid.uuid4().hex[:6]}"
    ann, bob = uuid.uuid4().hex, uuid.uuid4().hex
    await node_bus.handle_command(join(ann, room, "ann"))
    await node_bus.handle_command(join(bob, room, "bob"))
    await bus.claim_for(redis, emptied, settings.node_id)
    pool.worker_for(emptied)

    def worker_says(session: str, n: int) -> None:
        pool.receive(handle, ToSession(session=session, message={"type": "n", "n": n}).model_dump())

    for n in range(6):
        worker_says(ann, n)
    for n in range(2):
        worker_says(bob, n)
    assert node_bus.outbox.full()
    worker_says(ann, 6)  # does not fit: ann is owed a reconnect
    worker_says(bob, 2)
    worker_says(ann, 7)  # after it: not sent either
    pool.receive(handle, RoomEmpty(room=emptied).model_dump())
    await node_bus.handle_command(NodeProbe(probe="probe-x"))  # its answer goes; nothing raises

    outbox = asyncio.create_task(node_bus.outbox_loop())
    try:
        await wait_until(lambda: not node_bus.resync_owed, 10, "the reconnects queued")
        worker_says(ann, 8)  # ann has not rejoined: still part of what it drops
        await node_bus.handle_command(join(bob, room, "bob"))  # bob's rejoin
        worker_says(bob, 3)
        await wait_until(node_bus.outbox.empty, 10, "the outbox sent")
        await asyncio.sleep(0.2)  # the last one written
    finally:
        outbox.cancel()

    reconnect = {"type": "reconnect", "reason": RESYNC_REASON}
    assert await heard(redis, ann) == [*({"type": "n", "n": n} for n in range(6)), reconnect]
    assert await heard(redis, bob) == [
        {"type": "n", "n": 0},
        {"type": "n", "n": 1},
        reconnect,
        {"type": "n", "n": 3},
    ]
    assert await redis.get(bus.room_key(emptied)) is None, "the emptied room's claim is kept"
    assert node_bus.resync_told == {ann}
    # and the node keeps nothing of a session that leaves meanwhile
    node_bus.session_left(ann)
    assert not node_bus.resync_told
