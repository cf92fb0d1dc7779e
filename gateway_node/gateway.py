"""The gateway: its connections to the region (Redis, Postgres, peer regions), its parts, and
their background loops, opened and closed with the application.

A gateway is stateless in the sense that matters: everything a client's session needs lives in
the region's Redis, so any gateway serves any client. What a gateway holds in memory is only
the WebSockets connected to it and where each one has read up to in its session stream.
Its parts each do one job: ``room_placement`` (where a room lives), ``sessions`` (session
records), ``relay`` (the connected sessions and their messages), ``node_monitor`` (media nodes
lost under connected sessions), ``health`` (region health) and ``replication`` (the settings
copy's lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Any, cast

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import WSCloseCode
from redis.exceptions import RedisError

from gateway_node.health import RegionHealth
from gateway_node.metrics import GatewayMetrics
from gateway_node.node_monitor import NodeMonitor, heartbeat_interval
from gateway_node.registry import NodeRegistry
from gateway_node.relay import Relay
from gateway_node.replication import SettingsReplication
from gateway_node.room_placement import RoomPlacement
from gateway_node.sessions import SessionStore
from gateway_node.settings import GatewaySettings
from gateway_node.settings_copy import SettingsCopy
from gateway_node.settings_writer import SettingsWriter
from rtcfleet import bus, memory_census
from rtcfleet.redis_url import connect
from rtcfleet.tasks import cancel_and_wait

log = logging.getLogger("rtcfleet.gateway")

# how long a shutdown waits for the gateway's loops to end once cancelled
SHUTDOWN_TASKS_TIMEOUT_S = 5.0


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.id = settings.gateway_id
        self.metrics = GatewayMetrics()
        self._redis: aioredis.Redis | None = None
        self.writer = SettingsWriter(
            settings.postgres_dsn,
            settings.postgres_connect_timeout_seconds,
            settings.postgres_command_timeout_seconds,
        )
        self._http: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[object]] = set()
        self.platform = SettingsCopy()
        self.metrics.settings_age.set_function(lambda: self.platform.age() or float("inf"))
        self.placement = RoomPlacement(
            settings, lambda: self.redis, lambda: self.registry, lambda: self._http, self.metrics
        )
        self.store = SessionStore(lambda: self.redis, self.id)
        self.relay = Relay(
            self.id, settings.region, lambda: self.redis, self.store, self.metrics, self.spawn
        )
        self.monitor = NodeMonitor(
            settings.node_stale_seconds,
            lambda: self.redis,
            lambda: self.registry,
            self.relay.sessions,
            self.metrics,
        )
        self.region_health = RegionHealth(self)
        self.replication = SettingsReplication(
            settings.region,
            settings.settings_replica_dsn,
            lambda: self.postgres,
            self.metrics,
            subscription=settings.settings_subscription,
            writer_conninfo=settings.postgres_dsn,
        )

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("gateway not started")
        return self._redis

    @property
    def registry(self) -> NodeRegistry:
        return NodeRegistry(self.redis, self.settings.node_stale_seconds)

    @property
    def heartbeat_interval(self) -> float:
        """How often media nodes beat (told to them at registration)."""
        return heartbeat_interval(self.settings.node_stale_seconds)

    @property
    def postgres(self) -> asyncpg.Pool:
        """The settings writer; only admin writes use it, never a join or a health signal."""
        return self.writer.pool

    async def start(self) -> None:
        self._redis = connect(self.settings.redis_url)
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.peer_lookup_timeout_seconds)
        )
        self._tasks = [
            asyncio.create_task(self.relay.run(), name="relay"),
            asyncio.create_task(self.monitor.run(), name="monitor"),
            asyncio.create_task(self.relay.keepalive(), name="keepalive"),
            asyncio.create_task(self.writer.open(), name="postgres"),
            asyncio.create_task(self._settings_loop(), name="settings"),
            asyncio.create_task(self.replication.run(), name="settings-replication"),
        ]
        if (every := memory_census.interval()) is not None:
            census = memory_census.Census(f"gateway-{self.id}", self.census)
            self._tasks.append(asyncio.create_task(census.run(every), name="memory-census"))
        self.region_health.start()

    def census(self) -> dict[str, int]:
        """What the gateway keeps per client (``rtcfleet.memory_census``)."""
        return {
            "sessions": len(self.relay.sessions),
            "background_tasks": len(self._background),
            "tasks": len(asyncio.all_tasks()),
        }

    async def close(self) -> None:
        await self.region_health.stop()
        await cancel_and_wait(self._tasks, SHUTDOWN_TASKS_TIMEOUT_S)
        for session in list(self.relay.sessions.values()):
            # bounded: a client that does not read must not hold the gateway's shutdown
            await session.disconnect(WSCloseCode.OK, "")
        if self._http is not None:
            await self._http.close()
        await self.writer.close()
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.srem(bus.GATEWAYS, self.id)
            await self._redis.aclose()

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Run ``coro`` in the background, holding a reference until it ends."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settings_loop(self) -> None:
        """Keep a copy of the settings fresh; joins use the copy, never the database."""
        source = self.settings.settings_replica_dsn or self.settings.postgres_dsn
        while True:
            if not await self.platform.refresh(source.get_secret_value()):
                age = self.platform.age()
                log.warning(
                    "%s; serving %s",
                    self.platform.last_error,
                    "the defaults" if age is None else f"the settings read {age:.0f} s ago",
                )
            await asyncio.sleep(self.settings.settings_refresh_seconds)

    async def gateways(self) -> list[dict[str, Any]]:
        """The region's gateways with their client counts (their keepalive records)."""
        ids = sorted(cast(set[str], await self.redis.smembers(bus.GATEWAYS)))
        if not ids:
            return []
        raws = await self.redis.mget([bus.gateway_key(i) for i in ids])
        return [json.loads(raw) for raw in raws if raw]
