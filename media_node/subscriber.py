"""A participant's subscriber connection: the SFU offers every other publisher's tracks.

Renegotiation: aiortc re-offers on an established connection (new m-lines join the existing
BUNDLE transport, existing ones keep their MID, SSRC and payload types), but it cannot remove an
m-line. So a track that goes away turns its m-line `inactive`, and the next track of the same
kind recycles it: the m-line gets the new publisher's msid, the sender keeps its SSRC, and the
`Forwarder` continues its sequence numbers and timestamps, so the client's receiver sees one
unbroken stream that restarts at a keyframe. The number of m-lines is bounded by the most
tracks ever subscribed at once, and no change ever interrupts the other streams (a fresh
connection per change would, for the ICE and DTLS setup time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import is_rtx
from aiortc.rtcconfiguration import RTCBundlePolicy

from media_node import rtp_hooks
from media_node.codec_policy import codec_preferences
from media_node.datagram_batch import Account
from media_node.fanout import DownTrack, OutgoingPacket
from media_node.forwarder import Forwarder, OutputStream
from media_node.ice import IcePolicy, accept_remote_candidate, parse_remote_sdp
from media_node.publisher import PublishedTrack
from media_node.rtp_header import FIXED_HEADER
from rtcfleet import tracing

logger = logging.getLogger(__name__)


class SubscriberNotNegotiating(RuntimeError):
    """An answer arrived while the SFU had no subscriber offer outstanding."""


class SubscriberDownTrack(DownTrack):
    """One m-line of a subscriber connection (a slot that a track of its kind may reuse) and
    the forwarder behind its sender: the `DownTrack` a published track fans out to."""

    def __init__(
        self,
        transceiver: Any,
        kind: str,
        on_sent: Account,
    ) -> None:
        self.transceiver = transceiver
        self.kind = kind
        self.track: PublishedTrack | None = None
        self.forwarder: Forwarder | None = None
        self.sender = rtp_hooks.make_forwarding_sender(transceiver.sender, self)
        self._on_sent = on_sent

    @property
    def active(self) -> bool:
        return self.transceiver.currentDirection in ("sendonly", "sendrecv")

    def attach(self, track: PublishedTrack) -> None:
        self.track = track
        rtp_hooks.set_msid(self.sender, track.publisher, track.track_id)
        self.transceiver.direction = "sendonly"
        track.downtracks.add(self)

    def detach(self) -> None:
        if self.track is not None:
            self.track.downtracks.discard(self)
        self.track = None
        self.transceiver.direction = "inactive"

    def forward(self, outgoing: OutgoingPacket) -> None:
        """The per-subscriber part of a fan-out: rewrite, write the fixed header in front of
        the shared tail, protect and queue."""
        forwarder = self.forwarder
        if forwarder is None or not self.active:
            return
        packet = outgoing.packet
        mapped = forwarder.rewrite(packet, outgoing.source)
        if mapped is None:
            track = self.track
            if forwarder.waiting_for_keyframe and track is not None and track.request_keyframe():
                forwarder.stats.keyframe_requests += 1
            return
        seq, ts = mapped
        writer = forwarder.writer
        if writer is None:
            data = forwarder.serialize(packet, seq, ts)
        else:
            first, tail = outgoing.tail(writer)
            second = (packet.marker << 7) | writer.payload_type
            data = FIXED_HEADER.pack(first, second, seq, ts, writer.ssrc) + tail
        forwarder.remember(seq, data)
        self.sender.queue_rtp(
            data, packet.timestamp, len(packet.payload), outgoing.batch, outgoing.ntp, self._on_sent
        )

    def on_started(self, sender: rtp_hooks.ForwardingSender) -> None:
        parameters = sender.parameters
        primary = parameters.codecs[0]
        rtx_pt = next(
            (
                c.payloadType
                for c in parameters.codecs
                if is_rtx(c) and c.parameters.get("apt") == primary.payloadType
            ),
            None,
        )
        ssrc, rtx_ssrc = rtp_hooks.sender_ssrcs(sender)
        self.forwarder = Forwarder(
            OutputStream(
                kind=self.kind,
                ssrc=ssrc,
                payload_type=primary.payloadType,
                clock_rate=primary.clockRate,
                mid=parameters.muxId,
                header_extensions=tuple(parameters.headerExtensions),
                rtx_payload_type=rtx_pt,
                rtx_ssrc=rtx_ssrc if rtx_pt is not None else None,
                codec=primary.name,
            )
        )
        if self.track is not None:
            self.track.request_keyframe()

    def on_keyframe_request(self) -> None:
        if self.track is not None:
            self.track.request_keyframe()

    async def on_nack(self, lost: list[int]) -> None:
        if self.forwarder is None:
            return
        for data in self.forwarder.retransmit(lost):
            await self.sender.resend_rtp(data)


class Subscriber:
    """The server side of one participant's subscriber peer connection."""

    def __init__(
        self,
        participant: str,
        ice: IcePolicy,
        allowed_codecs: tuple[str, ...],
        on_offer: Callable[[str], None],
        on_sent: Account,
    ) -> None:
        self.participant = participant
        self.downtracks: list[SubscriberDownTrack] = []
        self.offers_sent = 0
        self._ice = ice
        self.remote_candidates = 0
        self._allowed = allowed_codecs
        self._on_offer = on_offer
        self._on_sent = on_sent
        self._lock = asyncio.Lock()
        self._dirty = False
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )

    def downtrack_for(self, track: PublishedTrack) -> SubscriberDownTrack | None:
        return next((s for s in self.downtracks if s.track is track), None)

    async def add_track(self, track: PublishedTrack) -> None:
        async with self._lock:
            if self.downtrack_for(track) is not None:
                return
            downtrack = next(
                (s for s in self.downtracks if s.kind == track.kind and s.track is None), None
            )
            if downtrack is None:
                transceiver = self.pc.addTransceiver(track.kind, direction="sendonly")
                transceiver.setCodecPreferences(codec_preferences(track.kind, self._allowed))
                downtrack = SubscriberDownTrack(transceiver, track.kind, self._on_sent)
                self.downtracks.append(downtrack)
            downtrack.attach(track)
            await self._negotiate()

    async def remove_track(self, track: PublishedTrack) -> None:
        async with self._lock:
            downtrack = self.downtrack_for(track)
            if downtrack is None:
                return
            downtrack.detach()
            await self._negotiate()

    async def apply_answer(self, sdp: str) -> None:
        async with self._lock:
            if self.pc.signalingState != "have-local-offer":
                raise SubscriberNotNegotiating(
                    f"{self.participant}: no subscriber offer outstanding"
                )
            parse_remote_sdp(sdp)
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=self._ice.filter_sdp(sdp), type="answer")
            )
            if self._dirty:
                await self._negotiate()

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        parsed, self.remote_candidates = accept_remote_candidate(
            self._ice, candidate, self.remote_candidates
        )
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        for downtrack in self.downtracks:
            if downtrack.track is not None:
                downtrack.track.downtracks.discard(downtrack)
            downtrack.track = None
        await self.pc.close()

    @property
    def forwarded_streams(self) -> int:
        return sum(1 for s in self.downtracks if s.track is not None and s.active)

    async def _negotiate(self) -> None:
        """Offer the current set of tracks, or remember to once the pending offer is answered."""
        if self.pc.signalingState != "stable":
            self._dirty = True
            return
        self._dirty = False
        if not any(s.track is not None for s in self.downtracks) and self.offers_sent == 0:
            return
        with tracing.child_span("negotiate subscriber"):
            self._ice.apply(self.pc)
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
            self.offers_sent += 1
            self._on_offer(self.pc.localDescription.sdp)
