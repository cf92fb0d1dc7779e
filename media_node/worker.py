"""A forwarding worker: one process, one core, an in-process SFU hosting some of the node's rooms.

A Python process uses at most one core, so a node runs one worker per core and places each
room on one worker. The worker speaks to its supervisor over a pipe only: no Redis, no Postgres,
no HTTP in the process that moves packets.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from aiortc.exceptions import InvalidAccessError, InvalidStateError
from pydantic import ValidationError

from media_node import rtp_hooks
from media_node.ice import InvalidCandidate
from media_node.recording import Recordings
from media_node.sfu import (
    CodecNotAllowed,
    PublishNotAllowed,
    RoomClosed,
    Sfu,
    SfuConfig,
    SubscribeNotAllowed,
    TooManyTracks,
    UnknownParticipant,
    UnknownRoom,
)
from media_node.subscriber import SubscriberNotNegotiating
from rtcfleet import tracing
from rtcfleet.node_messages import (
    AnyWorkerCommand,
    NodeJoin,
    NodeLeave,
    NodePublishOffer,
    NodeRecording,
    NodeSubscriberAnswer,
    NodeTrickle,
    RoomEmpty,
    SessionLeft,
    ToSession,
    WorkerLoadReport,
    WorkerSettings,
    WorkerStop,
    parse_worker_command,
)
from rtcfleet.signaling import (
    ErrorCode,
    ParticipantJoined,
    ParticipantLeft,
    PublishAnswer,
    SessionReplaced,
    SubscriberOffer,
    TrackPublished,
    TrackUnpublished,
    error,
)

log = logging.getLogger("rtcfleet.media.worker")

LOAD_INTERVAL_S = 1.0
# Errors a client's own input causes (an answer out of turn, an SDP or candidate that does not
# parse or apply): answered with media_error and noted in one log line, never a traceback, so
# a client cannot fill the node's log.
CLIENT_FAULTS = (
    SubscriberNotNegotiating,
    InvalidCandidate,
    InvalidStateError,
    InvalidAccessError,
    ValueError,
)
# messages waiting for the supervisor; past it the supervisor is behind and load reports (each
# superseded by the next) are dropped. Everything else waits: a subscriber offer or an answer
# lost here is a client without media, and all of them are caused by a command or a client's
# action, so they cannot grow without bound while the supervisor sends nothing
WORKER_OUTBOX = 4096
# items written to the pipe per hop to the writer thread
WRITE_BATCH = 256


class Worker:
    """Turns supervisor commands into SFU calls and SFU events into client messages."""

    def __init__(self, conn: Connection, config: SfuConfig, max_participants: int) -> None:
        self.conn = conn
        self.max_participants = max_participants
        self.sfu = Sfu(config, self._on_sfu_event)
        # room -> identity -> session: the SFU knows participants by identity (unique per
        # room, as a second join of one identity replaces the first)
        self.rooms: dict[str, dict[str, str]] = {}
        self._cpu_mark = (time.monotonic(), time.process_time())
        self._pending: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        # room -> joins finished since the room was last reported empty (``RoomEmpty.joins``)
        self.joins_done: dict[str, int] = {}
        self._outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.dropped = 0
        self.recordings = Recordings(
            lambda room: self.sfu.room(room).tracks() if room in self.sfu.rooms() else [],
            lambda room: list(self.rooms.get(room, {})),
            self.to_room,
            self.to_session,
        )

    # ---- output -----------------------------------------------------------------------------

    def send(self, item: dict[str, Any]) -> None:
        """Queue an item for the supervisor without blocking the packet loop; past the bound
        the supervisor is behind, and a load report is dropped and counted."""
        if self._outgoing.qsize() >= WORKER_OUTBOX and item.get("kind") == "load":
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.error("supervisor not reading: %d load reports dropped", self.dropped)
            return
        self._outgoing.put_nowait(item)

    async def _write(self) -> None:
        while True:
            items = [await self._outgoing.get()]
            while len(items) < WRITE_BATCH and not self._outgoing.empty():
                items.append(self._outgoing.get_nowait())
            try:
                # one hop to the thread for everything queued: a room's join notices come in
                # bursts of two per member, and a hop per message cost more than the write
                await asyncio.to_thread(self._send_all, items)
            except (OSError, ValueError):
                return  # the supervisor is gone; the command loop ends on the pipe's EOF

    def _send_all(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.conn.send(item)

    def to_session(self, session: str, message: Any) -> None:
        item = ToSession(session=session, message=message.model_dump(mode="json")).model_dump()
        self.send(tracing.to_pipe(item))

    def to_room(self, room: str, message: Any, *, exclude: str | None = None) -> None:
        for identity, session in self.rooms.get(room, {}).items():
            if identity != exclude:
                self.to_session(session, message)

    def identity_of(self, room: str, session: str) -> str | None:
        return next((i for i, s in self.rooms.get(room, {}).items() if s == session), None)

    def _on_sfu_event(self, room: str, identity: str, kind: str, payload: dict[str, Any]) -> None:
        if kind == "subscriber_offer":
            session = self.rooms.get(room, {}).get(identity)
            if session is not None:
                self.to_session(session, SubscriberOffer(sdp=payload["sdp"]))
        elif kind in ("track_published", "track_unpublished"):
            model = TrackPublished if kind == "track_published" else TrackUnpublished
            message = model(
                publisher=payload["publisher"], kind=payload["kind"], track_id=payload["track_id"]
            )
            self.to_room(room, message, exclude=identity)
            if kind == "track_published":
                self.recordings.track_published(room, payload)
            else:
                self.recordings.track_unpublished(room, payload)
        elif kind == "participant_left":
            self._forget(room, identity)

    def _forget(self, room: str, identity: str) -> None:
        members = self.rooms.get(room)
        if not members or identity not in members:
            return
        session = members.pop(identity)
        self.recordings.left(room, identity)
        self.to_room(room, ParticipantLeft(identity=identity))
        self.send(SessionLeft(session=session, room=room).model_dump())
        if not members:
            del self.rooms[room]
            self.recordings.room_ended(room)
            self._room_empty(room)

    def _room_empty(self, room: str) -> None:
        self.send(RoomEmpty(room=room, joins=self.joins_done.pop(room, 0)).model_dump())

    # ---- commands ---------------------------------------------------------------------------

    async def handle(self, command: AnyWorkerCommand) -> None:
        if isinstance(command, WorkerSettings):
            self.apply_settings(command)
            return
        if isinstance(command, WorkerStop):
            return
        if isinstance(command, NodeRecording):
            self.recordings.handle(command)
            return
        op, session, room = command.op, command.session, command.room
        try:
            if isinstance(command, NodeJoin):
                try:
                    await self.join(command)
                finally:
                    self.joins_done[room] = self.joins_done.get(room, 0) + 1
                    if room not in self.rooms:
                        self._room_empty(room)  # refused or failed: no room left behind
                return
            identity = self.identity_of(room, session)
            if identity is None:
                raise UnknownParticipant(session)
            if isinstance(command, NodePublishOffer):
                with tracing.child_span("negotiate publisher"):
                    answer = await self.sfu.publish_offer(room, identity, command.sdp)
                self.to_session(session, PublishAnswer(sdp=answer))
            elif isinstance(command, NodeSubscriberAnswer):
                await self.sfu.subscriber_answer(room, identity, command.sdp)
            elif isinstance(command, NodeTrickle):
                candidate = command.candidate.model_dump() if command.candidate else None
                await self.sfu.add_ice_candidate(room, identity, command.target, candidate)
            elif isinstance(command, NodeLeave):
                await self.sfu.leave(room, identity)
                self._forget(room, identity)
        except (PublishNotAllowed, SubscribeNotAllowed) as exc:
            self.to_session(session, error(ErrorCode.FORBIDDEN, str(exc) or "not granted"))
        except TooManyTracks as exc:
            self.to_session(session, error(ErrorCode.TOO_MANY_TRACKS, str(exc)))
        except CodecNotAllowed as exc:
            self.to_session(session, error(ErrorCode.MEDIA_ERROR, f"codec not allowed: {exc}"))
        except (UnknownParticipant, UnknownRoom, RoomClosed):
            self.to_session(session, error(ErrorCode.NOT_JOINED, "not in a room on this node"))
        except CLIENT_FAULTS as exc:
            # what a client sent does not apply: its answer says why, the log only notes it
            log.info("command %s refused: %s: %s", op, type(exc).__name__, exc)
            self.to_session(session, error(ErrorCode.MEDIA_ERROR, f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # a bad SDP must not take the worker down
            log.exception("command %s failed", op)
            self.to_session(session, error(ErrorCode.MEDIA_ERROR, f"{type(exc).__name__}: {exc}"))

    async def join(self, command: NodeJoin) -> None:
        room, session, identity = command.room, command.session, command.identity
        members = self.rooms.setdefault(room, {})
        if identity in members:
            # a rejoin, or the same identity joining again: the newest connection wins
            replaced = members.pop(identity)
            await self.sfu.leave(room, identity)
            if replaced != session:
                self.to_session(replaced, SessionReplaced())
                self.send(SessionLeft(session=replaced, room=room).model_dump())
        if len(members) >= self.max_participants:
            if not members:
                del self.rooms[room]
            self.to_session(session, error(ErrorCode.ROOM_FULL, "room is full"))
            return
        others = list(members)
        # known before the SFU hears of it: the SFU may offer the newcomer tracks at once
        members[identity] = session
        try:
            await self.sfu.join(
                room,
                identity,
                can_publish=command.can_publish,
                can_subscribe=command.can_subscribe,
            )
        except BaseException:
            members.pop(identity, None)
            if not members:
                self.rooms.pop(room, None)
            raise
        for other in others:
            self.to_session(session, ParticipantJoined(identity=other))
        self.to_room(room, ParticipantJoined(identity=identity), exclude=identity)
        if (recorded := self.recordings.joined(room, identity)) is not None:
            self.to_session(session, recorded)

    def apply_settings(self, command: WorkerSettings) -> None:
        self.max_participants = command.max_participants
        self.sfu.set_max_video_bitrate(command.max_video_bitrate)
        # applies to connections negotiated from now on
        self.sfu.config.allowed_codecs = tuple(command.allowed_codecs)

    def load(self) -> WorkerLoadReport:
        sfu_load = self.sfu.load()
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._cpu_mark
        self._cpu_mark = (now, cpu)
        cpu_percent = 100.0 * (cpu - cpu_then) / max(now - then, 1e-6)
        return WorkerLoadReport(
            rooms=len(self.rooms),
            participants=sum(len(m) for m in self.rooms.values()),
            forwarded_streams=sfu_load.forwarded_streams,
            bitrate_out_bps=int(sfu_load.bitrate_out_bps),
            cpu_percent=round(cpu_percent, 1),
            room_participants={room: len(m) for room, m in self.rooms.items()},
        )

    # ---- loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def readable() -> None:
            try:
                while self.conn.poll():
                    inbox.put_nowait(self.conn.recv())
            except (EOFError, OSError):
                inbox.put_nowait(None)
                loop.remove_reader(self.conn.fileno())

        loop.add_reader(self.conn.fileno(), readable)
        self.send_load()  # the supervisor's signal that this worker is up
        reporter = asyncio.create_task(self._report_load())
        writer = asyncio.create_task(self._write())
        try:
            while (raw := await inbox.get()) is not None:
                trace = tracing.from_pipe(raw)
                try:
                    command = parse_worker_command(raw)
                except ValidationError as exc:
                    log.error("malformed command from the supervisor refused: %s", exc)
                    continue
                if isinstance(command, WorkerStop):
                    break
                # commands of one session stay in order; sessions do not wait for each other
                task = asyncio.create_task(self._serialized(command, trace))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
        finally:
            reporter.cancel()
            self.recordings.close()
            await self.sfu.close()
            writer.cancel()

    async def _serialized(
        self, command: AnyWorkerCommand, trace: dict[str, str] | None = None
    ) -> None:
        key = getattr(command, "session", "")
        lock = self._locks.setdefault(key, asyncio.Lock())
        with tracing.continued(f"worker {command.op}", trace):
            async with lock:
                await self.handle(command)
        if isinstance(command, NodeLeave) and not lock.locked():
            self._locks.pop(key, None)

    async def _report_load(self) -> None:
        while True:
            await asyncio.sleep(LOAD_INTERVAL_S)
            self.send_load()

    def send_load(self) -> None:
        self.send(self.load().model_dump())


def worker_main(
    conn: Connection, config: SfuConfig, max_participants: int, bind_ip: str | None = None
) -> None:
    """Entry point of a worker process (spawned by the supervisor)."""
    if bind_ip:
        rtp_hooks.restrict_host_addresses([bind_ip])
    else:
        rtp_hooks.restrict_host_addresses_from_environment()
    logging.basicConfig(
        level=os.environ.get("RTCFLEET_LOG_LEVEL", "WARNING"),
        format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    tracing.setup_worker("rtcfleet-media-worker", multiprocessing.current_process().name)
    # the supervisor decides when a worker stops; a Ctrl-C aimed at the node must not
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(_serve(conn, config, max_participants))


async def _serve(conn: Connection, config: SfuConfig, max_participants: int) -> None:
    # built inside the loop: the SFU's peer connections belong to it
    await Worker(conn, config, max_participants).run()
