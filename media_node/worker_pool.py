"""The node's forwarding workers: one process per core, each hosting some of the node's rooms.

The pool spawns the workers, writes commands to them without ever blocking the node's loop,
reads what they report, places each new room on the least busy worker and replaces a worker
that dies. What the workers say for clients goes to a ``PoolListener`` (the node's bus).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from pydantic import ValidationError

from media_node.settings import MediaNodeSettings
from media_node.sfu import SfuConfig
from media_node.worker import worker_main
from rtcfleet import tracing
from rtcfleet.node_messages import (
    NodeJoin,
    RoomEmpty,
    SessionLeft,
    ToSession,
    WorkerLoadReport,
    WorkerSettings,
    WorkerStop,
    parse_worker_event,
)
from rtcfleet.nodes import NodeLoad
from rtcfleet.settings_store import PlatformSettings

log = logging.getLogger("rtcfleet.media")

WORKER_START_TIMEOUT_S = 60.0
# commands waiting for one worker; past it a command is refused with an error to its session
WORKER_COMMAND_QUEUE = 1024
# how long a stopping node waits for a worker to take its stop and exit before killing it: a
# worker that does not read its pipe (wedged, or stopped) holds the node's stop this long at most
WORKER_STOP_TIMEOUT_S = 5.0
JOIN_OP = NodeJoin.model_fields["op"].default
# messages read from one worker per hop to its pipe thread: the node's loop handles a batch,
# then the next is read, so a worker that talks without pause cannot hold up its heartbeats
READ_BATCH = 256
STOP_OP = WorkerStop.model_fields["op"].default


class PoolListener(Protocol):
    """Where the workers' news goes: the node's side of the region's bus."""

    def to_session(self, session: str, message: dict[str, Any]) -> None: ...

    def session_left(self, session: str) -> None: ...

    def room_empty(self, room: str) -> None: ...

    def rooms_lost(self, rooms: set[str]) -> None: ...


@dataclass
class WorkerHandle:
    """A worker process and the pipe to it.

    Commands wait in a bounded queue that one task writes to the pipe from a thread, so the
    node's loop never blocks on a worker that is busy (or on one writing to us at the same
    time); a full queue refuses the command with an error to its session.
    """

    index: int
    process: BaseProcess
    conn: Connection
    load: NodeLoad = field(default_factory=NodeLoad)
    rooms: set[str] = field(default_factory=set)
    # set by the worker's first load report: its SFU is up and reading commands
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    commands: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=WORKER_COMMAND_QUEUE)
    )
    dead: bool = False
    # the node is stopping: the worker takes its stop and nothing more
    closing: bool = False
    writer: asyncio.Task[None] | None = None
    reader: asyncio.Task[None] | None = None
    # room -> joins sent and not yet reported finished by a ``RoomEmpty``
    joins: dict[str, int] = field(default_factory=dict)

    def submit(self, command: dict[str, Any]) -> bool:
        """Queue a command without waiting; False when the queue is full or the worker dead."""
        if self.dead or self.closing:
            return False
        try:
            self.commands.put_nowait(command)
        except asyncio.QueueFull:
            return False
        if command.get("op") == JOIN_OP:
            room = str(command["room"])
            self.joins[room] = self.joins.get(room, 0) + 1
        return True


def receive_batch(conn: Connection) -> tuple[list[dict[str, Any]], bool]:
    """What a worker said, in a pipe thread: one message (waiting for it, and for its last
    byte), then as many more as are there, up to ``READ_BATCH``; and whether the pipe ended."""
    items: list[dict[str, Any]] = []
    try:
        items.append(conn.recv())
        while len(items) < READ_BATCH and conn.poll():
            items.append(conn.recv())
    except (EOFError, OSError, ValueError):
        return items, True
    return items, False


