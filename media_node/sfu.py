"""The in-process SFU facade the node supervisor and the gateway drive.

Each participant has two peer connections, as in LiveKit: a publisher connection (the client
offers, the SFU answers) carrying its own tracks up, and a subscriber connection (the SFU offers,
the client answers) carrying everyone else's tracks down. The SFU forwards RTP packets without
decoding or re-encoding them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from media_node.codec_policy import CodecNotAllowed
from media_node.ice import IcePolicy, PortRangeError
from media_node.load import SfuLoad, TrafficMeter
from media_node.publisher import PublishNotAllowed, TooManyTracks
from media_node.room import Room, RoomClosed, SubscribeNotAllowed, UnknownParticipant
from media_node.udp_mux import UdpMuxes

__all__ = [
    "CodecNotAllowed",
    "InvalidBitrate",
    "PortRangeError",
    "PublishNotAllowed",
    "RoomClosed",
    "Sfu",
    "SfuClosed",
    "SfuConfig",
    "SfuEventHandler",
    "SfuLoad",
    "SubscribeNotAllowed",
    "TooManyTracks",
    "UnknownParticipant",
    "UnknownRoom",
]

SfuEventHandler = Callable[[str, str, str, dict[str, Any]], None]
"""Called as (room, participant, kind, payload). Kinds: "subscriber_offer" {"sdp"} for that
participant; "track_published" / "track_unpublished" {"publisher", "kind", "track_id"} and
"participant_left" {} about that participant."""


class UnknownRoom(LookupError):
    """No such room on this SFU."""


class SfuClosed(RuntimeError):
    """The SFU was closed."""


class InvalidBitrate(ValueError):
    """A bitrate setting is not a positive number of bits per second."""


@dataclass
class SfuConfig:
    public_ip: str | None = None
    port_min: int = 49152
    port_max: int = 65535
    max_video_bitrate: int = 2_500_000
    allowed_codecs: tuple[str, ...] = ("VP8", "opus")
    # see IcePolicy.local_candidates
    local_candidates: bool = False
    # every connection of the SFU on one UDP port per local address (media_node.udp_mux)
    shared_udp_port: bool = False


class Sfu:
    def __init__(self, config: SfuConfig, on_event: SfuEventHandler) -> None:
        if config.max_video_bitrate <= 0:
            raise InvalidBitrate(f"max_video_bitrate {config.max_video_bitrate}")
        self.config = config
        self._muxes = UdpMuxes() if config.shared_udp_port else None
        self._ice = IcePolicy(
            config.port_min,
            config.port_max,
            config.public_ip,
            config.local_candidates,
            self._muxes,
        )
        self._on_event = on_event
        self._rooms: dict[str, Room] = {}
        self._meter = TrafficMeter()
        self._closed = False
        self._tasks: set[asyncio.Future[None]] = set()

    async def join(
        self, room: str, participant: str, *, can_publish: bool, can_subscribe: bool
    ) -> None:
        if self._closed:
            raise SfuClosed("the SFU is closed")
        target = self._rooms.get(room)
        if target is None:
            target = self._rooms[room] = Room(
                room,
                self._ice,
                allowed_codecs=lambda: self.config.allowed_codecs,
                remb_cap=lambda: self.config.max_video_bitrate,
                emit=lambda who, kind, payload: self._on_event(room, who, kind, payload),
                on_sent=self._meter.record,
            )
        await target.join(participant, can_publish=can_publish, can_subscribe=can_subscribe)

    async def publish_offer(self, room: str, participant: str, sdp: str) -> str:
        """Answer a participant's publisher offer (first one or a re-offer)."""
        return await self._room(room).publish_offer(participant, sdp)

    async def subscriber_answer(self, room: str, participant: str, sdp: str) -> None:
        await self._room(room).subscriber_answer(participant, sdp)

    async def add_ice_candidate(
        self,
        room: str,
        participant: str,
        target: Literal["publisher", "subscriber"],
        candidate: dict[str, Any] | None,
    ) -> None:
        await self._room(room).add_ice_candidate(participant, target, candidate)

    async def leave(self, room: str, participant: str) -> None:
        target = self._room(room)
        try:
            await target.leave(participant)
        finally:
            if not target.participants and self._rooms.get(room) is target:
                del self._rooms[room]
                await target.close()

    async def close_room(self, room: str) -> None:
        target = self._rooms.pop(room, None)
        if target is None:
            raise UnknownRoom(room)
        await target.close()

    def set_max_video_bitrate(self, bps: int) -> None:
        """Change the cap; existing publishers get a REMB at the new cap right away."""
        if bps <= 0:
            raise InvalidBitrate(f"max_video_bitrate {bps}")
        self.config.max_video_bitrate = bps
        for room in self._rooms.values():
            task = asyncio.ensure_future(room.apply_bitrate_cap())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def load(self) -> SfuLoad:
        return SfuLoad(
            rooms=len(self._rooms),
            participants=sum(len(r.participants) for r in self._rooms.values()),
            forwarded_streams=sum(r.forwarded_streams for r in self._rooms.values()),
            bitrate_out_bps=self._meter.bitrate_bps(),
            packets_forwarded=self._meter.packets,
        )

    @property
    def udp_muxes(self) -> UdpMuxes | None:
        """The shared UDP sockets, when ``shared_udp_port`` is on."""
        return self._muxes

    def rooms(self) -> list[str]:
        return sorted(self._rooms)

    def room(self, room: str) -> Room:
        """The room object, for inspection."""
        return self._room(room)

    async def close(self) -> None:
        self._closed = True
        for name in list(self._rooms):
            await self._rooms.pop(name).close()
        for task in list(self._tasks):
            task.cancel()
        if self._muxes is not None:
            self._muxes.close()

    def _room(self, room: str) -> Room:
        target = self._rooms.get(room)
        if target is None:
            raise UnknownRoom(room)
        return target
