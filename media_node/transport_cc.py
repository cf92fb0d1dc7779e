"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

aiortc gives a publisher only REMB, which a browser obeys but cannot ramp with: its loss-based
estimate grows about 8 % a second and it never probes, so a Chromium publisher behind an aiortc
endpoint spends its first minute near 300-500 kbit/s. With this feedback (the arrival time of
every packet, by transport-wide sequence number) the browser runs its own delay-based estimator
and probes, and reaches the capacity of the path in seconds. REMB then carries only the
operator's bitrate cap.

This module is pure packet logic; `rtp_hooks` feeds it and `publisher` sends what it builds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RTCP_RTPFB = 205
FMT_TRANSPORT_CC = 15
TICK_US = 250  # receive deltas are in units of 250 us
REFERENCE_US = 64_000  # the reference time is in units of 64 ms
MAX_FEEDBACK_BYTES = 1100  # one feedback packet stays well under an MTU
SEQ_MOD = 1 << 16

NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA = 0, 1, 2


@dataclass(frozen=True)
class Feedback:
    """One parsed feedback packet (for tests and debugging)."""

    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    count: int
    reference_us: int
    feedback_count: int
    arrivals: dict[int, int]  # sequence number (16 bit) -> arrival time in us


class TransportWideFeedback:
    """Collects (transport sequence number, arrival time) and builds feedback packets.

    Each feedback covers every sequence number from the one after the last reported up to the
    highest received, lost ones included; a packet that arrives after its number was reported
    is not reported again (the sender has already counted it as lost).
    """

    def __init__(self) -> None:
        self._arrivals: dict[int, int] = {}
        self._highest: int | None = None
        self._next_base: int | None = None
        self._feedback_count = 0
        self.packets_recorded = 0
        self.feedback_sent = 0

    def record(self, sequence_number: int, arrival_us: int) -> None:
        extended = self._unwrap(sequence_number)
        if self._next_base is not None and extended < self._next_base:
            return
        self._arrivals.setdefault(extended, arrival_us)
        self.packets_recorded += 1

    def build(self, sender_ssrc: int, media_ssrc: int) -> list[bytes]:
        """Feedback for everything recorded since the last call (empty if nothing was)."""
        if not self._arrivals:
            return []
        base = min(self._arrivals) if self._next_base is None else self._next_base
        end = max(self._arrivals)
        packets = []
        while base <= end:
            data, base = self._build_one(base, end, sender_ssrc, media_ssrc)
            packets.append(data)
        self._next_base = end + 1
        self._arrivals.clear()
        self.feedback_sent += len(packets)
        return packets

    def _unwrap(self, sequence_number: int) -> int:
        if self._highest is None:
            self._highest = sequence_number
            return sequence_number
        delta = (sequence_number - self._highest + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2
        extended = self._highest + delta
        self._highest = max(self._highest, extended)
        return extended

    def _build_one(
        self, base: int, end: int, sender_ssrc: int, media_ssrc: int
    ) -> tuple[bytes, int]:
        """One packet from `base`; returns it and the first sequence number it left out."""
        first_received = next(s for s in range(base, end + 1) if s in self._arrivals)
        reference = self._arrivals[first_received] // REFERENCE_US
        last_tick = reference * (REFERENCE_US // TICK_US)
        symbols: list[int] = []
        deltas = bytearray()
        seq = base
        while seq <= end and 24 + 2 * (len(symbols) // 7) + len(deltas) < MAX_FEEDBACK_BYTES:
            arrival = self._arrivals.get(seq)
            if arrival is None:
                symbols.append(NOT_RECEIVED)
            else:
                tick = arrival // TICK_US
                delta = tick - last_tick
                if 0 <= delta <= 0xFF:
                    symbols.append(SMALL_DELTA)
                    deltas.append(delta)
                elif -0x8000 <= delta <= 0x7FFF:
                    symbols.append(LARGE_DELTA)
                    deltas += struct.pack("!h", delta)
                else:
                    break  # too far from the reference: the next packet starts here
                last_tick = tick
            seq += 1
        chunks = bytearray()
        for start in range(0, len(symbols), 7):
            chunk = 0xC000  # status vector chunk of seven 2-bit symbols
            for i, symbol in enumerate(symbols[start : start + 7]):
                chunk |= symbol << (12 - 2 * i)
            chunks += struct.pack("!H", chunk)
        body = (
            struct.pack(
                "!IIHHI",
                sender_ssrc,
                media_ssrc,
                base % SEQ_MOD,
                len(symbols),
                ((reference & 0xFFFFFF) << 8) | self._feedback_count,
            )
            + chunks
            + deltas
        )
        self._feedback_count = (self._feedback_count + 1) % 256
        padding = -(len(body) + 4) % 4
        if padding:
            body += bytes(padding - 1) + bytes([padding])
        length = (len(body) + 4) // 4 - 1
        header = struct.pack(
            "!BBH", 0x80 | (0x20 if padding else 0) | FMT_TRANSPORT_CC, RTCP_RTPFB, length
        )
        return header + body, seq


def parse_feedback(data: bytes) -> Feedback:
    """Decode one transport feedback packet (every chunk type the draft defines)."""
    first, packet_type, length = struct.unpack_from("!BBH", data)
    if packet_type != RTCP_RTPFB or first & 0x1F != FMT_TRANSPORT_CC:
        raise ValueError("not a transport-wide feedback packet")
    end = (length + 1) * 4
    if first & 0x20:
        end -= data[end - 1]
    sender, media, base, count, word = struct.unpack_from("!IIHHI", data, 4)
    reference = word >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    pos = 20
    symbols: list[int] = []
    while len(symbols) < count:
        (chunk,) = struct.unpack_from("!H", data, pos)
        pos += 2
        if not chunk & 0x8000:  # run length
            symbols += [(chunk >> 13) & 0x3] * (chunk & 0x1FFF)
        elif not chunk & 0x4000:  # fourteen 1-bit symbols
            symbols += [(chunk >> (13 - i)) & 0x1 for i in range(14)]
        else:  # seven 2-bit symbols
            symbols += [(chunk >> (12 - 2 * i)) & 0x3 for i in range(7)]
    tick = reference * (REFERENCE_US // TICK_US)
    arrivals: dict[int, int] = {}
    for i, symbol in enumerate(symbols[:count]):
        if symbol == SMALL_DELTA:
            tick += data[pos]
            pos += 1
        elif symbol == LARGE_DELTA:
            tick += struct.unpack_from("!h", data, pos)[0]
            pos += 2
        else:
            continue
        arrivals[(base + i) % SEQ_MOD] = tick * TICK_US
    if pos > end:
        raise ValueError("truncated transport-wide feedback")
    return Feedback(sender, media, base, count, reference * REFERENCE_US, word & 0xFF, arrivals)
