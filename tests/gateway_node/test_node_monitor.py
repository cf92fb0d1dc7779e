"""A gateway finds a dead media node by its closed Redis connections, on a real Redis.

A node that missed a beat and holds no connection of its name is marked lost at the next look;
one that still holds its connections is not, however late its beats; and right after the
primary changed, or where node names never show, the list is not believed at all.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway_node import node_monitor
from gateway_node.metrics import GatewayMetrics
from gateway_node.node_monitor import NodeMonitor
from gateway_node.registry import NodeRegistry
from rtcfleet import bus
from rtcfleet.nodes import Heartbeat, NodeLoad, NodeRegistration, NodeState
from rtcfleet.redis_url import connect
from rtcfleet.servers import RedisServer, SentinelRedis

STALE_S = 5.0


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


async def node_connected(url: str, node_id: str) -> aioredis.Redis:
    """A media node's Redis client, named as the supervisor names it, with a connection open."""
    client = connect(url, client_name=bus.node_client_name(node_id))
    await client.ping()
    return client


async def register(registry: NodeRegistry, node_id: str, beat_age_s: float) -> NodeState:
    """A registered node whose last heartbeat was ``beat_age_s`` ago."""
    state = await registry.register(
        NodeRegistration(node_id=node_id, region="test", workers=1, capacity_streams=100)
    )
    state = state.model_copy(update={"heartbeat_at": time.time() - beat_age_s})
    await registry.redis.set(bus.node_key(node_id), state.model_dump_json())
    return state


def monitor_for(redis: aioredis.Redis) -> NodeMonitor:
    registry = NodeRegistry(redis, STALE_S)
    return NodeMonitor(STALE_S, lambda: redis, lambda: registry, {}, GatewayMetrics())


async def test_a_node_that_missed_a_beat_without_connections_is_lost_at_once(
    redis: aioredis.Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_monitor, "NEW_SERVER_GRACE_S", 0.0)
    monitor = monitor_for(redis)
    registry = NodeRegistry(redis, STALE_S)
    slow = await node_connected(redis_server.url, "node-slow")
    gone = await node_connected(redis_server.url, "node-gone")
    fine = await node_connected(redis_server.url, "node-fine")
    try:
        # both missed a beat (2 s > 1.5 intervals), neither is stale yet
        await register(registry, "node-slow", 2.0)
        seen = await register(registry, "node-gone", 2.0)
        await register(registry, "node-fine", 0.1)
        await gone.aclose()  # what Redis sees when the node's process dies
        await monitor.check()
        states = {n.node_id: n for n in await registry.nodes()}
        assert states["node-gone"].lost_at is not None
        assert states["node-gone"].heartbeat_at == seen.heartbeat_at
        assert not registry.is_fresh(states["node-gone"])
        assert states["node-slow"].lost_at is None and registry.is_fresh(states["node-slow"])
        assert states["node-fine"].lost_at is None
        assert await monitor.node_suspect("node-gone")
        lost = monitor.metrics.registry.get_sample_value(
            "rtcfleet_gateway_media_nodes_lost_total", {"signal": "connections_closed"}
        )
        assert lost == 1
        # a node marked lost that is alive after all is fresh again at its next beat
        await registry.heartbeat("node-gone", Heartbeat(load=NodeLoad()))
        back = await registry.get("node-gone")
        assert back is not None and back.lost_at is None and registry.is_fresh(back)
    finally:
        await slow.aclose()
        await fine.aclose()


async def test_the_list_is_not_believed_after_a_new_primary_or_without_names(
    redis: aioredis.Redis, redis_server: RedisServer
) -> None:
    monitor = monitor_for(redis)
    registry = NodeRegistry(redis, STALE_S)
    await register(registry, "node-gone", 2.0)
    other = await node_connected(redis_server.url, "node-other")
    try:
        # first look at this server: within its grace, absence means nothing yet
        await monitor.check()
        assert (await registry.get("node-gone")).lost_at is None  # type: ignore[union-attr]
        assert monitor.connections.names_seen
        # the grace over, but no node has ever shown a name here (a proxy hides them)
        monitor.connections.server_since -= node_monitor.NEW_SERVER_GRACE_S
        monitor.connections.names_seen = False
        await other.aclose()
        await monitor.check()
        assert (await registry.get("node-gone")).lost_at is None  # type: ignore[union-attr]
        # the same server, names seen before: believed
        monitor.connections.names_seen = True
        await monitor.check()
        assert (await registry.get("node-gone")).lost_at is not None  # type: ignore[union-attr]
        # another server (a failover): the grace starts again
        await register(registry, "node-gone-2", 2.0)
        monitor.connections.server = "a-previous-primary"
        await monitor.check()
        assert (await registry.get("node-gone-2")).lost_at is None  # type: ignore[union-attr]
    finally:
        await other.aclose()


async def test_a_beat_that_lands_first_keeps_the_node(redis: aioredis.Redis) -> None:
    registry = NodeRegistry(redis, STALE_S)
    seen = await register(registry, "node-a", 2.0)
    await registry.heartbeat("node-a", Heartbeat(load=NodeLoad()))
    assert not await registry.mark_lost("node-a", seen.heartbeat_at)
    state = await registry.get("node-a")
    assert state is not None and state.lost_at is None
    assert await registry.mark_lost("node-a", state.heartbeat_at)
    assert not await registry.mark_lost("node-a", state.heartbeat_at), "marked once"
    assert not await registry.mark_lost("node-unknown", 0.0)


async def test_a_list_from_a_server_that_is_no_primary_is_not_believed(
    sentinel_redis: SentinelRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pooled connection may still reach a demoted primary after a failover: the nodes have
    left it for the new one, so their absence there means nothing."""
    monkeypatch.setattr(node_monitor, "NEW_SERVER_GRACE_S", 0.0)
    primary = connect(sentinel_redis.primary.url)
    replica = connect(sentinel_redis.replica.url)
    clients = [primary, replica, await node_connected(sentinel_redis.replica.url, "node-other")]
    try:
        await register(NodeRegistry(primary, STALE_S), "node-gone", 2.0)
        await primary.wait(1, 5000)
        monitor = monitor_for(replica)
        assert await monitor.connections.without_connection(replica, ["node-gone"]) == set()
        assert monitor.connections.names_seen, "the list was read and showed names"
        # the same look at the primary, where node-gone holds no connection either, believes it
        monitor = monitor_for(primary)
        clients.append(await node_connected(sentinel_redis.primary.url, "node-other"))
        assert await monitor.connections.without_connection(primary, ["node-gone"]) == {"node-gone"}
    finally:
        for client in clients:
            await client.aclose()
