"""RTP packets of one track put back together into whole encoded frames, in order.

The forwarding receiver hands packets over as they arrive (no jitter buffer): reordered,
duplicated (a retransmission after the original), or missing. A frame is given out only when
all its packets are here; a gap that outlives ``max_delay_s`` of media is given up, and after
it a video track waits for its next keyframe (the caller asks the publisher for one), since
VP8 frames after a loss refer to what was lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtp import RtpPacket

from media_node.vp8 import keyframe_start as vp8_keyframe_start

# packets held while waiting for a missing one; far above one frame of 640x360 video
MAX_HELD_PACKETS = 2048


@dataclass(frozen=True)
class EncodedFrame:
    data: bytes
    # RTP timestamp, unwrapped (keeps counting past 2**32)
    timestamp: int
    keyframe: bool


def vp8_frame_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe's header (RFC 6386 section 9.1)."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


def _starts_frame(payload: bytes) -> bool:
    """The S bit with partition index 0: the first packet of a VP8 frame."""
    return bool(payload) and payload[0] & 0x17 == 0x10


class _Unwrapper:
    """Extends a wrapping counter (16-bit sequence numbers, 32-bit timestamps) to 64 bits."""

    def __init__(self, bits: int) -> None:
        self._modulus = 1 << bits
        self._last: int | None = None

    def __call__(self, value: int) -> int:
        if self._last is None:
            self._last = value + self._modulus  # room to go back before the first value
            return self._last
        delta = (value - self._last) % self._modulus
        if delta >= self._modulus // 2:
            delta -= self._modulus
        extended = self._last + delta
        self._last = max(self._last, extended)
        return extended


class FrameAssembler:
    """Whole frames of one track from its RTP packets (VP8 per RFC 7741, or one Opus packet
    per frame per RFC 7587)."""

    def __init__(self, kind: str, clock_rate: int, max_delay_s: float = 0.3) -> None:
        self.video = kind == "video"
        self._max_delay = int(max_delay_s * clock_rate)
        self._seq = _Unwrapper(16)
        self._ts = _Unwrapper(32)
        self._held: dict[int, tuple[RtpPacket, int]] = {}
        self._next: int | None = None
        self._newest_ts = 0
        # after a loss (and at the start) a video track waits for a keyframe
        self.waiting_for_keyframe = self.video
        self.frames_lost = 0

    def add(self, packet: RtpPacket) -> list[EncodedFrame]:
        """Take one packet; returns the frames it completed, oldest first."""
        seq, ts = self._seq(packet.sequence_number), self._ts(packet.timestamp)
        if self._next is not None and seq < self._next:
            return []  # late duplicate, or before the first frame
        if self._next is None:
            if self.video and not vp8_keyframe_start(packet.payload):
                return []
            self._next = seq
        if seq in self._held:
            return []
        if len(self._held) >= MAX_HELD_PACKETS:
            self._give_up()
        self._held[seq] = (packet, ts)
        self._newest_ts = max(self._newest_ts, ts)
        frames: list[EncodedFrame] = []
        while self._next is not None:
            frame = self._take()
            if frame is None:
                if not self._overdue():
                    break
                self._give_up()
                continue
            if frame.keyframe:
                self.waiting_for_keyframe = False
            if not self.waiting_for_keyframe:
                frames.append(frame)
        return frames

    def _take(self) -> EncodedFrame | None:
        """The frame starting at the next sequence number, if all of it is here."""
        assert self._next is not None
        first = self._held.get(self._next)
        if first is None:
            return None
        packet, ts = first
        if not self.video:
            del self._held[self._next]
            self._next += 1
            return EncodedFrame(packet.payload, ts, True)
        parts, seq = [], self._next
        while True:
            held = self._held.get(seq)
            if held is None or held[1] != ts:
                return None
            parts.append(held[0])
            if held[0].marker:
                break
            seq += 1
        for number in range(self._next, seq + 1):
            del self._held[number]
        self._next = seq + 1
        keyframe = vp8_keyframe_start(parts[0].payload)
        data = b"".join(VpxPayloadDescriptor.parse(p.payload)[1] for p in parts)
        return EncodedFrame(data, ts, keyframe)

    def _overdue(self) -> bool:
        """Whether the oldest packet held waits for a missing one longer than allowed."""
        if not self._held:
            return False
        oldest_ts = min(ts for _, ts in self._held.values())
        return self._newest_ts - oldest_ts > self._max_delay

    def _give_up(self) -> None:
        """Skip what is missing: on to the oldest held packet that starts a frame."""
        assert self._next is not None
        self.frames_lost += 1
        starts = sorted(
            seq
            for seq, (packet, ts) in self._held.items()
            if not self.video or (seq > self._next and _starts_frame(packet.payload))
        )
        if self.video:
            self.waiting_for_keyframe = True
        if not starts:
            self._held.clear()
            self._next = None
            return
        for seq in [s for s in self._held if s < starts[0]]:
            del self._held[seq]
        self._next = starts[0]
