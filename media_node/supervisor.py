"""The media node's supervisor: registration, heartbeats, settings, drain, and room placement
on its forwarding workers.

The supervisor is the node's only contact with the region (gateway API, Redis, the Postgres
replica); workers only forward packets. It reads the node's command stream from Redis, hands
each room's commands to the worker that hosts the room, and writes the workers' messages to
the clients' session streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from media_node import liveness
from media_node.drain_agent import DrainAgent, cloud_agent
from media_node.evacuation import Evacuation
from media_node.settings import MediaNodeSettings
from media_node.sfu import SfuConfig
from media_node.worker import WorkerLoad, worker_main
from rtcfleet import __version__, bus, settings_store
from rtcfleet.node_messages import (
    AnyNodeCommand,
    NodeJoin,
    NodeLeave,
    NodeProbe,
    RoomEmpty,
    SessionLeft,
    ToSession,
    WorkerLoadReport,
    WorkerSettings,
    WorkerStop,
    parse_node_command,
    parse_worker_event,
)
from rtcfleet.nodes import DrainReport, Heartbeat, NodeLoad, NodeRegistration
from rtcfleet.redis_url import connect
from rtcfleet.settings_store import PlatformSettings
from rtcfleet.signaling import ErrorCode, Reconnect, error

log = logging.getLogger("rtcfleet.media")

INBOX_BLOCK_MS = 1000
SESSION_SWEEP_INTERVAL_S = 2.0
# longer than a gateway's keepalive, which writes again a session record Redis lost
SESSION_MISSING_GRACE_S = 12.0
HTTP_TIMEOUT_S = 3.0
WORKER_START_TIMEOUT_S = 60.0
# commands waiting for one worker; past it a command is refused with an error to its session
WORKER_COMMAND_QUEUE = 1024
# messages waiting for Redis on their way to sessions; at the bound a message is dropped, its
# client recovers by its own timeouts (no answer: a new offer; silence: a rejoin)
OUTBOX_LIMIT = 4096


class RegistrationFailed(RuntimeError):
    """No gateway accepted the node's registration."""


@dataclass
class WorkerHandle:
    """A worker process and the pipe to it.

    Commands wait in a bounded queue that one task writes to the pipe from a thread, so the
    supervisor's loop never blocks on a worker that is busy (or on one writing to us at the
    same time); a full queue refuses the command with an error to its session.
    """

    index: int
    process: BaseProcess
    conn: Connection
    load: WorkerLoad = field(default_factory=WorkerLoad)
    rooms: set[str] = field(default_factory=set)
    # set by the worker's first load report: its SFU is up and reading commands
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    commands: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=WORKER_COMMAND_QUEUE)
    )
    dead: bool = False
    writer: asyncio.Task[None] | None = None

    def submit(self, command: dict[str, Any]) -> bool:
        """Queue a command without waiting; False when the queue is full or the worker dead."""
        if self.dead:
            return False
        try:
            self.commands.put_nowait(command)
        except asyncio.QueueFull:
            return False
        return True


