"""A node's room-to-worker map holds only rooms a worker hosts, whatever order commands come in.

The attack: a session replaced by a newer join of its identity is resumed after the room has
emptied, and the resumed session sends commands for that room. Such a command used to place the
room on a worker again (``WorkerPool.worker_for``) although no join would ever follow: the
worker ignored it, never reported the room empty, and the map kept the room for the node's
lifetime. The node went on claiming the room in Redis, a drain waited for it until its bound,
and a cloud node kept its scale-in protection.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import urllib.request
import uuid
from typing import Any

import redis.asyncio as aioredis

from rtcfleet import bus
from rtcfleet.local import LocalFleet
from rtcfleet.redis_url import connect
from tests.adversarial.conftest import (
    Attacker,
    HonestCall,
    assert_unharmed,
    redis_url,
    signal_url,
)
from tests.platform.conftest import admin, wait_until

# a heartbeat renews every room in the node's map (``bus.hold_rooms``): two of them, 1 s apart
HEARTBEATS_S = 2.5
DRAIN_S = 20.0
PLACEMENT_TRIES = 5
END_OF_CANDIDATES: dict[str, Any] = {"type": "trickle", "target": "publisher", "candidate": None}


async def claim_gone(redis: aioredis.Redis, room: str) -> bool:
    return not await redis.exists(bus.room_key(room))


async def wait_claim_gone(redis: aioredis.Redis, room: str) -> None:
    deadline = time.monotonic() + 10
    while not await claim_gone(redis, room):
        assert time.monotonic() < deadline, f"room {room} was not released"
        await asyncio.sleep(0.05)


async def late_commands(fleet: LocalFleet, room: str, commands: list[dict[str, Any]]) -> str:
    """Join ``room``, be replaced by a second join of the identity, let the room empty, then
    resume the replaced session and send ``commands`` for the emptied room; returns the node
    the room was on."""
    url, token = signal_url(fleet), fleet.token(room, "mallory")
    redis = connect(redis_url(fleet))
    first = await Attacker.connect(url)
    try:
        replaced = await first.join(token)
    finally:
        await first.close()  # no leave: the session waits for a resume
    second = await Attacker.connect(url)
    try:
        await second.join(token)  # the node replaces the first session with this one
        await second.send({"type": "leave"})
    finally:
        await second.close()
    try:
        await wait_claim_gone(redis, room)  # the room emptied on its worker and was released
    finally:
        await redis.aclose()
    third = await Attacker.connect(url)
    try:
        kinds = {str(command["type"]) for command in commands}
        before = messages_in(fleet, kinds)
        # all in one burst: the gateway reads them right after the resume, before it has
        # relayed the session's news and ended it
        resume = {"type": "join", "token": token, "session_id": replaced["session_id"]}
        for command in [resume, *commands]:
            await third.send(command)
        # the gateway took them for the session (it ends the session once it reads the news)
        await wait_until(
            lambda: messages_in(fleet, kinds) - before >= len(commands),
            10,
            "the gateway to take the late commands",
        )
    finally:
        await third.close()
    return str(replaced["node_id"])


def messages_in(fleet: LocalFleet, kinds: set[str]) -> float:
    """Client messages of ``kinds`` the gateway has parsed so far (one attack at a time)."""
    url = fleet.regions[fleet.home].gateways[0].http_url + "/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    pattern = r'^rtcfleet_gateway_messages_total\{direction="in",type="(\w+)"\} (\S+)$'
    return sum(float(value) for kind, value in re.findall(pattern, text, re.M) if kind in kinds)


def hosted(fleet: LocalFleet) -> dict[str, str]:
    """Every room a fresh node holds in its room map in Redis, with that node."""
    status, rooms = admin(fleet, "GET", "/api/rooms")
    assert status == 200, rooms
    return {r["room"]: r["node_id"] for r in rooms}


async def assert_not_held(fleet: LocalFleet, rooms: list[str]) -> None:
    await asyncio.sleep(HEARTBEATS_S)
    redis = connect(redis_url(fleet))
    try:
        claimed = [room for room in rooms if not await claim_gone(redis, room)]
    finally:
        await redis.aclose()
    mapped = hosted(fleet)
    assert not claimed, f"rooms still claimed by their node: {claimed}"
    assert not set(rooms) & set(mapped), f"rooms still in a node's room map: {mapped}"


async def test_late_commands_for_an_emptied_room_leave_no_entry_behind(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    mark = honest.mark()
    rooms: dict[str, list[dict[str, Any]]] = {
        f"late-leave-{uuid.uuid4().hex[:6]}": [{"type": "leave"}],
        f"late-trickle-{uuid.uuid4().hex[:6]}": [END_OF_CANDIDATES, END_OF_CANDIDATES],
    }
    nodes = [await late_commands(fleet, room, commands) for room, commands in rooms.items()]
    honest_node = fleet.regions[fleet.home].media_nodes[0].name
    assert set(nodes) == {honest_node}, "the attack landed on the honest call's node"
    # and a leave racing its own join: both in one burst, the socket closed at once
    raced = f"raced-{uuid.uuid4().hex[:6]}"
    before = messages_in(fleet, {"leave"})
    attacker = await Attacker.connect(signal_url(fleet))
    try:
        await attacker.send({"type": "join", "token": fleet.token(raced, "mallory")})
        await attacker.send({"type": "leave"})
        await wait_until(lambda: messages_in(fleet, {"leave"}) > before, 10, "the leave")
    finally:
        await attacker.close()
    await assert_unharmed(fleet, honest, mark)
    await assert_not_held(fleet, [*rooms, raced])


def node_record(fleet: LocalFleet, node_id: str) -> dict[str, Any]:
    status, nodes = admin(fleet, "GET", "/api/nodes")
    assert status == 200, nodes
    return next((n for n in nodes if n["node_id"] == node_id), {"state": "absent"})


def utilization(fleet: LocalFleet, node_id: str) -> float:
    """The node's utilization as placement reads it, from its first heartbeat on (a node's
    registration reports no load, its first heartbeats its start-up CPU)."""
    record = node_record(fleet, node_id)
    if record["state"] != "healthy" or record["settings"] is None:
        return 1.0
    return float(record["utilization"])


async def test_a_node_attacked_so_drains_at_once(fleet: LocalFleet, honest: HonestCall) -> None:
    """A node of its own, as the drain ends it: the honest call's node hosts a call, so the
    fresh node is the least loaded and takes the attacker's room."""
    region = fleet.regions[fleet.home]
    busy = region.media_nodes[0].name
    node = fleet.start_media_node(fleet.home)
    try:
        await wait_until(
            lambda: utilization(fleet, node.name) < utilization(fleet, busy),
            30,
            f"{node.name} to register with less load than {busy}",
        )
        # a node's load moves between heartbeats: a room the busy node took is attacked too
        rooms: dict[str, str] = {}
        while node.name not in rooms.values():
            assert len(rooms) < PLACEMENT_TRIES, f"every room went elsewhere: {rooms}"
            room = f"late-drain-{uuid.uuid4().hex[:6]}"
            commands: list[dict[str, Any]] = [END_OF_CANDIDATES, {"type": "leave"}]
            rooms[room] = await late_commands(fleet, room, commands)
            await asyncio.sleep(1.0)  # the next heartbeats
        await assert_not_held(fleet, list(rooms))

        assert admin(fleet, "POST", f"/api/nodes/{node.name}/drain")[0] == 202
        started = time.monotonic()
        try:
            code = await asyncio.to_thread(node.process.wait, DRAIN_S)
        except subprocess.TimeoutExpired:
            code = None
        print(f"drain of {node.name}: exit {code} after {time.monotonic() - started:.1f} s")
        assert code == 0, f"the drain did not end within {DRAIN_S:.0f} s"
    finally:
        if node.process.running():
            node.process.kill()
        region.media_nodes.remove(node)
    log = (fleet.workdir / "logs" / f"{node.name}.log").read_text()
    assert "(0 rooms left)" in log, log[-2000:]
