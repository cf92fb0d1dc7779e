"""Evacuation against a real Redis: the pacing, the claims given up, the sessions told."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from media_node import evacuation
from media_node.evacuation import Evacuation, schedule
from media_node.supervisor import Supervisor
from rtcfleet import bus
from rtcfleet.node_messages import AnyNodeCommand, NodeJoin, NodeLeave, ToSession
from rtcfleet.servers import RedisServer
from tests.media_node.conftest import offline_node_settings, queueing_worker


class Node:
    """The node's side of an evacuation (its bus, rooms and heartbeat), recording what the
    evacuation did."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.node_id = f"media-{uuid.uuid4().hex[:6]}"
        self._redis = redis
        self.sessions: dict[str, str] = {}
        self.claims = asyncio.Lock()
        self.rooms: dict[str, int] = {}
        # (what, detail, when)
        self.log: list[tuple[str, Any, float]] = []

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    def room_participants(self) -> dict[str, int]:
        return dict(self.rooms)

    def to_session(self, session: str, message: dict[str, Any]) -> None:
        self.log.append(("to_session", (session, message), time.monotonic()))

    async def heartbeat(self) -> None:
        self.log.append(("heartbeat", None, time.monotonic()))

    async def handle_command(self, command: AnyNodeCommand) -> None:
        self.log.append(("command", command, time.monotonic()))

    def add(self, room: str, participants: int) -> list[str]:
        sessions = [uuid.uuid4().hex for _ in range(participants)]
        self.sessions.update(dict.fromkeys(sessions, room))
        self.rooms[room] = participants
        return sessions

    def told(self) -> dict[str, dict[str, Any]]:
        return {s: m for what, (s, m), _ in self.entries("to_session")}

    def entries(self, what: str) -> list[Any]:
        return [entry for entry in self.log if entry[0] == what]


def test_schedule_moves_big_rooms_first_and_spreads_a_full_node_over_the_fraction() -> None:
    small = schedule({"a": 2, "b": 5, "c": 3}, seconds_left=120, fraction=0.25, rate=20)
    assert [room for _, room in small] == ["b", "c", "a"]
    # 10 participants at 20 a second: done in half a second, long before 30 s
    assert [round(at, 2) for at, _ in small] == [0.0, 0.25, 0.4]
    rooms = {f"r{i:03}": 6 for i in range(100)}  # 600 participants, 30 s window
    full = schedule(rooms, seconds_left=120, fraction=0.25, rate=20)
    assert full[-1][0] == pytest.approx(30 - 6 / 20, abs=0.01)
    # no time left: everything at once
    assert {at for at, _ in schedule(rooms, seconds_left=0, fraction=0.25, rate=20)} == {0.0}
    with pytest.raises(ValueError, match="fraction"):
        node = Node(aioredis.Redis())
        Evacuation(node, node.room_participants, node.heartbeat, fraction=0)


async def test_a_moved_room_loses_its_claim_and_its_sessions_are_told_then_left(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evacuation, "LEAVE_AFTER_S", 0.2)
    node = Node(redis)
    moving = node.add("moving", 2)
    staying = node.add("staying", 1)
    taken = node.add("taken", 1)
    for room in ("moving", "staying"):
        assert await bus.claim_for(redis, room, node.node_id) == node.node_id
    await redis.set(bus.room_key("taken"), "media-other")
    evac = Evacuation(node, node.room_participants, node.heartbeat)

    await evac.move("moving")
    await evac.move("taken")
    await evac.move("moving")  # twice: nothing more
    assert await redis.get(bus.room_key("moving")) is None
    assert await redis.get(bus.room_key("staying")) == node.node_id
    assert await redis.get(bus.room_key("taken")) == "media-other", "dropped another's claim"
    told = node.told()
    assert set(told) == {*moving, *taken}
    assert {m["type"] for m in told.values()} == {"reconnect"}
    assert len(node.entries("to_session")) == 3
    assert evac.sessions_moved == 3
    assert all(evac.is_silenced(s) for s in moving) and not evac.is_silenced(staying[0])
    assert evac.held(node.room_participants()) == {"staying": 1}
    assert evac.is_moving("moving") and not evac.is_moving("staying")
    assert node.entries("command") == [], "left before the reconnect could be read"
    await asyncio.sleep(0.35)
    leaves = [command for _, command, _ in node.entries("command")]
    assert all(isinstance(c, NodeLeave) for c in leaves)
    assert {(c.session, c.room) for c in leaves} == {
        *((s, "moving") for s in moving),
        (taken[0], "taken"),
    }


