"""The media node's supervisor: the node's parts, started in order and run until the node stops.

The supervisor is the node's only contact with the region; workers only forward packets. Its
parts each do one job: ``worker_pool`` (the forwarding processes and the rooms on them),
``node_bus`` (commands from gateways in, messages for clients out, through Redis),
``region_client`` (registration and heartbeats to the gateways), ``replica_settings`` (the
platform settings from the region's replica) and ``drain`` (no new rooms, then stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from redis.exceptions import RedisError

from media_node import liveness
from media_node.drain import Drain
from media_node.drain_agent import DrainAgent, cloud_agent
from media_node.evacuation import Evacuation
from media_node.node_bus import NodeBus
from media_node.recording.uploader import recording_uploads
from media_node.region_client import RegionClient, RegistrationFailed, UnknownToRegion
from media_node.replica_settings import ReplicaSettings
from media_node.settings import MediaNodeSettings
from media_node.worker_pool import WorkerHandle, WorkerPool
from rtcfleet import __version__, bus
from rtcfleet.nodes import DrainReport, Heartbeat, NodeRegistration
from rtcfleet.redis_url import connect
from rtcfleet.tasks import cancel_and_wait

log = logging.getLogger("rtcfleet.media")

# how long a stopping node waits for its loops to end once cancelled
SHUTDOWN_TASKS_TIMEOUT_S = 5.0


class Supervisor:
    def __init__(self, settings: MediaNodeSettings) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.stopped = asyncio.Event()
        self.replica = ReplicaSettings(
            settings.settings_dsn,
            settings.settings_refresh_seconds,
            on_change=lambda platform: self.pool.apply_settings(platform),
        )
        self.bus = NodeBus(self.node_id, lambda: self.draining, self.stopped)
        self.pool = WorkerPool(settings, lambda: self.replica.platform, self.bus, self.stopped)
        self.drain = Drain(settings.drain_timeout_seconds, self.pool.rooms_left)
        self.region = RegionClient(settings)
        self.heartbeat_interval = 1.0
        # The cloud's scale-in agent; set while run() runs on a cloud machine.
        self.drain_agent: DrainAgent | None = None
        # Rooms moved off ahead of a Spot interruption.
        self.evacuation = Evacuation(
            self.bus,
            self.pool.room_participants,
            self.heartbeat,
            settings.evacuation_fraction,
            settings.evacuation_rate,
        )
        self.bus.evacuation = self.evacuation

    # what liveness and the drain agent read of the node (media_node.liveness.LiveNode,
    # media_node.drain_agent.DrainingNode)

    @property
    def draining(self) -> bool:
        return self.drain.draining

    @property
    def room_worker(self) -> dict[str, WorkerHandle]:
        return self.pool.room_worker

    def start_drain(self) -> None:
        self.drain.start()

    async def report_drain(self, report: DrainReport) -> None:
        await self.region.drained(self.node_id, report)

    # ---- the region ----

    def registration(self) -> NodeRegistration:
        return NodeRegistration(
            node_id=self.node_id,
            region=self.settings.region,
            public_ip=self.settings.public_ip,
            workers=len(self.pool.workers) or self.settings.workers,
            capacity_streams=self.settings.workers * self.settings.streams_per_worker,
            version=__version__,
        )

    async def register(self) -> None:
        self.heartbeat_interval = await self.region.register(self.registration())

    async def heartbeat(self) -> None:
        await self.bus.hold_rooms()
        beat = Heartbeat(
            load=self.pool.load(), draining=self.draining, settings=self.replica.platform
        )
        try:
            drain_requested = await self.region.heartbeat(self.node_id, beat)
        except UnknownToRegion:
            await self.register()
            return
        if drain_requested and not self.draining:
            log.info("drain requested by an operator")
            self.start_drain()

    async def _heartbeat_loop(self) -> None:
        while not self.stopped.is_set():
            try:
                await self.heartbeat()
            except (ConnectionError, RegistrationFailed) as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(self.heartbeat_interval)

    async def _register_until_accepted(self) -> None:
        while True:
            try:
                await self.register()
                return
            except (ConnectionError, RegistrationFailed) as exc:
                log.warning("registration failed, retrying: %s", exc)
                await asyncio.sleep(1.0)

    # ---- run ----

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A loop of the node ended on its own: better a stopped node (deregistered, restarted
        by its service manager) than one that heartbeats while it drops every command."""
        if task.cancelled() or self.stopped.is_set():
            return
        log.error("node loop %s ended: %r; stopping", task.get_name(), task.exception())
        self.stopped.set()

    def on_sigterm(self) -> None:
        if self.draining:
            log.warning("second SIGTERM: exiting now")
            self.stopped.set()
        else:
            self.start_drain()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.on_sigterm)
        loop.add_signal_handler(signal.SIGINT, self.on_sigterm)
        # named, so gateways see the connections close the moment this process dies
        redis = connect(self.settings.redis_url, client_name=bus.node_client_name(self.node_id))
        self.bus.attach(self.pool, redis)
        await self.region.open()
        agent_scope = contextlib.AsyncExitStack()
        try:
            health = await liveness.serve(
                self, self.settings.health_host, self.settings.health_port
            )
            agent_scope.push_async_callback(health.cleanup)
            # after the workers stop (shutdown), their last segments are uploaded
            await agent_scope.enter_async_context(recording_uploads())
            self.drain_agent = await agent_scope.enter_async_context(
                cloud_agent(
                    self,
                    self.settings.cloud,
                    self.settings.metadata_url,
                    self.settings.cloud_api_url,
                    heartbeat_seconds=self.settings.lifecycle_heartbeat_seconds,
                    idle_grace_seconds=self.settings.scale_in_idle_seconds,
                )
            )
            await self.replica.refresh()
            self.pool.start()
            # no capacity is advertised before the workers can take a room
            await self.pool.wait_ready()
            await self._register_until_accepted()
            tasks = [
                asyncio.create_task(coro)
                for coro in (
                    self.bus.inbox_loop(),
                    self.bus.outbox_loop(),
                    self._heartbeat_loop(),
                    self.replica.run(self.stopped),
                    self.bus.sweep_loop(),
                    self.drain.watch(self.stopped, self.drain_agent),
                )
            ]
            if self.drain_agent is not None:
                tasks.append(asyncio.create_task(self.drain_agent.run()))
            for task in tasks:
                task.add_done_callback(self._loop_ended)
            await self.stopped.wait()
            await cancel_and_wait(tasks, SHUTDOWN_TASKS_TIMEOUT_S)
        finally:
            self.stopped.set()
            await self.shutdown()
            await agent_scope.aclose()

    async def shutdown(self) -> None:
        await self.pool.stop()
        redis = self.bus.redis
        with contextlib.suppress(RedisError, OSError):
            await redis.delete(bus.node_key(self.node_id))
            await redis.srem(bus.NODES, self.node_id)
        await redis.aclose()
        await self.region.close()
