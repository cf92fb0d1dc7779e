"""Redis losing recent writes (a failover to a lagging replica, a restart) must not end calls,
send every session a reconnect, or let the next joiner split a room."""

from __future__ import annotations

import asyncio

from rtcfleet import bus
from rtcfleet.local import LocalFleet
from rtcfleet.redis_url import connect
from tests.adversarial.conftest import HonestCall, assert_unharmed, redis_url

OUTAGE_S = 8.0  # longer than the node's session sweep and the gateways' staleness bound


async def test_lost_claims_sessions_and_node_index_are_rebuilt(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    redis = connect(redis_url(fleet))
    node_id = fleet.regions[fleet.home].media_nodes[0].name
    try:
        mark = honest.mark()
        room = await redis.hget(bus.session_key(honest.bots[0].session.session_id or ""), "room")
        assert isinstance(room, str) and room
        sessions = [bot.session.session_id or "" for bot in honest.bots]
        await redis.delete(bus.room_key(room), bus.NODES, *(bus.session_key(s) for s in sessions))
        await asyncio.sleep(OUTAGE_S)
        owner = await redis.get(bus.room_key(room))
        nodes = await redis.smembers(bus.NODES)
        records = [await redis.exists(bus.session_key(s)) for s in sessions]
        rejoins = [bot.session.events.media_rejoins for bot in honest.bots]
        print(f"claim {owner!r}, nodes {nodes}, session records {records}, rejoins {rejoins}")
        await assert_unharmed(fleet, honest, mark)
        assert rejoins == [0, 0], "sessions were told to reconnect"
        assert owner == node_id, "the room's claim was not re-asserted"
        assert node_id in nodes
        assert records == [1, 1], "session records were not written again"
    finally:
        await redis.aclose()
