"""Placement rules, each on its own, then the atomic claim against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from gateway_node.placement import (
    NoAvailableNodes,
    claim_room,
    fresh,
    not_draining,
    placeable,
    select_node,
    under_capacity,
)
from rtcfleet.nodes import NodeLoad, NodeRegistration, NodeState
from rtcfleet.servers import RedisServer

NOW = 1_000_000.0


def node(
    node_id: str,
    region: str = "eu",
    *,
    age: float = 0.0,
    draining: bool = False,
    streams: int = 0,
    cpu: float = 0.0,
    rooms: int = 0,
) -> NodeState:
    return NodeState(
        registration=NodeRegistration(
            node_id=node_id, region=region, workers=2, capacity_streams=100
        ),
        load=NodeLoad(forwarded_streams=streams, cpu_percent=cpu, rooms=rooms),
        draining=draining,
        registered_at=NOW - 100,
        heartbeat_at=NOW - age,
    )


def test_stale_heartbeats_are_filtered() -> None:
    nodes = [node("a", age=1), node("b", age=5.0), node("c", age=5.01)]
    assert [n.node_id for n in fresh(nodes, NOW, stale_after=5.0)] == ["a", "b"]


def test_draining_and_full_nodes_take_no_new_room() -> None:
    nodes = [node("a", draining=True), node("b", streams=100), node("c", cpu=200.0), node("d")]
    assert [n.node_id for n in not_draining(nodes)] == ["b", "c", "d"]
    assert [n.node_id for n in under_capacity(nodes)] == ["a", "d"]
    assert [n.node_id for n in placeable(nodes, NOW, 5.0)] == ["d"]


def test_nearest_region_first_then_least_loaded() -> None:
    nodes = [
        node("us-idle", "us"),
        node("eu-busy", "eu", streams=60),
        node("eu-calm", "eu", cpu=40),
    ]
    assert select_node(nodes, ["eu", "us"]).node_id == "eu-calm"
    assert select_node(nodes, ["us", "eu"]).node_id == "us-idle"
    # an unknown region ranks after every listed one
    assert select_node([node("x", "ap"), node("y", "us", streams=90)], ["eu", "us"]).node_id == "y"


def test_no_node_is_a_named_error() -> None:
    with pytest.raises(NoAvailableNodes):
        select_node([], ["eu"])
    with pytest.raises(NoAvailableNodes):
        select_node(placeable([node("a", draining=True)], NOW, 5.0), ["eu"])


async def test_racing_gateways_never_split_a_room(redis_server: RedisServer) -> None:
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await redis.delete("rtc:room:race")
    owners = await asyncio.gather(
        *(claim_room(redis, "race", None, f"node-{i}") for i in range(20))
    )
    assert len(set(owners)) == 1, owners
    # replacing a dead owner succeeds only for the gateway that saw that owner
    dead = owners[0]
    assert await claim_room(redis, "race", "someone-else", "node-x") == dead
    assert await claim_room(redis, "race", dead, "node-y") == "node-y"
    await redis.aclose()
