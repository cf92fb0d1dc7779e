"""Evacuation: moving every room off a media node whose machine is about to be taken away.

A Spot interruption (EC2's two-minute notice, Azure's ``Preempt`` with at least 30 s) leaves
no time for rooms to end on their own. The node first tells its region it is draining, so no
gateway places anything on it again, then moves its rooms, one room at a time: it drops its
claim on the room and sends ``reconnect`` to every session in it, so their clients rejoin and
the first rejoin places the room on another node, where the others follow its claim. A room
moves whole, never split across two nodes.

Rooms are spread over a fraction of the notice, biggest first, at no more than a rate of
participants per second, rather than all at once: every rejoin costs the target nodes two
DTLS handshakes, and placement reads load from heartbeats (one a second), so a burst would
land every room on whichever node looked emptiest in that second. A node with few
participants moves them at once; a full one finishes by ``fraction`` of the notice.

Once told to reconnect, a session hears nothing more from this node (a late ``participant_left``
from the old room would contradict the new one); it is left on its worker after
``LEAVE_AFTER_S``, which ends the old room and so the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from rtcfleet import bus
from rtcfleet.node_messages import AnyNodeCommand, NodeLeave
from rtcfleet.signaling import Reconnect

log = logging.getLogger("rtcfleet.media.evacuation")

# The share of the notice within which every room has been told to move; the rest is for
# clients that rejoin late and for the node to empty and leave.
DEFAULT_FRACTION = 0.25
# Participants told to reconnect per second, at least (a full node goes faster, to finish
# within its fraction of the notice).
DEFAULT_RATE = 20.0
# Without a deadline (the platform gave none), rooms are spread over this long.
WINDOW_WITHOUT_DEADLINE_S = 10.0
# Long enough for the reconnect to be read by the session's gateway; the client closes its
# old connections on reading it anyway.
LEAVE_AFTER_S = 2.0
ANNOUNCE_ATTEMPTS = 3
REASON = "media_node_evacuated"


class EvacuatingBus(Protocol):
    """What an evacuation needs of the node's bus (``media_node.node_bus.NodeBus``)."""

    node_id: str
    # session -> room, for every session the node hosts
    sessions: dict[str, str]
    # held while the node renews its room claims
    claims: asyncio.Lock

    @property
    def redis(self) -> aioredis.Redis: ...

    def to_session(self, session: str, message: dict[str, Any]) -> None: ...

    async def handle_command(self, command: AnyNodeCommand) -> None: ...


def schedule(
    rooms: dict[str, int], seconds_left: float | None, fraction: float, rate: float
) -> list[tuple[float, str]]:
    """(offset in seconds from the start, room) for every room: biggest rooms first, paced at
    ``max(rate, participants / window)`` participants a second, the window being ``fraction``
    of the time left."""
    window = WINDOW_WITHOUT_DEADLINE_S if seconds_left is None else seconds_left * fraction
    total = sum(max(n, 1) for n in rooms.values())
    pace = max(rate, total / window) if window > 0 else float("inf")
    plan: list[tuple[float, str]] = []
    at = 0.0
    for room, participants in sorted(rooms.items(), key=lambda item: (-item[1], item[0])):
        plan.append((at, room))
        at += max(participants, 1) / pace
    return plan


class Evacuation:
    def __init__(
        self,
        node: EvacuatingBus,
        rooms: Callable[[], dict[str, int]],
        announce: Callable[[], Awaitable[None]],
        fraction: float = DEFAULT_FRACTION,
        rate: float = DEFAULT_RATE,
    ) -> None:
        """``rooms``: the node's rooms and their participants; ``announce``: a heartbeat that
        tells the region the node drains, now."""
        if not 0 < fraction <= 1 or rate <= 0:
            raise ValueError("evacuation needs 0 < fraction <= 1 and a positive rate")
        self.node = node
        self.rooms = rooms
        self.announce = announce
        self.fraction = fraction
        self.rate = rate
        # rooms whose claim this node gave up: no longer held, joins sent elsewhere
        self.moving: set[str] = set()
        # sessions told to reconnect: nothing more from this node reaches them
        self.silenced: set[str] = set()
        self.sessions_moved = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._leaves: set[asyncio.Task[None]] = set()

    # ---- what the supervisor asks -----------------------------------------------------------

    def held(self, rooms: dict[str, int]) -> dict[str, int]:
        """The rooms whose claims the node keeps (every room but those moving away)."""
        return {room: n for room, n in rooms.items() if room not in self.moving}

    def is_moving(self, room: str) -> bool:
        return room in self.moving

    def is_silenced(self, session: str) -> bool:
        return session in self.silenced

    # ---- the evacuation ---------------------------------------------------------------------

    async def run(self, deadline: float | None) -> None:
        """Move every room; ``deadline`` (epoch seconds) is when the machine goes."""
        self.started_at = time.monotonic()
        await self._announce()
        seconds_left = None if deadline is None else max(0.0, deadline - time.time())
        rooms = self.rooms()
        plan = schedule(rooms, seconds_left, self.fraction, self.rate)
        log.warning(
            "evacuating %d rooms (%d participants) with %s s of notice",
            len(plan),
            sum(rooms.values()),
            "no" if seconds_left is None else f"{seconds_left:.0f}",
        )
        for offset, room in plan:
            delay = self.started_at + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.move(room)
        self.finished_at = time.monotonic()
        log.warning(
            "every room told to move %.1f s after the notice (%d sessions)",
            self.finished_at - self.started_at,
            self.sessions_moved,
        )

    async def _announce(self) -> None:
        """A heartbeat now, saying draining: placement must skip this node before any room's
        claim is dropped, or a rejoin would come straight back."""
        for attempt in range(ANNOUNCE_ATTEMPTS):
            try:
                await self.announce()
                return
            except (ConnectionError, RuntimeError) as exc:  # no gateway, or a refusal
                log.warning("draining heartbeat failed (attempt %d): %s", attempt + 1, exc)
                await asyncio.sleep(0.2)

    async def move(self, room: str) -> None:
        """Give up the room's claim and tell its sessions to reconnect."""
        if room in self.moving:
            return
        async with self.node.claims:
            self.moving.add(room)
            with contextlib.suppress(RedisError, OSError):
                await bus.release_room(self.node.redis, room, self.node.node_id)
        sessions = [s for s, r in self.node.sessions.items() if r == room]
        message = Reconnect(reason=REASON).model_dump(mode="json")
        for session in sessions:
            # queued before the session is silenced: the last word the node sends it
            self.node.to_session(session, message)
            self.silenced.add(session)
        self.sessions_moved += len(sessions)
        task = asyncio.create_task(self._leave_later(room, sessions))
        self._leaves.add(task)
        task.add_done_callback(self._leaves.discard)

    async def _leave_later(self, room: str, sessions: list[str]) -> None:
        await asyncio.sleep(LEAVE_AFTER_S)
        for session in sessions:
            if self.node.sessions.get(session) == room:
                await self.node.handle_command(NodeLeave(session=session, room=room))
