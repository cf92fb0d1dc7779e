"""The media node's side of the region's Redis bus: gateways' commands in, clients' messages out.

Commands arrive on the node's inbox stream and go to the worker that hosts their room (a new
room is claimed first, and refused while the node drains). Workers' messages leave through one
bounded outbox, so each session's messages reach its stream in the order they were made and a
stalled Redis cannot grow the node's memory. A session whose message does not fit is never left
with a hole in what it hears: it hears nothing more of its old state, then ``reconnect``, and
its client starts its media again. Sessions whose clients are gone for good are swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from media_node.evacuation import Evacuation
from media_node.worker_pool import WorkerPool
from rtcfleet import bus, tracing
from rtcfleet.node_messages import (
    AnyNodeCommand,
    NodeJoin,
    NodeLeave,
    NodeProbe,
    NodeRecording,
    RecordingAnswer,
    parse_node_command,
)
from rtcfleet.signaling import ErrorCode, Reconnect, error

log = logging.getLogger("rtcfleet.media")

INBOX_BLOCK_MS = 1000
SESSION_SWEEP_INTERVAL_S = 2.0
# longer than a gateway's keepalive, which writes again a session record Redis lost
SESSION_MISSING_GRACE_S = 12.0
# messages waiting for Redis on their way to sessions. At the bound, a message for a client
# session is not sent, nor is anything after it for that session but one ``reconnect``
# (``RESYNC_REASON``), queued as soon as there is room: the client renegotiates from scratch
# (``rejoin``) instead of waiting for an answer or an offer that will never come. A probe's or
# an admin request's answer is dropped (its asker times out); a room's release is owed, like a
# reconnect, and goes as soon as there is room
OUTBOX_LIMIT = 4096
RESYNC_REASON = "node_messages_dropped"


class NodeBus:
    """Implements ``worker_pool.PoolListener``: what workers say goes out through the outbox."""

    def __init__(
        self,
        node_id: str,
        draining: Callable[[], bool],
        stopped: asyncio.Event,
        outbox_limit: int = OUTBOX_LIMIT,
    ) -> None:
        """``draining``: whether the node refuses new rooms now; ``stopped``: ends the loops."""
        self.node_id = node_id
        self.draining = draining
        self.stopped = stopped
        self.outbox_limit = outbox_limit
        self._pool: WorkerPool | None = None
        self._redis: aioredis.Redis | None = None
        # session -> room, for the sweep of sessions whose clients are gone
        self.sessions: dict[str, str] = {}
        self._missing_since: dict[str, float] = {}
        # (session or None for a room release, message, trace context it answers)
        self.outbox: asyncio.Queue[tuple[str | None, dict[str, Any], dict[str, str]]] = (
            asyncio.Queue(maxsize=outbox_limit)
        )
        # messages not sent at the outbox's bound (or after it, to a session owed a reconnect)
        self.outbox_dropped = 0
        # sessions a message did not fit for: owed a ``reconnect`` as soon as the outbox has
        # room, then told (silent until their client's rejoin comes back as a join); both are
        # sessions this node hosts, so they are bounded as ``sessions`` is
        self.resync_owed: set[str] = set()
        self.resync_told: set[str] = set()
        # rooms emptied whose release did not fit: released as soon as the outbox has room
        self.release_owed: set[str] = set()
        # set when the node can evacuate: its moving rooms and silenced sessions
        self.evacuation: Evacuation | None = None
        # held while the node's claims are renewed or given up, so a renewal already on its
        # way cannot claim again a room the evacuation has just let go
        self.claims = asyncio.Lock()

    def attach(self, pool: WorkerPool, redis: aioredis.Redis) -> None:
        self._pool, self._redis = pool, redis

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "node bus not attached"
        return self._redis

    @property
    def pool(self) -> WorkerPool:
        assert self._pool is not None, "node bus not attached"
        return self._pool

    # ---- from workers (PoolListener) ----

    def to_session(self, session: str, message: dict[str, Any]) -> None:
        if self.evacuation is not None and self.evacuation.is_silenced(session):
            return  # told to reconnect: nothing of the old room may follow
        self._queue(session, message)

    def session_left(self, session: str) -> None:
        self.sessions.pop(session, None)
        self.resync_owed.discard(session)
        self.resync_told.discard(session)

    def room_empty(self, room: str) -> None:
        self._queue(None, {"release": room})

    def rooms_lost(self, rooms: set[str]) -> None:
        """A worker died with these rooms: their clients place their media again."""
        reconnect = Reconnect(reason="media_worker_lost").model_dump(mode="json")
        for session, room in list(self.sessions.items()):
            if room in rooms:
                self._queue(session, reconnect)
                del self.sessions[session]

    def _queue(self, session: str | None, message: dict[str, Any]) -> None:
        """Queue for the outbox loop; a full outbox means Redis stalls, and memory must not grow.
        The message goes on in the trace current now (a command's, or a worker's answer's)."""
        if session is not None and (session in self.resync_owed or session in self.resync_told):
            self.outbox_dropped += 1  # its client starts afresh: this belongs to what it drops
            return
        try:
            self.outbox.put_nowait((session, message, tracing.carrier()))
            return
        except asyncio.QueueFull:
            self.outbox_dropped += 1
        if session is None:
            self.release_owed.add(message["release"])
        elif session in self.sessions or message.get("type") == "reconnect":
            self.resync_owed.add(session)
            log.warning("outbox full: session %s will be told to reconnect", session)
        elif self.outbox_dropped % 1000 == 1:
            log.warning("outbox full: %d messages dropped so far", self.outbox_dropped)

    def _settle_owed(self) -> None:
        """What the outbox owes, queued as room frees: after everything queued before it."""
        while self.release_owed and not self.outbox.full():
            self.outbox.put_nowait((None, {"release": self.release_owed.pop()}, {}))
        while self.resync_owed and not self.outbox.full():
            session = self.resync_owed.pop()
            reconnect = Reconnect(reason=RESYNC_REASON).model_dump(mode="json")
            self.outbox.put_nowait((session, reconnect, {}))
            if session in self.sessions:
                self.resync_told.add(session)

    # ---- to Redis ----

    async def outbox_loop(self) -> None:
        """One writer, so each session's messages reach its stream in the order they were made."""
        while True:
            session, message, trace = await self.outbox.get()
            self._settle_owed()
            if session is None:
                await self.release_empty(message["release"])
            else:
                await self._deliver(session, message, trace)

    async def _deliver(
        self, session: str, message: dict[str, Any], trace: dict[str, str] | None = None
    ) -> None:
        try:
            await bus.send_to_session(self.redis, session, message, trace)
        except (RedisError, OSError) as exc:
            log.warning("could not deliver to session %s: %s", session, exc)

    async def release_room(self, room: str) -> None:
        """Drop our claim on an empty room so its next join is placed afresh."""
        with contextlib.suppress(RedisError, OSError):
            await bus.release_room(self.redis, room, self.node_id)

    async def release_empty(self, room: str) -> None:
        """A worker's room emptied: give up its claim, unless a join for it came in since (the
        room lives here again, and a released claim would send the next join to another node
        and split the room)."""
        async with self.claims:
            if room in self.pool.room_worker:
                return
            await self.release_room(room)

    async def hold_rooms(self) -> None:
        """Keep this node's room claims, re-asserting any that Redis lost."""
        try:
            async with self.claims:
                rooms = self.pool.room_participants()
                if self.evacuation is not None:
                    rooms = self.evacuation.held(rooms)
                taken = await bus.hold_rooms(self.redis, self.node_id, rooms)
        except (RedisError, OSError) as exc:
            log.warning("could not renew room claims: %s", exc)
            return
        for room in taken:
            log.warning("room %s is claimed by another node while hosted here", room)

    # ---- commands from gateways ----

    async def handle_command(self, command: AnyNodeCommand) -> None:
        if isinstance(command, NodeProbe):
            # a gateway's region-health probe: this node's bus, loop and workers answer
            self._queue(command.probe, self.probe_answer())
            return
        if isinstance(command, NodeRecording):
            handle = self.pool.room_worker.get(command.room)
            if handle is None or not handle.submit(command.model_dump(mode="json")):
                refused = RecordingAnswer(ok=False, room=command.room, error="room_not_found")
                self._queue(command.reply, refused.model_dump(mode="json"))
            return
        room, session = command.room, command.session
        tracing.set_attributes(room=room, session=session)
        pool = self.pool
        if isinstance(command, NodeJoin):
            if self.evacuation is not None and self.evacuation.is_moving(room):
                self._queue(session, Reconnect(reason="room_moved").model_dump(mode="json"))
                return
            if room not in pool.room_worker:
                # claim the room before hosting it: a claim released while this join was on
                # its way may already name another node, and then the room lives there; under
                # the claims lock, so an emptied room's release cannot land after this claim
                async with self.claims:
                    holder = await bus.claim_for(self.redis, room, self.node_id)
                if holder != self.node_id:
                    log.warning("room %s is held by %s: join sent there", room, holder)
                    moved = Reconnect(reason="room_moved").model_dump(mode="json")
                    self._queue(session, moved)
                    return
            if self.draining() and room not in pool.room_worker:
                await self.release_room(room)
                refusal = error(ErrorCode.NO_MEDIA_NODE, "media node is draining; retry")
                self._queue(session, refusal.model_dump(mode="json"))
                return
            self.sessions[session] = room
            # a session told to reconnect is back (its rejoin): it hears its new state
            self.resync_owed.discard(session)
            self.resync_told.discard(session)
            handle = pool.worker_for(room)
        elif (found := pool.room_worker.get(room)) is not None:
            handle = found
        else:
            # Only a join places a room on a worker. A late command for a room that emptied (a
            # replaced session resumed, a sweep's leave) would otherwise put it back in the map
            # with no join to follow and nothing to report it empty: the node would claim it
            # for ever and a drain would wait for it until its bound.
            if not isinstance(command, NodeLeave):
                gone = error(ErrorCode.NOT_JOINED, f"{command.op}: not in a room on this node")
                self._queue(session, gone.model_dump(mode="json"))
            return
        tracing.set_attributes(worker=handle.index)
        if not handle.submit(tracing.to_pipe(command.model_dump(mode="json"))):
            if isinstance(command, NodeJoin):
                self.sessions.pop(session, None)
                pool.forget_unjoined(room, handle)
            busy = error(ErrorCode.MEDIA_ERROR, "media node busy: command dropped, retry")
            self._queue(session, busy.model_dump(mode="json"))

    def probe_answer(self) -> dict[str, Any]:
        return {
            "type": "probe",
            "node_id": self.node_id,
            "workers_ready": 0 if self.draining() else self.pool.ready_count(),
        }

    async def inbox_loop(self) -> None:
        stream, cursor = bus.node_inbox(self.node_id), "$"
        while not self.stopped.is_set():
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
                        command = parse_node_command(fields.get("m", ""))
                        with tracing.continued(f"node {command.op}", fields):
                            await self.handle_command(command)
                    except ValidationError as exc:
                        log.warning("malformed command %s refused: %s", entry_id, exc)
                    except (RedisError, OSError) as exc:
                        log.warning("command %s failed: %s", entry_id, exc)
            if result:
                # taken: the inbox keeps only what the node has not read yet
                try:
                    await bus.drop_taken(self.redis, stream, cursor)
                except (RedisError, OSError) as exc:
                    log.warning("inbox not trimmed: %s", exc)

    async def sweep_loop(self) -> None:
        """Leave sessions whose clients are gone for good (their session record expired)."""
        while not self.stopped.is_set():
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
