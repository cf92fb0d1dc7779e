"""Per-subscriber RTP rewrite: one `Forwarder` per outgoing stream of a subscriber connection.

A subscriber's stream keeps one SSRC, one payload type and one contiguous sequence/timestamp line
for its whole life, even when the publisher behind it changes (m-line recycling), so the
subscriber's jitter buffer and decoder never see a jump. Video starts (and restarts after a
publisher change) at a keyframe. Sent packets are kept in a history that answers NACKs.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket, wrap_rtx

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
HISTORY_SIZE = 1024
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TOFFSET_URI = "urn:ietf:params:rtp-hdrext:toffset"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
_HEADER = struct.Struct("!BBHLL")
_PROFILE = struct.Struct("!HH")
_U32 = struct.Struct("!L")
_I32 = struct.Struct("!l")


def vp8_keyframe_start(payload: bytes) -> bool:
    """True if `payload` (an RTP VP8 payload, RFC 7741) starts a VP8 key frame."""
    if not payload:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S bit, partition index 0
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        if len(payload) <= pos:
            return False
        ext = payload[pos]
        pos += 1
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            pos += 1
    if len(payload) <= pos:
        return False
    return not payload[pos] & 0x01  # P bit of the VP8 frame header: 0 means key frame


class SequenceRewriter:
    """Maps (source, sequence number, timestamp) onto one continuous output line.

    Within a source, output = input + offset, so reordering, loss gaps and retransmissions map
    consistently. A new source continues right after the last output sequence number, and its
    timestamps continue after the last output timestamp plus the wall-clock time that passed.
    Packets of a source older than the first one forwarded from it are dropped.
    """

    def __init__(
        self,
        clock_rate: int,
        first_sequence_number: int | None = None,
        first_timestamp: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        first_seq = (
            random.randrange(SEQ_MOD // 2)
            if first_sequence_number is None
            else first_sequence_number
        )
        self._clock_rate = clock_rate
        self._clock = clock
        self._last_seq = (first_seq - 1) % SEQ_MOD
        self._last_ts = random.randrange(TS_MOD) if first_timestamp is None else first_timestamp
        self._last_time: float | None = None
        self._source: Hashable | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._highest = 0
        self._start = 0

    @property
    def source(self) -> Hashable | None:
        return self._source

    def rewrite(self, source: Hashable, seq: int, ts: int) -> tuple[int, int] | None:
        now = self._clock()
        if source != self._source:
            gap = 0
            if self._last_time is not None:
                gap = max(1, int((now - self._last_time) * self._clock_rate))
            self._source = source
            self._seq_offset = (self._last_seq + 1 - seq) % SEQ_MOD
            self._ts_offset = (self._last_ts + gap - ts) % TS_MOD
            self._highest = self._start = seq
            newest = True
        else:
            delta = ((seq - self._highest) + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2
            extended = self._highest + delta
            if extended < self._start:
                return None
            newest = delta > 0
            if newest:
                self._highest = extended
        out_seq = (seq + self._seq_offset) % SEQ_MOD
        out_ts = (ts + self._ts_offset) % TS_MOD
        if newest:
            self._last_seq, self._last_ts, self._last_time = out_seq, out_ts, now
        return out_seq, out_ts


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
        self._writer = _OneByteWriter.for_stream(stream)
        self._source: Hashable | None = None
        self._waiting_keyframe = stream.gated
        self._rtx_seq = random.randrange(SEQ_MOD // 2)

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting_keyframe

    def forward(self, packet: RtpPacket, source: Hashable) -> bytes | None:
        """The packet to send to the subscriber, or None to drop it."""
        if source != self._source:
            self._source = source
            self._waiting_keyframe = self.stream.gated
            self.stats.sources.append(source)
        if not packet.payload:
            return None
        if self._waiting_keyframe:
            if not vp8_keyframe_start(packet.payload):
                self.stats.dropped_waiting_keyframe += 1
                return None
            self._waiting_keyframe = False
        mapped = self._rewriter.rewrite(source, packet.sequence_number, packet.timestamp)
        if mapped is None:
            return None
        seq, ts = mapped
        if self._writer is not None:
            data = self._writer.write(packet, seq, ts)
        else:
            data = self._serialize(packet, seq, ts)
        self._history[seq % len(self._history)] = (seq, data)
        self.stats.packets += 1
        self.stats.bytes += len(data)
        return data

    def _serialize(self, packet: RtpPacket, seq: int, ts: int) -> bytes:
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


class _OneByteWriter:
    """Writes a forwarded packet's header straight from the stream's negotiated ids: the hot
    path of the SFU, a few times cheaper than building an `RtpPacket` and serializing it with
    aiortc's general extension map. Only for RFC 8285 one-byte extensions (ids 1-14)."""

    def __init__(
        self,
        stream: OutputStream,
        mid_element: bytes,
        abs_id: int,
        toffset_id: int,
        level_id: int,
    ) -> None:
        self._payload_type = stream.payload_type
        self._ssrc = stream.ssrc
        self._mid = mid_element
        self._abs = (abs_id << 4) | 2
        self._toffset = (toffset_id << 4) | 1  # two bytes, as aiortc writes it
        self._level = level_id << 4
        self._has_abs, self._has_toffset, self._has_level = (
            bool(abs_id),
            bool(toffset_id),
            bool(level_id),
        )

    @classmethod
    def for_stream(cls, stream: OutputStream) -> _OneByteWriter | None:
        ids = {e.uri: e.id for e in stream.header_extensions}
        if any(not 1 <= i <= 14 for i in ids.values()):
            return None
        mid = (stream.mid or "").encode()
        mid_id = ids.get(MID_URI, 0)
        if mid_id and not 1 <= len(mid) <= 16:
            return None
        mid_element = bytes([(mid_id << 4) | (len(mid) - 1)]) + mid if mid_id and mid else b""
        return cls(
            stream,
            mid_element,
            ids.get(ABS_SEND_TIME_URI, 0),
            ids.get(TOFFSET_URI, 0),
            ids.get(AUDIO_LEVEL_URI, 0),
        )

    def write(self, packet: RtpPacket, seq: int, ts: int) -> bytes:
        extensions = packet.extensions
        ext = self._mid
        if self._has_abs and extensions.abs_send_time is not None:
            ext += bytes([self._abs]) + _U32.pack(extensions.abs_send_time & 0xFFFFFF)[1:]
        if self._has_toffset and extensions.transmission_offset is not None:
            ext += bytes([self._toffset]) + _I32.pack(extensions.transmission_offset << 8)[:2]
        if self._has_level and extensions.audio_level is not None:
            voice, level = extensions.audio_level
            ext += bytes([self._level, (0x80 if voice else 0) | (level & 0x7F)])
        csrc = packet.csrc
        first = 0x80 | len(csrc)
        if ext:
            first |= 0x10
            ext += bytes(-len(ext) % 4)
            ext = _PROFILE.pack(0xBEDE, len(ext) >> 2) + ext
        header = _HEADER.pack(first, (packet.marker << 7) | self._payload_type, seq, ts, self._ssrc)
        if csrc:
            header += b"".join(_U32.pack(c) for c in csrc)
        return header + ext + packet.payload
