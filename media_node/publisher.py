"""A participant's publisher connection: the client offers its tracks, the SFU answers and fans
each track's RTP out to subscriber streams without decoding it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import is_rtx
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription

from media_node import rtp_hooks, transport_cc, vp8
from media_node.codec_policy import CodecNotAllowed, codec_preferences
from media_node.datagram_batch import DatagramBatch
from media_node.fanout import DownTrack, fan_out
from media_node.ice import IcePolicy, accept_remote_candidate, parse_remote_sdp
from rtcfleet.signaling import MAX_MEDIA_SECTIONS

logger = logging.getLogger(__name__)

KEYFRAME_REQUEST_INTERVAL = 0.5
TRANSPORT_FEEDBACK_INTERVAL = 0.05
CAP_REMB_INTERVAL = 1.0


class PublishNotAllowed(PermissionError):
    """The participant has no grant to publish."""


class TooManyTracks(ValueError):
    """An offer would take the publisher past ``MAX_MEDIA_SECTIONS`` media sections."""


class PublishedTrack:
    """One incoming track. Its media SSRC is learnt from the first packet of the primary codec
    that carries payload, so RTX and padding probes sent before media are never mistaken for
    it; keyframe requests from all its subscribers reach the publisher at most once per
    `KEYFRAME_REQUEST_INTERVAL` while one is outstanding (a VP8 keyframe answers it)."""

    def __init__(
        self,
        track_id: str,
        publisher: str,
        kind: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.track_id = track_id
        self.publisher = publisher
        self.kind = kind
        self.media_ssrc: int | None = None
        self.primary_payload_type: int | None = None
        self.receiver: rtp_hooks.ForwardingReceiver | None = None
        self.downtracks: set[DownTrack] = set()
        self.batch = DatagramBatch()
        self.packets_in = 0
        self.keyframe_requests_sent = 0
        self._clock = clock
        self._last_keyframe_request: float | None = None
        self._keyframe_wanted = False
        self._pending: set[asyncio.Future[None]] = set()

    async def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters, rtx: bool) -> None:
        if is_rtx(codec) or codec.payloadType != self.primary_payload_type:
            return
        if (
            self._last_keyframe_request is not None
            and packet.ssrc == self.media_ssrc
            and vp8.keyframe_start(packet.payload)
        ):
            # the request was answered: the next subscriber to join may ask again at once
            self._last_keyframe_request = None
        if self.media_ssrc is None:
            if rtx or not packet.payload:
                return
            self.media_ssrc = packet.ssrc
            if self._keyframe_wanted:
                self.request_keyframe()
        if packet.ssrc != self.media_ssrc or not packet.payload:
            return
        self.packets_in += 1
        if self.downtracks:
            fan_out(packet, (self.track_id, packet.ssrc), list(self.downtracks), self.batch)

    def request_keyframe(self) -> bool:
        """Ask the publisher for a keyframe (PLI) unless one was asked for very recently."""
        if self.kind != "video":
            return False
        if self.media_ssrc is None or self.receiver is None:
            self._keyframe_wanted = True
            return False
        now = self._clock()
        if (
            self._last_keyframe_request is not None
            and now - self._last_keyframe_request < KEYFRAME_REQUEST_INTERVAL
        ):
            return False
        self._last_keyframe_request = now
        self._keyframe_wanted = False
        self.keyframe_requests_sent += 1
        task = asyncio.ensure_future(self.receiver.send_pli(self.media_ssrc))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def apply_bitrate_cap(self) -> None:
        """Send a REMB at once so a lowered cap takes effect without waiting for the estimator."""
        if self.receiver is None or self.media_ssrc is None or self.kind != "video":
            return
        estimate = self.receiver.last_estimate
        await self.receiver.send_remb(
            estimate if estimate is not None else 10**9, [self.media_ssrc]
        )


class Publisher:
    """The server side of one participant's publisher peer connection."""

    def __init__(
        self,
        participant: str,
        ice: IcePolicy,
        allowed_codecs: tuple[str, ...],
        remb_cap: Callable[[], int],
        on_closed: Callable[[Publisher], None] | None = None,
    ) -> None:
        self.participant = participant
        self.tracks: dict[str, PublishedTrack] = {}
        self._ice = ice
        self._allowed = allowed_codecs
        self._remb_cap = remb_cap
        self._on_closed = on_closed
        self._by_mid: dict[str, PublishedTrack] = {}
        self.remote_candidates = 0
        self.transport_feedback = transport_cc.TransportWideFeedback()
        self._feedback_task: asyncio.Task[None] | None = None
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pc.on("connectionstatechange", self._on_connection_state)

    async def answer(self, offer_sdp: str) -> tuple[str, list[PublishedTrack]]:
        """Apply the client's offer; returns the answer and the tracks it newly published."""
        offer = parse_remote_sdp(offer_sdp)
        transceivers = self.pc.getTransceivers()
        known = {t.mid for t in transceivers if t.mid is not None}
        added = sum(1 for m in offer.media if m.rtp.muxId not in known)
        if len(offer.media) > MAX_MEDIA_SECTIONS or len(transceivers) + added > MAX_MEDIA_SECTIONS:
            raise TooManyTracks(f"a publisher has at most {MAX_MEDIA_SECTIONS} media sections")
        new_tracks: list[tuple[Any, PublishedTrack, str]] = []
        for media in offer.media:
            if media.kind not in ("audio", "video") or media.rtp.muxId in known:
                continue
            preferences = codec_preferences(media.kind, self._allowed)
            if not preferences:
                raise CodecNotAllowed(f"no allowed {media.kind} codec in {self._allowed}")
            transceiver = self.pc.addTransceiver(media.kind, direction="recvonly")
            transceiver.setCodecPreferences(preferences)
            track_id = _msid_track(media.msid) or str(uuid.uuid4())
            track = PublishedTrack(track_id, self.participant, media.kind)
            track.receiver = rtp_hooks.make_forwarding_receiver(
                transceiver.receiver, track, self._remb_cap
            )
            new_tracks.append((transceiver, track, media.direction or "sendrecv"))
        self._ice.apply(self.pc)
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=self._ice.filter_sdp(offer_sdp), type="offer")
            )
        except Exception as exc:
            if "Failed to set remote" in str(exc):
                raise CodecNotAllowed(str(exc)) from exc
            raise
        self._accept_transport_cc(offer)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        local = SessionDescription.parse(self.pc.localDescription.sdp)
        primary = {m.rtp.muxId: m.rtp.codecs[0].payloadType for m in local.media if m.rtp.codecs}
        published = []
        for transceiver, track, direction in new_tracks:
            track.primary_payload_type = primary.get(transceiver.mid)
            if direction in ("sendonly", "sendrecv"):
                self.tracks[track.track_id] = track
                self._by_mid[transceiver.mid] = track
                published.append(track)
        return self.pc.localDescription.sdp, published

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        parsed, self.remote_candidates = accept_remote_candidate(
            self._ice, candidate, self.remote_candidates
        )
        await self.pc.addIceCandidate(parsed)

    @property
    def transport_cc(self) -> bool:
        """Whether the client offered, and the SFU answered, transport-wide feedback."""
        return self._feedback_task is not None

    def _accept_transport_cc(self, offer: SessionDescription) -> None:
        """Answer every m-line that offers transport-wide feedback with it (on each offer, as
        setRemoteDescription renegotiates the extensions) and start sending the feedback."""
        by_mid = {t.mid: t for t in self.pc.getTransceivers()}
        for media in offer.media:
            extension_id = rtp_hooks.offered_transport_cc_id(media.rtp.headerExtensions)
            transceiver = by_mid.get(media.rtp.muxId)
            if extension_id is None or transceiver is None:
                continue
            receiver = transceiver.receiver
            if isinstance(receiver, rtp_hooks.ForwardingReceiver):
                rtp_hooks.accept_transport_cc(
                    transceiver, extension_id, receiver, self.transport_feedback
                )
                if self._feedback_task is None:
                    self._feedback_task = asyncio.ensure_future(self._send_feedback())

    async def _send_feedback(self) -> None:
        """Transport-wide feedback every 50 ms, and the cap as REMB every second (the sender's
        own estimate replaces the SFU's, but the operator's cap still binds); every 100 ms, a
        NACK again for video packets still missing (aiortc's receiver asks once per gap)."""
        next_cap = 0.0
        missing: dict[str, set[int]] = {}  # lost video packets asked for at the last tick
        ticks = 0
        while True:
            await asyncio.sleep(TRANSPORT_FEEDBACK_INTERVAL)
            ticks += 1
            tracks = sorted(self.tracks.values(), key=lambda t: t.kind != "video")
            try:
                for track in tracks:
                    if track.receiver is not None and track.receiver.transport_cc is not None:
                        await track.receiver.send_transport_feedback(track.media_ssrc or 0)
                        break
                for track in tracks if ticks % 2 == 0 else ():  # every 100 ms
                    if track.kind == "video" and track.receiver is not None:
                        before = missing.get(track.track_id, set())
                        missing[track.track_id] = await rtp_hooks.repeat_nacks(
                            track.receiver, before
                        )
                if time.monotonic() >= next_cap:
                    next_cap = time.monotonic() + CAP_REMB_INTERVAL
                    await self.apply_bitrate_cap()
            except Exception:  # feedback must outlive one bad send
                logger.exception("%s: transport feedback failed", self.participant)

    async def apply_bitrate_cap(self) -> None:
        for track in self.tracks.values():
            await track.apply_bitrate_cap()

    async def close(self) -> None:
        if self._feedback_task is not None:
            self._feedback_task.cancel()
        for track in self.tracks.values():
            track.downtracks.clear()
        await self.pc.close()

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed") and self._on_closed is not None:
            callback, self._on_closed = self._on_closed, None
            callback(self)


def _msid_track(msid: str | None) -> str | None:
    if not msid:
        return None
    parts = msid.split()
    return parts[1] if len(parts) > 1 else None