class Supervisor:
    def __init__(self, settings: MediaNodeSettings) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.platform = PlatformSettings()
        self.settings_loaded_at: float | None = None
        self.draining = False
        self.drain_started: float | None = None
        self.workers: list[WorkerHandle] = []
        self.room_worker: dict[str, WorkerHandle] = {}
        # session -> room, for the sweep of sessions whose clients are gone
        self.sessions: dict[str, str] = {}
        self._missing_since: dict[str, float] = {}
        self.heartbeat_interval = 1.0
        self._redis: aioredis.Redis | None = None
        self._http: aiohttp.ClientSession | None = None
        self._stopped = asyncio.Event()
        self._gateway_index = 0
        self._outbox: asyncio.Queue[tuple[str | None, dict[str, Any]]] = asyncio.Queue(
            maxsize=OUTBOX_LIMIT
        )
        self.outbox_dropped = 0
        # The cloud's scale-in agent; set while run() runs on a cloud machine.
        self.drain_agent: DrainAgent | None = None
        # Rooms moved off ahead of a Spot interruption (media_node.evacuation).
        self.evacuation = Evacuation(self, settings.evacuation_fraction, settings.evacuation_rate)

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "supervisor not started"
        return self._redis

    # ---- workers ----------------------------------------------------------------------------

    def sfu_config(self) -> SfuConfig:
        return SfuConfig(
            public_ip=self.settings.public_ip,
            port_min=self.settings.port_min,
            port_max=self.settings.port_max,
            max_video_bitrate=self.platform.max_video_bitrate_bps,
            allowed_codecs=tuple(self.platform.allowed_codecs),
            local_candidates=self.settings.on_local_network(),
        )

    def start_workers(self) -> None:
        for index in range(self.settings.workers):
            self.workers.append(self._spawn_worker(index))

    def _spawn_worker(self, index: int) -> WorkerHandle:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=True)
        process = context.Process(
            target=worker_main,
            args=(
                child,
                self.sfu_config(),
                self.platform.max_participants_per_room,
                self.settings.bind_ip,
            ),
            name=f"rtcfleet-media-worker-{index}",
            daemon=True,
        )
        process.start()
        child.close()
        handle = WorkerHandle(index=index, process=process, conn=parent)
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_worker, handle)
        handle.writer = asyncio.create_task(self._write_worker(handle), name=f"worker-{index}")
        return handle

    async def _write_worker(self, handle: WorkerHandle) -> None:
        while True:
            command = await handle.commands.get()
            try:
                await asyncio.to_thread(handle.conn.send, command)
            except (OSError, ValueError, EOFError):
                self._worker_died(handle)
                return

    def _on_worker(self, handle: WorkerHandle) -> None:
        try:
            while handle.conn.poll():
                self._from_worker(handle, handle.conn.recv())
        except (EOFError, OSError):
            self._worker_died(handle)

    def _worker_died(self, handle: WorkerHandle) -> None:
        if handle.dead:
            return
        handle.dead = True
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(handle.conn.fileno())
        if handle.writer is not None and handle.writer is not asyncio.current_task():
            handle.writer.cancel()
        if not self._stopped.is_set():
            self._replace_worker(handle)

    def _replace_worker(self, dead: WorkerHandle) -> None:
        """A worker died: its calls are gone, so their clients place their media again (on a
        fresh worker of this node), and the node keeps its capacity. Commands it never took
        are answered the same way, never dropped in silence."""
        log.error("worker %d died with %d rooms; replacing it", dead.index, len(dead.rooms))
        while not dead.commands.empty():
            command = dead.commands.get_nowait()
            room = str(command.get("room", ""))
            if room and room not in dead.rooms:
                dead.rooms.add(room)
        reconnect = Reconnect(reason="media_worker_lost").model_dump(mode="json")
        for session, room in list(self.sessions.items()):
            if room in dead.rooms:
                self._to_outbox(session, reconnect)
                del self.sessions[session]
        for room in dead.rooms:
            self.room_worker.pop(room, None)
        self.workers[self.workers.index(dead)] = self._spawn_worker(dead.index)

    def _from_worker(self, handle: WorkerHandle, item: dict[str, Any]) -> None:
        try:
            event = parse_worker_event(item)
        except ValidationError as exc:
            log.error("worker %d sent a malformed message: %s", handle.index, exc)
            return
        if isinstance(event, ToSession):
            if not self.evacuation.is_silenced(event.session):
                self._to_outbox(event.session, event.message)
        elif isinstance(event, WorkerLoadReport):
            handle.load = WorkerLoad(**event.model_dump(exclude={"kind"}))
            handle.ready.set()
        elif isinstance(event, SessionLeft):
            self.sessions.pop(event.session, None)
        elif isinstance(event, RoomEmpty):
            room = event.room
            handle.rooms.discard(room)
            if self.room_worker.get(room) is handle:
                del self.room_worker[room]
            self._to_outbox(None, {"release": room})

    def to_session(self, session: str, message: dict[str, Any]) -> None:
        """A server message for one session, in order after what the node sent it before."""
        self._to_outbox(session, message)

    def _to_outbox(self, session: str | None, message: dict[str, Any]) -> None:
        """Queue for the outbox loop; a full outbox means Redis stalls, and memory must not grow."""
        try:
            self._outbox.put_nowait((session, message))
        except asyncio.QueueFull:
            self.outbox_dropped += 1
            if self.outbox_dropped % 1000 == 1:
                log.warning("outbox full: %d messages dropped so far", self.outbox_dropped)

    async def _outbox_loop(self) -> None:
        """One writer, so each session's messages reach its stream in the order they were made."""
        while True:
            session, message = await self._outbox.get()
            if session is None:
                await self._release_room(message["release"])
            else:
                await self._deliver(session, message)

    async def _deliver(self, session: str, message: dict[str, Any]) -> None:
        try:
            await bus.send_to_session(self.redis, session, message)
        except (RedisError, OSError) as exc:
            log.warning("could not deliver to session %s: %s", session, exc)

    async def _release_room(self, room: str) -> None:
        """Drop our claim on an empty room so its next join is placed afresh."""
        with contextlib.suppress(RedisError, OSError):
            await bus.release_room(self.redis, room, self.node_id)

    def worker_for(self, room: str) -> WorkerHandle:
        """The room's worker, or the least busy one for a new room."""
        handle = self.room_worker.get(room)
        if handle is None:
            handle = min(self.workers, key=lambda w: (w.load.participants, len(w.rooms), w.index))
            self.room_worker[room] = handle
            handle.rooms.add(room)
        return handle

    def room_participants(self) -> dict[str, int]:
        """Every room the node hosts, with its participants (0 for a room still being set up)."""
        rooms = dict.fromkeys(self.room_worker, 0)
        for handle in self.workers:
            rooms.update(handle.load.room_participants)
        return rooms

    def load(self) -> NodeLoad:
        loads = [w.load for w in self.workers]
        return NodeLoad(
            rooms=sum(item.rooms for item in loads),
            participants=sum(item.participants for item in loads),
            forwarded_streams=sum(item.forwarded_streams for item in loads),
            bitrate_out_bps=sum(item.bitrate_out_bps for item in loads),
            cpu_percent=round(sum(item.cpu_percent for item in loads), 1),
        )

    # ---- commands from gateways -------------------------------------------------------------

    async def handle_command(self, command: AnyNodeCommand) -> None:
        if isinstance(command, NodeProbe):
            # a gateway's region-health probe: this node's bus, loop and workers answer
            self._outbox.put_nowait((command.probe, self.probe_answer()))
            return
        room, session = command.room, command.session
        if isinstance(command, NodeJoin):
            if self.evacuation.is_moving(room):
                self._to_outbox(session, Reconnect(reason="room_moved").model_dump(mode="json"))
                return
            if room not in self.room_worker:
                # claim the room before hosting it: a claim released while this join was on
                # its way may already name another node, and then the room lives there
                holder = await bus.claim_for(self.redis, room, self.node_id)
                if holder != self.node_id:
                    log.warning("room %s is held by %s: join sent there", room, holder)
                    moved = Reconnect(reason="room_moved").model_dump(mode="json")
                    self._to_outbox(session, moved)
                    return
            if self.draining and room not in self.room_worker:
                await self._release_room(room)
                refusal = error(ErrorCode.NO_MEDIA_NODE, "media node is draining; retry")
                self._to_outbox(session, refusal.model_dump(mode="json"))
                return
            self.sessions[session] = room
        handle = self.room_worker.get(room) if not isinstance(command, NodeJoin) else None
        handle = handle or self.worker_for(room)
        if not handle.submit(command.model_dump(mode="json")):
            busy = error(ErrorCode.MEDIA_ERROR, "media node busy: command dropped, retry")
            self._to_outbox(session, busy.model_dump(mode="json"))

    async def _inbox_loop(self) -> None:
        stream, cursor = bus.node_inbox(self.node_id), "$"
        while not self._stopped.is_set():
            try:
                result = await bus.read_streams(self.redis, {stream: cursor}, INBOX_BLOCK_MS)
            except (RedisError, OSError) as exc:
                log.warning("inbox read failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for _, entries in result:
                for entry_id, fields in entries:
                    cursor = entry_id
                    try:
                        await self.handle_command(parse_node_command(fields.get("m", "")))
                    except ValidationError as exc:
                        log.warning("malformed command %s refused: %s", entry_id, exc)
                    except (RedisError, OSError) as exc:
                        log.warning("command %s failed: %s", entry_id, exc)

    async def _sweep_loop(self) -> None:
        """Leave sessions whose clients are gone for good (their session record expired)."""
        while not self._stopped.is_set():
            await asyncio.sleep(SESSION_SWEEP_INTERVAL_S)
            sessions = list(self.sessions.items())
            if not sessions:
                continue
            try:
                alive = await self.redis.exists(*[bus.session_key(s) for s, _ in sessions])
                if alive == len(sessions):
                    self._missing_since.clear()
                    continue
                async with self.redis.pipeline(transaction=False) as pipe:
                    for session, _ in sessions:
                        pipe.exists(bus.session_key(session))
                    flags = await pipe.execute()
            except (RedisError, OSError):
                continue
            now = time.monotonic()
            for (session, room), exists in zip(sessions, flags, strict=True):
                if exists:
                    self._missing_since.pop(session, None)
                    continue
                # a record Redis lost is written again by the session's gateway within its
                # keepalive: only a record missing for longer than that is a client gone
                since = self._missing_since.setdefault(session, now)
                if now - since >= SESSION_MISSING_GRACE_S:
                    self._missing_since.pop(session, None)
                    await self.handle_command(NodeLeave(session=session, room=room))
                    self.sessions.pop(session, None)
            for session in set(self._missing_since) - set(self.sessions):
                del self._missing_since[session]

    def probe_answer(self) -> dict[str, Any]:
        alive = [w for w in self.workers if w.ready.is_set() and w.process.is_alive()]
        return {
            "type": "probe",
            "node_id": self.node_id,
            "workers_ready": 0 if self.draining else len(alive),
        }

    # ---- region: registration, heartbeats, settings -----------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.cluster_secret.get_secret_value()}"}

    async def _post(self, path: str, body: str) -> tuple[int, dict[str, Any]]:
        """POST to the first gateway that answers, starting with the last one that did."""
        assert self._http is not None
        urls = self.settings.gateway_urls
        last_error: Exception | None = None
        for offset in range(len(urls)):
            index = (self._gateway_index + offset) % len(urls)
            try:
                async with self._http.post(
                    urls[index] + path,
                    data=body,
                    headers=self._headers() | {"Content-Type": "application/json"},
                ) as response:
                    payload = await response.json(content_type=None)
                    self._gateway_index = index
                    return response.status, payload if isinstance(payload, dict) else {}
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                last_error = exc
        raise ConnectionError(f"no gateway reachable: {last_error}")

    def registration(self) -> NodeRegistration:
        return NodeRegistration(
            node_id=self.node_id,
            region=self.settings.region,
            public_ip=self.settings.public_ip,
            workers=len(self.workers) or self.settings.workers,
            capacity_streams=self.settings.workers * self.settings.streams_per_worker,
            version=__version__,
        )

    async def register(self) -> None:
        status, body = await self._post(
            "/internal/nodes/register", self.registration().model_dump_json()
        )
        if status != 200:
            raise RegistrationFailed(f"gateway answered {status}: {body}")
        self.heartbeat_interval = float(body.get("heartbeat_interval_seconds", 1.0))
        log.info("registered as %s in %s", self.node_id, self.settings.region)

    async def hold_rooms(self) -> None:
        """Keep this node's room claims, re-asserting any that Redis lost."""
        try:
            rooms = self.evacuation.held(self.room_participants())
            taken = await bus.hold_rooms(self.redis, self.node_id, rooms)
        except (RedisError, OSError) as exc:
            log.warning("could not renew room claims: %s", exc)
            return
        for room in taken:
            log.warning("room %s is claimed by another node while hosted here", room)

    async def heartbeat(self) -> None:
        await self.hold_rooms()
        beat = Heartbeat(load=self.load(), draining=self.draining, settings=self.platform)
        status, body = await self._post(
            f"/internal/nodes/{self.node_id}/heartbeat", beat.model_dump_json()
        )
        if status == 404:
            # the registry forgot us (Redis failover, long pause): register again
            await self.register()
        elif status == 200 and body.get("drain") and not self.draining:
            log.info("drain requested by an operator")
            self.start_drain()

    async def _heartbeat_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                await self.heartbeat()
            except (ConnectionError, RegistrationFailed) as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(self.heartbeat_interval)

    async def report_drain(self, report: DrainReport) -> None:
        """How the drain went, to the region (its gateways count it in their metrics)."""
        status, body = await self._post(
            f"/internal/nodes/{self.node_id}/drained", report.model_dump_json()
        )
        if status != 200:
            log.warning("drain report refused (%d): %s", status, body)

    async def refresh_settings(self) -> bool:
        """Read settings from the replica; keep the last good copy when it is unreachable."""
        try:
            conn = await asyncpg.connect(self.settings.settings_dsn.get_secret_value(), timeout=3)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            log.warning("settings replica unreachable, keeping last copy: %s", exc)
            return False
        try:
            platform = await settings_store.load(conn, fallback=self.platform)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("settings read failed, keeping last copy: %s", exc)
            return False
        finally:
            await conn.close()
        self.settings_loaded_at = time.time()
        if platform != self.platform:
            self.platform = platform
            log.info("settings changed: %s", platform.model_dump())
            self._broadcast_settings()
        return True

    def _broadcast_settings(self) -> None:
        command = WorkerSettings(
            max_video_bitrate=self.platform.max_video_bitrate_bps,
            max_participants=self.platform.max_participants_per_room,
            allowed_codecs=list(self.platform.allowed_codecs),
        ).model_dump(mode="json")
        for handle in self.workers:
            handle.submit(command)

    async def _settings_loop(self) -> None:
        while not self._stopped.is_set():
            await asyncio.sleep(self.settings.settings_refresh_seconds)
            await self.refresh_settings()

    # ---- drain ------------------------------------------------------------------------------

    def start_drain(self) -> None:
        """No new rooms from now on; the node exits when its rooms end or the bound passes."""
        if not self.draining:
            self.draining = True
            self.drain_started = time.monotonic()
            log.info("draining: %d rooms remain", len(self.room_worker))

    async def _drain_watch(self) -> None:
        while not self._stopped.is_set():
            await asyncio.sleep(0.2)
            if self.drain_started is None:
                continue
            rooms_left = max(len(self.room_worker), sum(w.load.rooms for w in self.workers))
            elapsed = time.monotonic() - self.drain_started
            if rooms_left == 0 or elapsed > self.settings.drain_timeout_seconds:
                log.info("drain finished after %.1f s (%d rooms left)", elapsed, rooms_left)
                if self.drain_agent is not None:
                    await self.drain_agent.release()
                self._stopped.set()

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A loop of the node ended on its own: better a stopped node (deregistered, restarted
        by its service manager) than one that heartbeats while it drops every command."""
        if task.cancelled() or self._stopped.is_set():
            return
        log.error("node loop %s ended: %r; stopping", task.get_name(), task.exception())
        self._stopped.set()

    def on_sigterm(self) -> None:
        if self.draining:
            log.warning("second SIGTERM: exiting now")
            self._stopped.set()
        else:
            self.start_drain()

    # ---- run --------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.on_sigterm)
        loop.add_signal_handler(signal.SIGINT, self.on_sigterm)
        self._redis = connect(self.settings.redis_url)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
        agent_scope = contextlib.AsyncExitStack()
        try:
            health = await liveness.serve(
                self, self.settings.health_host, self.settings.health_port
            )
            agent_scope.push_async_callback(health.cleanup)
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
            await self.refresh_settings()
            self.start_workers()
            # no capacity is advertised before the workers can take a room
            await asyncio.wait_for(
                asyncio.gather(*(w.ready.wait() for w in self.workers)), WORKER_START_TIMEOUT_S
            )
            while True:
                try:
                    await self.register()
                    break
                except (ConnectionError, RegistrationFailed) as exc:
                    log.warning("registration failed, retrying: %s", exc)
                    await asyncio.sleep(1.0)
            tasks = [
                asyncio.create_task(coro)
                for coro in (
                    self._inbox_loop(),
                    self._outbox_loop(),
                    self._heartbeat_loop(),
                    self._settings_loop(),
                    self._sweep_loop(),
                    self._drain_watch(),
                )
            ]
            if self.drain_agent is not None:
                tasks.append(asyncio.create_task(self.drain_agent.run()))
            for task in tasks:
                task.add_done_callback(self._loop_ended)
            await self._stopped.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._stopped.set()
            await self.shutdown()
            await agent_scope.aclose()

    async def shutdown(self) -> None:
        for handle in self.workers:
            if handle.writer is not None:
                handle.writer.cancel()
            with contextlib.suppress(OSError, ValueError):
                handle.conn.send(WorkerStop().model_dump(mode="json"))
        for handle in self.workers:
            await asyncio.to_thread(handle.process.join, 5)
            if handle.process.is_alive():
                handle.process.kill()
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(bus.node_key(self.node_id))
                await self.redis.srem(bus.NODES, self.node_id)
            await self._redis.aclose()
        if self._http is not None:
            await self._http.close()
