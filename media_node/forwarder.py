"""Per-subscriber RTP forwarding: one `Forwarder` per outgoing stream of a subscriber connection.

A subscriber's stream keeps one SSRC, one payload type and one contiguous sequence/timestamp line
for its whole life, even when the publisher behind it changes (m-line recycling), so the
subscriber's jitter buffer and decoder never see a jump (`media_node.sequence`). Video starts
(and restarts after a publisher change) at a keyframe (`media_node.vp8`). Headers are written by
`media_node.rtp_header`. Sent packets are kept in a history that answers NACKs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket, wrap_rtx

from media_node import vp8
from media_node.rtp_header import OneByteHeaderWriter
from media_node.sequence import SEQ_MOD, SequenceRewriter

HISTORY_SIZE = 1024


@dataclass(frozen=True)
class OutputStream:
    """What the subscriber's side negotiated for one stream."""

    kind: str
    ssrc: int
    payload_type: int
    clock_rate: int
    mid: str | None = None
    header_extensions: tuple[RTCRtpHeaderExtensionParameters, ...] = ()
    rtx_payload_type: int | None = None
    rtx_ssrc: int | None = None
    codec: str = "VP8"

    @property
    def gated(self) -> bool:
        """Whether forwarding (re)starts at a keyframe: only VP8's are recognised."""
        return self.kind == "video" and self.codec.upper() == "VP8"


@dataclass
class ForwarderStats:
    packets: int = 0
    bytes: int = 0
    dropped_waiting_keyframe: int = 0
    nacked: int = 0
    retransmitted: int = 0
    keyframe_requests: int = 0
    sources: list[Hashable] = field(default_factory=list)


class Forwarder:
    """Rewrites a publisher's packets for one subscriber stream and remembers what it sent.

    Header extensions are mapped by URI: the publisher's ids were resolved to meanings when
    aiortc parsed the packet with the publisher's negotiated map, and they are written back with
    the ids this subscriber negotiated. Extensions the subscriber did not negotiate are dropped,
    and so are the ones that only make sense hop by hop (transport-wide sequence numbers, RIDs).
    The MID extension carries the subscriber's MID, not the publisher's.
    """

    def __init__(
        self,
        stream: OutputStream,
        history_size: int = HISTORY_SIZE,
        clock: Callable[[], float] = time.monotonic,
        first_sequence_number: int | None = None,
        first_timestamp: int | None = None,
    ) -> None:
        self.stream = stream
        self.stats = ForwarderStats()
        self._rewriter = SequenceRewriter(
            stream.clock_rate, first_sequence_number, first_timestamp, clock
        )
        self._extensions = HeaderExtensionsMap()
        self._extensions.configure(
            RTCRtpParameters(headerExtensions=list(stream.header_extensions))
        )
        self._history: list[tuple[int, bytes] | None] = [None] * history_size
        self.writer = OneByteHeaderWriter.for_stream(
            stream.payload_type, stream.ssrc, stream.mid, stream.header_extensions
        )
        self._source: Hashable | None = None
        self._waiting_keyframe = stream.gated
        self._rtx_seq = random.randrange(SEQ_MOD // 2)

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting_keyframe

    def forward(self, packet: RtpPacket, source: Hashable) -> bytes | None:
        """The packet to send to the subscriber, or None to drop it."""
        mapped = self.rewrite(packet, source)
        if mapped is None:
            return None
        seq, ts = mapped
        if self.writer is not None:
            data = self.writer.write(packet, seq, ts)
        else:
            data = self.serialize(packet, seq, ts)
        self.remember(seq, data)
        return data

    def rewrite(self, packet: RtpPacket, source: Hashable) -> tuple[int, int] | None:
        """The (sequence number, timestamp) `packet` goes out with, or None to drop it: the
        per-subscriber decision of a fan-out, which then writes the packet and `remember`s it."""
        if source != self._source:
            self._source = source
            self._waiting_keyframe = self.stream.gated
            self.stats.sources.append(source)
        if not packet.payload:
            return None
        if self._waiting_keyframe:
            if not vp8.keyframe_start(packet.payload):
                self.stats.dropped_waiting_keyframe += 1
                return None
            self._waiting_keyframe = False
        return self._rewriter.rewrite(source, packet.sequence_number, packet.timestamp)

    def remember(self, seq: int, data: bytes) -> None:
        """Keep a sent packet for NACKs and count it."""
        self._history[seq % len(self._history)] = (seq, data)
        self.stats.packets += 1
        self.stats.bytes += len(data)

    def serialize(self, packet: RtpPacket, seq: int, ts: int) -> bytes:
        """aiortc's general serializer, for extension ids the one-byte form cannot carry."""
        out = RtpPacket(
            payload_type=self.stream.payload_type,
            marker=packet.marker,
            sequence_number=seq,
            timestamp=ts,
            ssrc=self.stream.ssrc,
            payload=packet.payload,
        )
        out.csrc = list(packet.csrc)
        out.extensions = HeaderExtensions(
            mid=self.stream.mid,
            abs_send_time=packet.extensions.abs_send_time,
            transmission_offset=packet.extensions.transmission_offset,
            audio_level=packet.extensions.audio_level,
        )
        return out.serialize(self._extensions)

    def retransmit(self, lost: Iterable[int]) -> list[bytes]:
        """Answer a subscriber's NACK from the history (as RTX when RTX was negotiated)."""
        answers = []
        for seq in lost:
            self.stats.nacked += 1
            entry = self._history[seq % len(self._history)]
            if entry is None or entry[0] != seq:
                continue
            packet = RtpPacket.parse(entry[1], self._extensions)
            if self.stream.rtx_payload_type is not None and self.stream.rtx_ssrc is not None:
                packet = wrap_rtx(
                    packet,
                    payload_type=self.stream.rtx_payload_type,
                    sequence_number=self._rtx_seq,
                    ssrc=self.stream.rtx_ssrc,
                )
                self._rtx_seq = (self._rtx_seq + 1) % SEQ_MOD
            answers.append(packet.serialize(self._extensions))
            self.stats.retransmitted += 1
        return answers
