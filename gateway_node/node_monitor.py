"""Watching the region's media nodes for the sessions connected to this gateway.

A node that stopped has lost its calls: its sessions here are told to place their media again.
Three signals say a node stopped, the cheapest first:

- **its connections closed.** A media node names its Redis connections after itself
  (``bus.node_client_name``). When its process dies on a host that lives on (a crash, an OOM
  kill, SIGKILL), the host's kernel closes its sockets and Redis drops them at once. A node
  that has missed a heartbeat and holds no connection is marked lost in the registry
  (``NodeRegistry.mark_lost``), so every gateway and placement treat it as stale: about
  1-2 s after the death instead of the staleness bound. A node whose loop is only slow (load,
  a pause) keeps its connections, so it is never moved on this signal.
- **a client's report.** A client that finds its media dead names its node; the gateway
  believes it once the node has also missed a heartbeat (``node_suspect``). This covers a node
  whose host went silent (power loss, a cut network, a blackhole): nothing resets its TCP
  connections, and Redis keeps them for minutes (its replies wait on retransmissions).
- **staleness**: no heartbeat for ``node_stale_seconds``; the bound for everything else.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from gateway_node.metrics import GatewayMetrics
from gateway_node.registry import NodeRegistry
from gateway_node.sessions import Session
from rtcfleet import bus
from rtcfleet.nodes import NodeState
from rtcfleet.signaling import Reconnect

log = logging.getLogger("rtcfleet.gateway")

MONITOR_INTERVAL_S = 0.5
# A client that lost its media names its node; the gateway believes it once the node has also
# missed a heartbeat (1.5 intervals without one): a client's own network problem then does not
# move a room off a node that is fine, and a dead node loses its rooms in seconds, not at
# staleness.
SUSPECT_AFTER_BEATS = 1.5
# After Redis's primary changes (a failover, a restart) every node reconnects on its next
# command, within about a second (its inbox read blocks for 1 s); until then the list of
# connections says nothing about the nodes, and only the other signals count.
NEW_SERVER_GRACE_S = 5.0
# The connection list is read whenever a node has missed a beat, and this often besides, to
# learn whether the server shows node names at all (a proxy in front of Redis may hide them).
CONNECTIONS_BASELINE_S = 30.0


def heartbeat_interval(node_stale_seconds: float) -> float:
    """How often media nodes beat (told to them at registration)."""
    return min(1.0, node_stale_seconds / 5)


class NodeConnections:
    """What the region's Redis says about media nodes' connections (``CLIENT LIST``)."""

    def __init__(self) -> None:
        self.server: str | None = None
        self.server_since = 0.0
        # some media node's named connection showed on this server, so a missing one is news
        self.names_seen = False
        self.listed_at = -math.inf
        # why the list cannot be read at all (a managed Redis that refuses CLIENT LIST)
        self.refused: str | None = None

    def baseline_due(self, now: float) -> bool:
        return self.refused is None and now - self.listed_at >= CONNECTIONS_BASELINE_S

    async def without_connection(self, redis: aioredis.Redis, suspects: Iterable[str]) -> set[str]:
        """Of ``suspects``, the nodes that hold no connection to Redis; none while the list
        cannot be trusted (a new primary within its grace, a server that is no primary, or
        node names never seen)."""
        if self.refused is not None:
            return set()
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.info("server")
                pipe.info("replication")
                pipe.client_list(_type="normal")
                info, replication, clients = await pipe.execute()
        except ResponseError as exc:
            self.refused = str(exc)
            log.warning("no dead-node signal from Redis's client list: %s", exc)
            return set()
        now = time.monotonic()
        self.listed_at = now
        server = str(info.get("run_id", ""))
        if server != self.server:
            self.server, self.server_since, self.names_seen = server, now, False
        names = {str(client.get("name", "")) for client in clients}
        if any(name.startswith(bus.NODE_CLIENT_PREFIX) for name in names):
            self.names_seen = True
        if not self.names_seen or now - self.server_since < NEW_SERVER_GRACE_S:
            return set()
        if replication.get("role") != "master":
            return set()  # a demoted primary a stale connection still reaches: nodes left it
        return {node_id for node_id in suspects if bus.node_client_name(node_id) not in names}


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
        self.connections = NodeConnections()

    def missed_a_beat(self, node: NodeState, now: float) -> bool:
        interval = heartbeat_interval(self.node_stale_seconds)
        return now - node.heartbeat_at > SUSPECT_AFTER_BEATS * interval

    async def node_suspect(self, node_id: str) -> bool:
        """Has the node missed a heartbeat (or left the registry, or been found lost)?
        Corroborates a client's report that its media died."""
        node = await self._registry().get(node_id)
        if node is None or node.lost_at is not None:
            return True
        return self.missed_a_beat(node, time.time())

    async def find_dead(self, nodes: list[NodeState], now: float) -> list[NodeState]:
        """``nodes`` with those that missed a beat and hold no Redis connection marked lost."""
        suspects = {
            n.node_id: n
            for n in nodes
            if n.is_fresh(now, self.node_stale_seconds) and self.missed_a_beat(n, now)
        }
        if not suspects and not self.connections.baseline_due(time.monotonic()):
            return nodes
        marked = {}
        try:
            dead = await self.connections.without_connection(self._redis(), suspects)
            for node_id in sorted(dead):
                node = suspects[node_id]
                if await self._registry().mark_lost(node_id, node.heartbeat_at):
                    log.warning(
                        "media node %s lost: no beat for %.1f s and no Redis connection",
                        node_id,
                        now - node.heartbeat_at,
                    )
                    self.metrics.nodes_lost.labels("connections_closed").inc()
                    marked[node_id] = node.model_copy(update={"lost_at": now})
        except (RedisError, OSError) as exc:  # staleness still counts this round
            log.warning("media nodes' connections not read: %s", exc)
        return [marked.get(n.node_id, n) for n in nodes]

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
        nodes = await self.find_dead(nodes, now)
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
