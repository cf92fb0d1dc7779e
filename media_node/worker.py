"""A forwarding worker: one process, one core, an in-process SFU hosting some of the node's rooms.

A Python process uses at most one core, so a node runs one worker per core and places each
room on one worker. The worker speaks to its supervisor over a pipe only: no Redis, no Postgres,
no HTTP in the process that moves packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
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
from rtcfleet import c_heap, memory_census, tracing
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
# how often a worker gives the kernel back the C heap's free pages (``rtcfleet.c_heap``): its
# connections' native memory otherwise stays with the allocator and the resident size climbs
C_HEAP_TRIM_EVERY_S = 30.0
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
# messages waiting for the supervisor; past it the supervisor is behind: load reports (each
# superseded by the next) are dropped, and the worker reads no more commands until it is below
# again (the pipe fills, then the supervisor's queue, which refuses with "media node busy").
# Everything else waits: a subscriber offer or an answer lost here is a client without media,
# and past the bound only the commands already taken add to them
WORKER_OUTBOX = 4096
# items written to the pipe per hop to the writer thread
WRITE_BATCH = 256
# commands read from the pipe and not yet started, and commands started and not yet finished:
# at either bound the worker stops reading its pipe, so the pipe fills, then the supervisor's
# queue for this worker (``worker_pool.WORKER_COMMAND_QUEUE``), which refuses what comes next
# with an error to its session: a worker that falls behind slows its callers, never drops
WORKER_INBOX = 64
WORKER_IN_FLIGHT = 256


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class KeyedLocks:
    """A lock per key, kept only while a command holds it or waits for it: sessions and
    participants come and go by the thousand, and a lock left behind would be kept for ever."""

    def __init__(self) -> None:
        self._locks: dict[str, _KeyLock] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0 and self._locks.get(key) is entry:
                del self._locks[key]


def participant_key(room: str, identity: str) -> str:
    return f"{room}/{identity}"  # "/" is in neither name


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
        self._inbox: asyncio.Queue[dict[str, Any] | None] | None = None
        # the most commands held at once since the last load report
        self._waiting_peak = 0
        # a session's commands run in order; a participant's (room and identity: what the SFU
        # knows) one at a time, whatever session sends them, so a new session's join never
        # interleaves with the leave of the session it replaces
        self._sessions = KeyedLocks()
        self._participants = KeyedLocks()
        # room -> joins finished since the room was last reported empty (``RoomEmpty.joins``)
        self.joins_done: dict[str, int] = {}
        self._outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.dropped = 0
        # set by ``run``: read the pipe again once neither the inbox nor the outbox is full
        self._resume_reading: Callable[[], None] | None = None
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
            if self._resume_reading is not None:
                self._resume_reading()

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
                async with self._participants.hold(participant_key(room, command.identity)):
                    try:
                        await self.join(command)
                    finally:
                        self.joins_done[room] = self.joins_done.get(room, 0) + 1
                        if room not in self.rooms:
                            self._room_empty(room)  # refused or failed: no room left behind
                return
            identity = self.identity_of(room, session)
            if identity is None:
                if isinstance(command, NodeLeave):
                    return  # gone already (replaced, swept): what a leave asks
                raise UnknownParticipant(session)
            async with self._participants.hold(participant_key(room, identity)):
                await self._participant_command(command, identity)
        except (PublishNotAllowed, SubscribeNotAllowed) as exc:
            self.to_session(session, error(ErrorCode.FORBIDDEN, str(exc) or "not granted"))
        except TooManyTracks as exc:
            self.to_session(session, error(ErrorCode.TOO_MANY_TRACKS, str(exc)))
        except CodecNotAllowed as exc:
            self.to_session(session, error(ErrorCode.MEDIA_ERROR, f"codec not allowed: {exc}"))
        except (UnknownParticipant, UnknownRoom, RoomClosed):
            self.to_session(
                session, error(ErrorCode.NOT_JOINED, f"{op}: not in a room on this node")
            )
        except CLIENT_FAULTS as exc:
            # what a client sent does not apply: its answer says why, the log only notes it
            log.info("command %s refused: %s: %s", op, type(exc).__name__, exc)
            refusal = f"{op}: {type(exc).__name__}: {exc}"
            self.to_session(session, error(ErrorCode.MEDIA_ERROR, refusal))
        except Exception as exc:  # a bad SDP must not take the worker down
            log.exception("command %s failed", op)
            refusal = f"{op}: {type(exc).__name__}: {exc}"
            self.to_session(session, error(ErrorCode.MEDIA_ERROR, refusal))

    async def _participant_command(
        self,
        command: NodePublishOffer | NodeSubscriberAnswer | NodeTrickle | NodeLeave,
        identity: str,
    ) -> None:
        session, room = command.session, command.room
        if self.rooms.get(room, {}).get(identity) != session:
            # a join of the identity replaced this session while the command waited
            if isinstance(command, NodeLeave):
                return
            raise UnknownParticipant(session)
        if isinstance(command, NodePublishOffer):
            with tracing.child_span("negotiate publisher"):
                answer = await self.sfu.publish_offer(room, identity, command.sdp)
            self.to_session(session, PublishAnswer(sdp=answer))
        elif isinstance(command, NodeSubscriberAnswer):
            try:
                await self.sfu.subscriber_answer(room, identity, command.sdp)
            except SubscriberNotNegotiating as exc:
                # an answer to an offer a newer one or a closed connection superseded:
                # renegotiation's normal course, nothing for the client to handle
                log.debug("stale subscriber answer ignored: %s", exc)
        elif isinstance(command, NodeTrickle):
            candidate = command.candidate.model_dump() if command.candidate else None
            await self.sfu.add_ice_candidate(room, identity, command.target, candidate)
        else:
            try:
                await self.sfu.leave(room, identity)
            finally:
                # whatever the SFU says, the session is gone: nothing of it stays here
                self._forget(room, identity)

    async def join(self, command: NodeJoin) -> None:
        room, session, identity = command.room, command.session, command.identity
        replaced = self.rooms.get(room, {}).pop(identity, None)
        if replaced is not None:
            # a rejoin, or the same identity joining again: the newest connection wins
            if replaced != session:
                self.to_session(replaced, SessionReplaced())
                self.send(SessionLeft(session=replaced, room=room).model_dump())
            with contextlib.suppress(UnknownRoom, UnknownParticipant):
                await self.sfu.leave(room, identity)
        # read after the leave: the last other member may have left meanwhile and the room's
        # map gone with it (a map kept from before would be an orphan no command finds)
        members = self.rooms.setdefault(room, {})
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
        """The load since the last report (``commands_waiting``: the most held at once)."""
        sfu_load = self.sfu.load()
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._cpu_mark
        self._cpu_mark = (now, cpu)
        cpu_percent = 100.0 * (cpu - cpu_then) / max(now - then, 1e-6)
        report = WorkerLoadReport(
            rooms=len(self.rooms),
            participants=sum(len(m) for m in self.rooms.values()),
            forwarded_streams=sfu_load.forwarded_streams,
            bitrate_out_bps=int(sfu_load.bitrate_out_bps),
            cpu_percent=round(cpu_percent, 1),
            room_participants={room: len(m) for room, m in self.rooms.items()},
            commands_waiting=max(self._waiting_peak, self.commands_waiting()),
        )
        self._waiting_peak = 0
        return report

    # ---- loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        fd = self.conn.fileno()
        # None: the pipe closed
        inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=WORKER_INBOX)
        self._inbox = inbox
        slots = asyncio.Semaphore(WORKER_IN_FLIGHT)
        reading, ended = True, False

        def readable() -> None:
            nonlocal reading, ended
            try:
                while not inbox.full() and not self.behind() and self.conn.poll():
                    inbox.put_nowait(self.conn.recv())
            except (EOFError, OSError):
                inbox.put_nowait(None)  # room for it: only a queue with room is read
                loop.remove_reader(fd)
                reading, ended = False, True
                return
            self._waiting_peak = max(self._waiting_peak, self.commands_waiting())
            if inbox.full() or self.behind():
                loop.remove_reader(fd)  # the pipe fills, and the supervisor's queue behind it
                reading = False

        def resume_reading() -> None:
            nonlocal reading
            if not reading and not ended and not inbox.full() and not self.behind():
                loop.add_reader(fd, readable)
                reading = True

        self._resume_reading = resume_reading

        loop.add_reader(fd, readable)
        self.send_load()  # the supervisor's signal that this worker is up
        writer = asyncio.create_task(self._write())
        background = [
            asyncio.create_task(self._report_load()),
            asyncio.create_task(c_heap.trim_every(C_HEAP_TRIM_EVERY_S)),
        ]
        if (every := memory_census.interval()) is not None:
            census = memory_census.Census(f"worker-{os.getpid()}", self.census)
            background.append(asyncio.create_task(census.run(every)))
        try:
            while True:
                await slots.acquire()
                raw = await inbox.get()
                if raw is None:
                    break
                resume_reading()
                trace = tracing.from_pipe(raw)
                try:
                    command = parse_worker_command(raw)
                except ValidationError as exc:
                    slots.release()
                    log.error("malformed command from the supervisor refused: %s", exc)
                    continue
                if isinstance(command, WorkerStop):
                    break
                # commands of one session stay in order; sessions do not wait for each other
                task = asyncio.create_task(self._serialized(command, trace))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                task.add_done_callback(lambda _: slots.release())
        finally:
            for task in background:
                task.cancel()
            self.recordings.close()
            await self.sfu.close()
            writer.cancel()

    def behind(self) -> bool:
        """The supervisor has not taken ``WORKER_OUTBOX`` messages: take no more commands."""
        return self._outgoing.qsize() >= WORKER_OUTBOX

    def commands_waiting(self) -> int:
        """Commands read from the pipe, not finished: WORKER_INBOX + WORKER_IN_FLIGHT at most."""
        return len(self._pending) + (self._inbox.qsize() if self._inbox is not None else 0)

    def census(self) -> dict[str, int]:
        """The sizes of what the worker keeps per session and room (``memory_census``)."""
        return {
            "rooms": len(self.rooms),
            "members": sum(len(m) for m in self.rooms.values()),
            "session_locks": len(self._sessions),
            "participant_locks": len(self._participants),
            "commands_in_flight": len(self._pending),
            "inbox": self._inbox.qsize() if self._inbox is not None else 0,
            "outbox": self._outgoing.qsize(),
            "joins_done": len(self.joins_done),
            "sfu_rooms": len(self.sfu.rooms()),
            "sfu_participants": self.sfu.load().participants,
            "recorded_rooms": len(self.recordings.rooms),
        }

    async def _serialized(
        self, command: AnyWorkerCommand, trace: dict[str, str] | None = None
    ) -> None:
        with tracing.continued(f"worker {command.op}", trace):
            async with self._sessions.hold(getattr(command, "session", "")):
                await self.handle(command)

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
