"""Where a new room goes: small filters and one strategy, each testable on its own.

A room lives on exactly one media node. Filters drop nodes that must not take a new room
(stale heartbeat, draining, full); the strategy picks the nearest region first and the least
loaded node within it. The claim in Redis is atomic, so two gateways never split a room.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from rtcfleet import bus
from rtcfleet.nodes import NodeState


class NoAvailableNodes(Exception):
    """No fresh, non-draining node with room to spare."""


def fresh(nodes: Iterable[NodeState], now: float, stale_after: float) -> list[NodeState]:
    return [node for node in nodes if node.is_fresh(now, stale_after)]


def not_draining(nodes: Iterable[NodeState]) -> list[NodeState]:
    return [node for node in nodes if not node.draining]


def under_capacity(nodes: Iterable[NodeState], limit: float = 1.0) -> list[NodeState]:
    return [node for node in nodes if node.utilization < limit]


def region_rank(region: str, regions_by_distance: Sequence[str]) -> int:
    """0 for the nearest region; unknown regions after every listed one."""
    try:
        return regions_by_distance.index(region)
    except ValueError:
        return len(regions_by_distance)


def select_node(nodes: Sequence[NodeState], regions_by_distance: Sequence[str]) -> NodeState:
    """Nearest region first, then least utilized, then fewest rooms; ties broken by id."""
    if not nodes:
        raise NoAvailableNodes("no media node can take a new room")
    return min(
        nodes,
        key=lambda n: (
            region_rank(n.registration.region, regions_by_distance),
            round(n.utilization, 3),
            n.load.rooms,
            n.node_id,
        ),
    )


def placeable(nodes: Iterable[NodeState], now: float, stale_after: float) -> list[NodeState]:
    """Nodes that may take a new room."""
    return under_capacity(not_draining(fresh(nodes, now, stale_after)))


# Replace the room's claim only if it still names the node we saw (or none): a compare-and-set,
# so of two gateways racing, the second adopts the first one's choice.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return ARGV[2]
end
return current
"""


async def claim_room(redis: aioredis.Redis, room: str, expected: str | None, candidate: str) -> str:
    """Claim ``room`` for ``candidate`` if its claim is still ``expected``; returns the owner."""
    owner = await redis.eval(
        _CLAIM, 1, bus.room_key(room), expected or "", candidate, str(bus.ROOM_CLAIM_TTL_SECONDS)
    )
    return str(owner)