class WorkerPool:
    def __init__(
        self,
        settings: MediaNodeSettings,
        platform: Callable[[], PlatformSettings],
        listener: PoolListener,
        stopped: asyncio.Event,
    ) -> None:
        """``platform``: the platform settings in force, read when a worker starts;
        ``stopped``: set when the node stops, after which a dead worker stays dead."""
        self.settings = settings
        self.platform = platform
        self.listener = listener
        self.stopped = stopped
        self.workers: list[WorkerHandle] = []
        self.room_worker: dict[str, WorkerHandle] = {}
        # the pipes' reads and writes, two threads per worker (and room for a replaced worker's
        # to end): a write waits while its worker is behind, a read while its worker is half-way
        # through a message, and neither the node's loop nor its default threads (DNS, uploads,
        # cloud calls) may wait with them
        self._pipes = ThreadPoolExecutor(
            max_workers=2 * settings.workers + 2, thread_name_prefix="rtcfleet-worker-pipe"
        )

    def sfu_config(self) -> SfuConfig:
        platform = self.platform()
        return SfuConfig(
            public_ip=self.settings.public_ip,
            port_min=self.settings.port_min,
            port_max=self.settings.port_max,
            max_video_bitrate=platform.max_video_bitrate_bps,
            allowed_codecs=tuple(platform.allowed_codecs),
            local_candidates=self.settings.on_local_network(),
            shared_udp_port=self.settings.shared_udp_port,
        )

    def start(self) -> None:
        for index in range(self.settings.workers):
            self.workers.append(self._spawn(index))

    async def wait_ready(self) -> None:
        """Every worker has reported once: its SFU can take a room."""
        async with asyncio.timeout(WORKER_START_TIMEOUT_S):
            await asyncio.gather(*(w.ready.wait() for w in self.workers))

    def _spawn(self, index: int) -> WorkerHandle:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=True)
        process = context.Process(
            target=worker_main,
            args=(
                child,
                self.sfu_config(),
                self.platform().max_participants_per_room,
                self.settings.bind_ip,
            ),
            name=f"rtcfleet-media-worker-{index}",
            daemon=True,
        )
        process.start()
        child.close()
        handle = WorkerHandle(index=index, process=process, conn=parent)
        self.watch(handle)
        return handle

    def watch(self, handle: WorkerHandle) -> None:
        """Start moving commands to the worker and reading what it says."""
        handle.writer = asyncio.create_task(self._write(handle), name=f"worker-{handle.index}")
        handle.reader = asyncio.create_task(self._read(handle), name=f"worker-{handle.index}-in")

    async def _write(self, handle: WorkerHandle) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command = await handle.commands.get()
            try:
                await loop.run_in_executor(self._pipes, handle.conn.send, command)
            except (OSError, ValueError, EOFError):
                self._died(handle)
                return
            if command.get("op") == STOP_OP:
                return  # the worker reads nothing after it

    async def _read(self, handle: WorkerHandle) -> None:
        loop = asyncio.get_running_loop()
        ended = False
        while not ended:
            items, ended = await loop.run_in_executor(self._pipes, receive_batch, handle.conn)
            for item in items:
                try:
                    self.receive(handle, item)
                except Exception:  # one bad message must not end the reading of the rest
                    log.exception("worker %d: a message failed", handle.index)
        self._died(handle)

    def _died(self, handle: WorkerHandle) -> None:
        if handle.dead:
            return
        handle.dead = True
        for task in (handle.writer, handle.reader):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if not self.stopped.is_set():
            self._replace(handle)

    def _replace(self, dead: WorkerHandle) -> None:
        """A worker died: its calls are gone, so their clients place their media again (on a
        fresh worker of this node), and the node keeps its capacity. Commands it never took
        are answered the same way, never dropped in silence."""
        log.error("worker %d died with %d rooms; replacing it", dead.index, len(dead.rooms))
        while not dead.commands.empty():
            command = dead.commands.get_nowait()
            room = str(command.get("room", ""))
            if room and room not in dead.rooms:
                dead.rooms.add(room)
        self.listener.rooms_lost(dead.rooms)
        for room in dead.rooms:
            self.room_worker.pop(room, None)
        self.workers[self.workers.index(dead)] = self._spawn(dead.index)

    def receive(self, handle: WorkerHandle, item: dict[str, Any]) -> None:
        """One message from a worker's pipe, validated before anything acts on it."""
        trace = tracing.from_pipe(item)
        try:
            event = parse_worker_event(item)
        except ValidationError as exc:
            log.error("worker %d sent a malformed message: %s", handle.index, exc)
            return
        if isinstance(event, ToSession):
            with tracing.attached(trace):  # the listener sends it on in the worker's trace
                self.listener.to_session(event.session, event.message)
        elif isinstance(event, WorkerLoadReport):
            handle.load = event
            handle.ready.set()
        elif isinstance(event, SessionLeft):
            self.listener.session_left(event.session)
        elif isinstance(event, RoomEmpty):
            room = event.room
            pending = handle.joins.pop(room, 0) - event.joins
            if pending > 0:
                # a join was on its way to the worker as the room emptied: the room lives on
                # there, and its claim must stay, or the next join would go to another node
                handle.joins[room] = pending
                return
            handle.rooms.discard(room)
            if self.room_worker.get(room) is handle:
                del self.room_worker[room]
            self.listener.room_empty(room)

    def worker_for(self, room: str) -> WorkerHandle:
        """The room's worker, or the least busy one for a new room."""
        handle = self.room_worker.get(room)
        if handle is None:
            handle = min(self.workers, key=lambda w: (w.load.participants, len(w.rooms), w.index))
            self.room_worker[room] = handle
            handle.rooms.add(room)
        return handle

    def forget_unjoined(self, room: str, handle: WorkerHandle) -> None:
        """A join the worker never got (its queue was full): the room leaves the map and its
        claim goes, unless an earlier join of it is on the worker (then it lives there)."""
        if handle.joins.get(room, 0) > 0 or self.room_worker.get(room) is not handle:
            return
        del self.room_worker[room]
        handle.rooms.discard(room)
        self.listener.room_empty(room)

    def room_participants(self) -> dict[str, int]:
        """Every room the node hosts, with its participants (0 for a room still being set up)."""
        rooms = dict.fromkeys(self.room_worker, 0)
        for handle in self.workers:
            rooms.update(handle.load.room_participants)
        return rooms

    def rooms_left(self) -> int:
        """Rooms placed here or still reported by a worker: a drain waits for both."""
        return max(len(self.room_worker), sum(w.load.rooms for w in self.workers))

    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.ready.is_set() and w.process.is_alive())

    def load(self) -> NodeLoad:
        """The node's load: its workers' summed (room names stay with the node's room claims)."""
        loads = [w.load for w in self.workers]
        return NodeLoad(
            rooms=sum(item.rooms for item in loads),
            participants=sum(item.participants for item in loads),
            forwarded_streams=sum(item.forwarded_streams for item in loads),
            bitrate_out_bps=sum(item.bitrate_out_bps for item in loads),
            cpu_percent=round(sum(item.cpu_percent for item in loads), 1),
        )

    def apply_settings(self, platform: PlatformSettings) -> None:
        command = WorkerSettings(
            max_video_bitrate=platform.max_video_bitrate_bps,
            max_participants=platform.max_participants_per_room,
            allowed_codecs=list(platform.allowed_codecs),
        ).model_dump(mode="json")
        for handle in self.workers:
            handle.submit(command)

    async def stop(self) -> None:
        """Ask every worker to stop and wait for it, killing it after ``WORKER_STOP_TIMEOUT_S``.

        The stop goes through each worker's writer like any command, so nothing here waits on a
        pipe: a worker that does not read has its stop wait in the queue, then is killed.
        Commands still queued are not sent (the node is going, and its gateways move its
        sessions). ``stopped`` must be set first, so the workers that exit are not replaced."""
        stop = WorkerStop().model_dump(mode="json")
        for handle in self.workers:
            handle.closing = True
            while not handle.commands.empty():
                handle.commands.get_nowait()
            handle.commands.put_nowait(stop)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WORKER_STOP_TIMEOUT_S
        while any(h.process.is_alive() for h in self.workers) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for handle in self.workers:
            if handle.process.is_alive():
                log.error(
                    "worker %d did not stop in %.0f s; killing it",
                    handle.index,
                    WORKER_STOP_TIMEOUT_S,
                )
                handle.process.kill()
        # a killed worker's pipe breaks: a write still waiting on it ends at once
        writers = [h.writer for h in self.workers if h.writer is not None and not h.writer.done()]
        if writers:
            await asyncio.wait(writers, timeout=WORKER_STOP_TIMEOUT_S)
        for handle in self.workers:
            for task in (handle.writer, handle.reader):
                if task is not None:
                    task.cancel()
            await asyncio.to_thread(handle.process.join, 1.0)
        self._pipes.shutdown(wait=False, cancel_futures=True)
