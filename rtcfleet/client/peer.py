"""The client side of the SFU protocol for bots and tests: a publisher connection sending
synthetic audio and video, and a subscriber connection answering the SFU's offers and counting,
per remote publisher, what it decoded. Transport-agnostic: SDP strings go in and out."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import SessionDescription
from av import VideoFrame

from media_node import rtp_hooks
from rtcfleet.client.synthetic import (
    SyntheticAudioTrack,
    SyntheticVideoTrack,
    read_sequence_number,
)

# a frame number counts once another read number lies at most this many frames from it
NUMBER_CONFIRM_WINDOW = 64
# a wait between two decoded frames worth listing: a visible stutter at any frame rate
NOTABLE_GAP_S = 0.5
# how often a receiver asks again for packets still missing: a few round trips of a lossy path
NACK_REPEAT_INTERVAL = 0.1
# the longest a client waits for one peer connection to close
PEER_CLOSE_TIMEOUT_S = 5.0


class NoSubscriberOffer(RuntimeError):
    """An answer was requested before the SFU sent a subscriber offer."""


@dataclass
class RemoteTrackStats:
    """What this client decoded from one remote publisher's track of one kind."""

    publisher: str
    kind: str
    track_id: str
    frames_decoded: int = 0
    unreadable_frames: int = 0
    sequence_numbers: set[int] = field(default_factory=set)
    width: int | None = None
    height: int | None = None
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    # the longest wait between two decoded frames: a freeze, as a viewer sees it
    longest_gap_s: float = 0.0
    # every wait longer than NOTABLE_GAP_S, in order
    notable_gaps_s: list[float] = field(default_factory=list)
    _last_counted: int | None = field(default=None, repr=False)
    _last_read: int | None = field(default=None, repr=False)

    def add_number(self, number: int) -> None:
        """Count a frame number read from a decoded picture once a neighbour confirms it.

        A decoder that lost a reference frame paints garbage where the number is, and one
        garbled picture in 16 passes the 4-bit checksum as a random number: counted as is, a
        single one far from the others made the expected frame count meaningless. A number
        counts when it follows the last counted number closely, or when the number read just
        before it (kept until then) is close behind it."""
        last_read, self._last_read = self._last_read, number
        window = range(1, NUMBER_CONFIRM_WINDOW + 1)
        if self._last_counted is not None and number - self._last_counted in window:
            self.sequence_numbers.add(number)
        elif last_read is not None and number - last_read in window:
            self.sequence_numbers.update((last_read, number))
        else:
            return
        self._last_counted = max(number, self._last_counted or 0)

    def received_between(self, first: int, last: int) -> int:
        """How many of the sender's frames numbered first..last (inclusive) were decoded."""
        return sum(1 for n in self.sequence_numbers if first <= n <= last)


@dataclass
class _MidInfo:
    publisher: str
    track_id: str
    active: bool


