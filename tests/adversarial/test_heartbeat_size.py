"""Rooms with the longest names a token admits do not grow what a media node sends its gateways.

A heartbeat once carried every room name, and names had no length bound: past aiohttp's 1 MiB
body limit the node's heartbeats got 413, it went stale and its rooms moved (a single token
with a 1 MiB room name was enough). Names are now bounded by the token schema
(``signaling.MAX_NAME_LENGTH``) and heartbeats carry counts only; the node's room map lives in
Redis (``bus.hold_rooms``). The gateway's ``rtcfleet_gateway_media_heartbeat_bytes`` measures
what the node sends: its mean size must not move while the node takes dozens more rooms.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
import uuid
from typing import Any

from rtcfleet import bus
from rtcfleet.local import LocalFleet
from rtcfleet.redis_url import connect
from rtcfleet.signaling import MAX_NAME_LENGTH
from tests.adversarial.conftest import (
    Attacker,
    HonestCall,
    assert_unharmed,
    logs,
    redis_url,
    signal_url,
)
from tests.platform.conftest import admin, wait_until

ROOMS = 48
HEARTBEATS = 2
# aiohttp's default client_max_size, which a heartbeat of room names once crossed
BODY_LIMIT = 1024 * 1024


def heartbeat_totals(fleet: LocalFleet) -> tuple[float, float]:
    """(bytes, heartbeats) the gateway has received from media nodes so far."""
    url = fleet.regions[fleet.home].gateways[0].http_url + "/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()

    def value(name: str) -> float:
        match = re.search(rf"^rtcfleet_gateway_media_heartbeat_bytes_{name} (\S+)$", text, re.M)
        assert match, f"no heartbeat {name} in the gateway's metrics"
        return float(match.group(1))

    return value("sum"), value("count")


async def mean_heartbeat_bytes(fleet: LocalFleet) -> float:
    """The mean body size of the next ``HEARTBEATS`` heartbeats (one node in the fleet)."""
    total, count = heartbeat_totals(fleet)
    await wait_until(
        lambda: heartbeat_totals(fleet)[1] >= count + HEARTBEATS, 15, "heartbeats to arrive"
    )
    total_after, count_after = heartbeat_totals(fleet)
    return (total_after - total) / (count_after - count)


def longest_name(prefix: str) -> str:
    return (prefix + uuid.uuid4().hex).ljust(MAX_NAME_LENGTH, "x")


async def leave(attacker: Attacker) -> None:
    try:
        await attacker.send({"type": "leave"})
    finally:
        await attacker.close()


def node_record(fleet: LocalFleet, node_id: str) -> dict[str, Any]:
    status, nodes = admin(fleet, "GET", "/api/nodes")
    assert status == 200, nodes
    return next((n for n in nodes if n["node_id"] == node_id), {"state": "absent"})


def hosted(fleet: LocalFleet, node_id: str) -> set[str]:
    """The rooms in the node's room map (written with each of its heartbeats)."""
    status, rooms = admin(fleet, "GET", "/api/rooms")
    assert status == 200, rooms
    return {r["room"] for r in rooms if r["node_id"] == node_id}


async def test_many_rooms_with_the_longest_names_leave_heartbeats_as_they_were(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    node = fleet.regions[fleet.home].media_nodes[0].name
    before = await mean_heartbeat_bytes(fleet)
    mark = honest.mark()
    rooms = [longest_name("long-") for _ in range(ROOMS)]
    sockets = await asyncio.gather(*(Attacker.connect(signal_url(fleet)) for _ in rooms))
    try:
        joined = [
            await a.join(fleet.token(room, "mallory"))
            for a, room in zip(sockets, rooms, strict=True)
        ]
        assert {j["node_id"] for j in joined} == {node}
        # the node's room map has every attacker room: its heartbeats from here on count them
        await wait_until(lambda: set(rooms) <= hosted(fleet, node), 15, "the rooms on the node")
        during = await mean_heartbeat_bytes(fleet)
        print(
            f"heartbeat {before:.0f} B before, {during:.0f} B with {ROOMS} more rooms of"
            f" {MAX_NAME_LENGTH}-character names; limit {BODY_LIMIT} B"
        )
        assert during - before < ROOMS, "heartbeats grow with the node's rooms"

        record = node_record(fleet, node)
        assert record["state"] == "healthy", record
        redis = connect(redis_url(fleet))
        try:
            owners = await redis.mget([bus.room_key(r) for r in [*rooms, honest.room]])
        finally:
            await redis.aclose()
        assert set(owners) == {node}, "a room moved off its node"
        await assert_unharmed(fleet, honest, mark)
    finally:
        await asyncio.gather(*(leave(a) for a in sockets), return_exceptions=True)
    # the later tests of the package find the node as it was
    await wait_until(lambda: not set(rooms) & hosted(fleet, node), 15, "the rooms to end")
    assert not re.search(r'POST /internal/nodes/\S+/heartbeat HTTP/1.1" 4\d\d', logs(fleet))