async def test_run_says_draining_before_any_claim_goes_and_paces_rooms(
    redis: aioredis.Redis,
) -> None:
    node = Node(redis)
    for room, participants in (("big", 3), ("mid", 2), ("one", 1)):
        node.add(room, participants)
        await bus.claim_for(redis, room, node.node_id)
    # 6 participants at 10 a second: rooms told at 0, 0.3 and 0.5 s
    evac = Evacuation(node, node.room_participants, node.heartbeat, fraction=0.25, rate=10)
    await evac.run(deadline=time.time() + 120)
    [(_, _, announced)] = node.entries("heartbeat")
    told = node.entries("to_session")
    assert announced <= told[0][2], "rooms moved before the region knew the node drains"
    first_by_room: dict[str, float] = {}
    for _, (session, _), at in told:
        first_by_room.setdefault(node.sessions[session], at)
    offsets = {room: at - told[0][2] for room, at in first_by_room.items()}
    assert list(first_by_room) == ["big", "mid", "one"]
    assert offsets["mid"] == pytest.approx(0.3, abs=0.1)
    assert offsets["one"] == pytest.approx(0.5, abs=0.1)
    assert evac.finished_at is not None and evac.started_at is not None
    for room in ("big", "mid", "one"):
        assert await redis.get(bus.room_key(room)) is None


async def test_the_node_keeps_moving_rooms_away_and_moved_sessions_quiet(
    redis: aioredis.Redis, redis_server: RedisServer
) -> None:
    """The node's side (its bus and worker pool as the supervisor wires them): no claim
    renewed for a moving room, a join for it sent elsewhere, and nothing of the old room
    reaching a session told to reconnect."""
    supervisor = Supervisor(offline_node_settings(redis_server.url))
    node_bus, pool = supervisor.bus, supervisor.pool
    node_bus.attach(pool, redis)
    supervisor.start_drain()
    handle = queueing_worker()
    session = uuid.uuid4().hex
    moving, staying = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("moving", "staying"))
    for room in (moving, staying):
        pool.room_worker[room] = handle
    node_bus.sessions[session] = moving
    await supervisor.evacuation.move(moving)
    await node_bus.hold_rooms()
    assert await redis.get(bus.room_key(staying)) == supervisor.node_id
    assert await redis.get(bus.room_key(moving)) is None, "a moving room was claimed again"

    newcomer = uuid.uuid4().hex
    join = NodeJoin(
        session=newcomer, room=moving, identity="zoe", can_publish=True, can_subscribe=True
    )
    await node_bus.handle_command(join)
    pool.receive(
        handle, ToSession(session=session, message={"type": "participant_left"}).model_dump()
    )
    queued = []
    while not node_bus.outbox.empty():
        target, message, _trace = node_bus.outbox.get_nowait()
        queued.append((target, message))
    assert queued == [
        (session, {"type": "reconnect", "reason": "media_node_evacuated"}),
        (newcomer, {"type": "reconnect", "reason": "room_moved"}),
    ]
    assert await redis.get(bus.room_key(moving)) is None


async def test_a_renewal_on_its_way_does_not_claim_again_a_room_let_go(
    redis: aioredis.Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat's claim renewal read the rooms before the move and writes after it."""
    supervisor = Supervisor(offline_node_settings(redis_server.url))
    node_bus, pool = supervisor.bus, supervisor.pool
    node_bus.attach(pool, redis)
    room = f"racing-{uuid.uuid4().hex[:6]}"
    pool.room_worker[room] = queueing_worker()
    renewing, write = asyncio.Event(), asyncio.Event()
    hold_rooms = bus.hold_rooms

    async def slow_hold(*args: Any) -> list[str]:
        renewing.set()
        await write.wait()
        return await hold_rooms(*args)

    monkeypatch.setattr(bus, "hold_rooms", slow_hold)
    renewal = asyncio.create_task(node_bus.hold_rooms())
    await renewing.wait()
    move = asyncio.create_task(supervisor.evacuation.move(room))
    await asyncio.sleep(0.05)
    write.set()
    await asyncio.gather(renewal, move)
    assert await redis.get(bus.room_key(room)) is None, "the room was claimed again"