class ClientPeer:
    def __init__(
        self,
        name: str,
        *,
        video: bool = True,
        audio: bool = True,
        width: int = 640,
        height: int = 360,
        fps: int = 30,
        noise_rows: int = 0,
        ice_servers: Sequence[RTCIceServer] = (),
        relay_only: bool = False,
    ) -> None:
        self.name = name
        self.video_track = SyntheticVideoTrack(width, height, fps, noise_rows) if video else None
        self.audio_track = SyntheticAudioTrack() if audio else None
        # max-bundle: with aiortc's default "balanced" policy, two new m-lines of one kind in a
        # single re-offer leave the second on a transport that BUNDLE then discards.
        # no ICE servers unless given: aiortc would otherwise ask a public STUN server
        config = RTCConfiguration(
            iceServers=list(ice_servers),
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            iceTransportPolicy=(
                RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
            ),
        )
        self.publisher_pc = RTCPeerConnection(config)
        self.subscriber_pc = RTCPeerConnection(config)
        self.remote: dict[tuple[str, str], RemoteTrackStats] = {}
        self.subscriber_offers = 0
        self._mids: dict[str, _MidInfo] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._nack_task: asyncio.Task[None] | None = None
        self._created = time.monotonic()
        self.subscriber_pc.on("track", self._on_track)

    @property
    def video_sender(self) -> RTCRtpSender | None:
        return self._sender("video")

    @property
    def audio_sender(self) -> RTCRtpSender | None:
        return self._sender("audio")

    async def create_publish_offer(self) -> str:
        """The publisher connection's offer (adds the synthetic tracks the first time)."""
        if not self.publisher_pc.getTransceivers():
            for track in (self.audio_track, self.video_track):
                if track is not None:
                    self.publisher_pc.addTransceiver(track, direction="sendonly")
        await self.publisher_pc.setLocalDescription(await self.publisher_pc.createOffer())
        return str(self.publisher_pc.localDescription.sdp)

    async def apply_publish_answer(self, sdp: str) -> None:
        await self.publisher_pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def answer_subscriber_offer(self, sdp: str) -> str:
        """Apply the SFU's (re-)offer and return the answer."""
        self.subscriber_offers += 1
        for media in SessionDescription.parse(sdp).media:
            parts = (media.msid or "").split()
            if media.rtp.muxId is None or len(parts) < 2:
                continue
            self._mids[media.rtp.muxId] = _MidInfo(
                publisher=parts[0],
                track_id=parts[1],
                active=media.direction in ("sendonly", "sendrecv"),
            )
        await self.subscriber_pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        rtp_hooks.route_rtx_by_ssrc(self.subscriber_pc)
        if self._nack_task is None:
            self._nack_task = asyncio.ensure_future(self._repeat_nacks())
        await self.subscriber_pc.setLocalDescription(await self.subscriber_pc.createAnswer())
        return str(self.subscriber_pc.localDescription.sdp)

    def received(self, publisher: str, kind: str) -> RemoteTrackStats | None:
        return self.remote.get((publisher, kind))

    def active_publishers(self) -> set[str]:
        """Publishers whose tracks the latest subscriber offer carries."""
        return {info.publisher for info in self._mids.values() if info.active}

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait until both connections that have a remote description are connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [
                pc.connectionState
                for pc in (self.publisher_pc, self.subscriber_pc)
                if pc.remoteDescription is not None
            ]
            if all(state == "connected" for state in states):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name}: connections not connected within {timeout}s")

    async def _repeat_nacks(self) -> None:
        """Ask again for lost video packets until they arrive (aiortc asks once per gap)."""
        missing: dict[int, set[int]] = {}
        while True:
            await asyncio.sleep(NACK_REPEAT_INTERVAL)
            for index, transceiver in enumerate(self.subscriber_pc.getTransceivers()):
                if transceiver.kind == "video":
                    missing[index] = await rtp_hooks.repeat_nacks(
                        transceiver.receiver, missing.get(index, set())
                    )

    async def close(self) -> None:
        if self._nack_task is not None:
            self._nack_task.cancel()
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for pc in (self.publisher_pc, self.subscriber_pc):
            # aiortc's close, once cancelled half-way, leaves every later close of that
            # connection waiting forever: it is shielded from the caller's cancellation, and a
            # close already stuck is given up after a bound
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PEER_CLOSE_TIMEOUT_S):
                    await asyncio.shield(pc.close())

    def _sender(self, kind: str) -> RTCRtpSender | None:
        for transceiver in self.publisher_pc.getTransceivers():
            if transceiver.kind == kind:
                return transceiver.sender
        return None

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next(
            (t.mid for t in self.subscriber_pc.getTransceivers() if t.receiver.track is track),
            None,
        )
        self._readers.append(asyncio.ensure_future(self._read(track, mid)))

    async def _read(self, track: MediaStreamTrack, mid: str | None) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            info = self._mids.get(mid) if mid is not None else None
            if info is None or not info.active:
                continue
            stats = self._stats_for(info, track.kind)
            now = time.monotonic()
            stats.frames_decoded += 1
            if stats.last_frame_at is not None:
                gap = now - stats.last_frame_at
                stats.longest_gap_s = max(stats.longest_gap_s, gap)
                if gap > NOTABLE_GAP_S:
                    stats.notable_gaps_s.append(round(gap, 3))
            stats.last_frame_at = now
            if stats.first_frame_at is None:
                stats.first_frame_at = now
            if isinstance(frame, VideoFrame):
                stats.width, stats.height = frame.width, frame.height
                number = read_sequence_number(frame)
                if number is None:
                    stats.unreadable_frames += 1
                else:
                    stats.add_number(number)

    def _stats_for(self, info: _MidInfo, kind: str) -> RemoteTrackStats:
        key = (info.publisher, kind)
        stats = self.remote.get(key)
        if stats is None or stats.track_id != info.track_id:
            stats = self.remote[key] = RemoteTrackStats(info.publisher, kind, info.track_id)
        return stats

    def describe(self) -> dict[str, Any]:
        return {
            f"{publisher}/{kind}": {
                "frames": s.frames_decoded,
                "numbers": len(s.sequence_numbers),
                "size": (s.width, s.height),
            }
            for (publisher, kind), s in self.remote.items()
        }
