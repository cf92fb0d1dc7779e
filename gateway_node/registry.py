"""The region's media-node registry in Redis: registrations, heartbeats and drain requests."""

from __future__ import annotations

import time
from typing import cast

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import WatchError

from rtcfleet import bus
from rtcfleet.nodes import Heartbeat, NodeRegistration, NodeState

# A record outlives its staleness bound so operators still see a dead node for a while.
RECORD_TTL_FACTOR = 6


class UnknownNode(KeyError):
    """A heartbeat or drain for a node that is not registered (or expired)."""


class NodeRegistry:
    def __init__(self, redis: aioredis.Redis, stale_after: float) -> None:
        self.redis = redis
        self.stale_after = stale_after

    @property
    def _ttl(self) -> int:
        return max(int(self.stale_after * RECORD_TTL_FACTOR), 10)

    async def register(self, registration: NodeRegistration) -> NodeState:
        now = time.time()
        state = NodeState(registration=registration, registered_at=now, heartbeat_at=now)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(bus.node_key(registration.node_id), state.model_dump_json(), ex=self._ttl)
            pipe.sadd(bus.NODES, registration.node_id)
            pipe.delete(bus.node_drain_key(registration.node_id))
            await pipe.execute()
        return state

    async def heartbeat(self, node_id: str, beat: Heartbeat) -> NodeState:
        """Record the load; the returned state's ``draining`` includes an admin's drain request."""
        raw, drain_requested = await self.redis.mget(
            bus.node_key(node_id), bus.node_drain_key(node_id)
        )
        if raw is None:
            raise UnknownNode(node_id)
        state = NodeState.model_validate_json(raw)
        state = state.model_copy(
            update={
                "load": beat.load.model_copy(update={"room_participants": {}}),
                "settings": beat.settings,
                "draining": beat.draining or bool(drain_requested),
                "heartbeat_at": time.time(),
                "lost_at": None,
            }
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(bus.node_key(node_id), state.model_dump_json(), ex=self._ttl)
            # the index may have been lost (a failover to a lagging replica): put the node back
            pipe.sadd(bus.NODES, node_id)
            await pipe.execute()
        return state

    async def mark_lost(self, node_id: str, heartbeat_at: float) -> bool:
        """Record that the node is gone, unless it has beaten since ``heartbeat_at`` (what the
        caller saw): every gateway then treats it as stale, and placement moves its rooms. A
        node that is in fact alive clears the mark with its next heartbeat."""
        key = bus.node_key(node_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                raw = await pipe.get(key)
                if raw is None:
                    return False
                try:
                    state = NodeState.model_validate_json(raw)
                except ValidationError:
                    return False
                if state.heartbeat_at != heartbeat_at or state.lost_at is not None:
                    return False
                lost = state.model_copy(update={"lost_at": time.time()})
                pipe.multi()
                pipe.set(key, lost.model_dump_json(), keepttl=True)
                await pipe.execute()
            except WatchError:  # a heartbeat landed in between: the node lives
                return False
        return True

    async def request_drain(self, node_id: str) -> None:
        if not await self.redis.exists(bus.node_key(node_id)):
            raise UnknownNode(node_id)
        await self.redis.set(bus.node_drain_key(node_id), "1", ex=self._ttl * 10)

    async def get(self, node_id: str) -> NodeState | None:
        raw = await self.redis.get(bus.node_key(node_id))
        return NodeState.model_validate_json(raw) if raw else None

    async def nodes(self) -> list[NodeState]:
        """Every node with a record; expired ones are dropped from the index as they are found."""
        ids = sorted(cast(set[str], await self.redis.smembers(bus.NODES)))
        if not ids:
            return []
        raws = await self.redis.mget([bus.node_key(node_id) for node_id in ids])
        states, gone = [], []
        for node_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                gone.append(node_id)
                continue
            try:
                states.append(NodeState.model_validate_json(raw))
            except ValidationError:
                gone.append(node_id)
        if gone:
            await self.redis.srem(bus.NODES, *gone)
        return states

    def is_fresh(self, state: NodeState, now: float | None = None) -> bool:
        return state.is_fresh(time.time() if now is None else now, self.stale_after)
