"""Watching the region's media nodes for the sessions connected to this gateway.

A node whose heartbeat stopped has lost its calls: its sessions here are told to place their
media again. A client that finds its media dead names its node; the gateway believes it once
the node has also missed a heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway_node.metrics import GatewayMetrics
from gateway_node.registry import NodeRegistry
from gateway_node.sessions import Session
from rtcfleet import bus
from rtcfleet.signaling import Reconnect

log = logging.getLogger("rtcfleet.gateway")

MONITOR_INTERVAL_S = 0.5
# A client that lost its media names its node; the gateway believes it once the node has also
# missed a heartbeat (1.5 intervals without one): a client's own network problem then does not
# move a room off a node that is fine, and a dead node loses its rooms in seconds, not at
# staleness.
SUSPECT_AFTER_BEATS = 1.5


def heartbeat_interval(node_stale_seconds: float) -> float:
    """How often media nodes beat (told to them at registration)."""
    return min(1.0, node_stale_seconds / 5)


class NodeMonitor:
    def __init__(
        self,
        node_stale_seconds: float,
        redis: Callable[[], aioredis.Redis],
        registry: Callable[[], NodeRegistry],
        sessions: dict[str, Session],
        metrics: GatewayMetrics,
    ) -> None:
        """``sessions``: this gateway's connected sessions, the ones it tells to rejoin."""
        self.node_stale_seconds = node_stale_seconds
        self._redis = redis
        self._registry = registry
        self.sessions = sessions
        self.metrics = metrics
        self._unseen_since: dict[str, float] = {}

    async def node_suspect(self, node_id: str) -> bool:
        """Has the node missed a heartbeat (or left the registry)? Corroborates a client's
        report that its media died."""
        node = await self._registry().get(node_id)
        if node is None:
            return True
        interval = heartbeat_interval(self.node_stale_seconds)
        return time.time() - node.heartbeat_at > SUSPECT_AFTER_BEATS * interval

    async def run(self) -> None:
        """Notice dead media nodes and tell their sessions to place their media again."""
        while True:
            try:
                await self.check()
            except (RedisError, OSError) as exc:
                log.warning("node monitor failed: %s", exc)
            await asyncio.sleep(MONITOR_INTERVAL_S)

    async def check(self) -> None:
        snapshot_at = time.time()
        nodes = await self._registry().nodes()
        now = time.time()
        fresh = {n.node_id for n in nodes if n.is_fresh(now, self.node_stale_seconds)}
        draining = sum(1 for n in nodes if n.node_id in fresh and n.draining)
        self.metrics.nodes.labels("healthy").set(len(fresh) - draining)
        self.metrics.nodes.labels("draining").set(draining)
        self.metrics.nodes.labels("stale").set(len(nodes) - len(fresh))
        # a node counts as lost once it has been missing or stale for a whole staleness bound:
        # a node whose record Redis lost registers again within a heartbeat
        for node_id in fresh:
            self._unseen_since.pop(node_id, None)
        lost = set()
        for session in self.sessions.values():
            if session.node_id not in fresh:
                since = self._unseen_since.setdefault(session.node_id, now)
                if now - since >= self.node_stale_seconds or any(
                    n.node_id == session.node_id for n in nodes
                ):
                    lost.add(session.node_id)
        for session in list(self.sessions.values()):
            # a session placed after the snapshot may sit on a node the snapshot predates
            placed_before = session.placed_at < snapshot_at
            if placed_before and session.node_id in lost and not session.reconnect_sent:
                session.reconnect_sent = True
                log.info(
                    "node %s lost: session %s must rejoin", session.node_id, session.session_id
                )
                message = Reconnect(reason="media_node_lost").model_dump(mode="json")
                await bus.send_to_session(self._redis(), session.session_id, message)
