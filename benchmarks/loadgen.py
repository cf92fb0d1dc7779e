"""Load generators for the media benchmarks: subscribers that count and check RTP instead of
decoding it, so one process can stand in for hundreds of viewers without starving the node.

Both kinds answer the server's offers like a real client and complete ICE and DTLS-SRTP with
aiortc, then check each packet: one SSRC and payload type per stream, and which video frames
arrived whole (every sequence number from the one after the previous frame's marker up to this
frame's marker).

- `CountingSubscriber`: the packets are decrypted and parsed by aiortc and handed to the SFU's
  own non-decoding `ForwardingReceiver` (which sends receiver reports, NACKs and REMB). About
  half a core per hundred subscribers: the load generator saturates before a worker does.
- `CheapSubscriber`: the datagrams are read off the ICE socket before aioice, DTLS or SRTP see
  them and counted from the RTP header, which SRTP leaves in clear (SSRC, sequence number,
  timestamp, marker); only retransmissions (RTX carries the original sequence number inside the
  encrypted payload) and the server's RTCP are decrypted. Its RTCP is a client's: receiver
  reports written by aiortc from statistics fed with the clear headers, a generic NACK for every
  real gap (aiortc's NACK generator), REMB every second; transport-wide feedback is not sent
  because the SFU's subscriber offer does not negotiate it. With ``cross_check`` it also hands
  every packet to aiortc to be decrypted and counted as a `CountingSubscriber` counts, so the
  two counts of the same packets can be compared.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import pylibsrtp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription

from media_node import rtp_hooks

SEQ_MOD = 1 << 16
# one process hosts every subscriber: a short stall must not overflow a socket
RECEIVE_BUFFER = 4 * 1024 * 1024


@dataclass
class StreamCheck:
    """What one subscriber received of one kind during the current window."""

    packets: int = 0
    bytes: int = 0
    ssrcs: set[int] = field(default_factory=set)
    payload_types: set[int] = field(default_factory=set)
    # extended sequence number -> (timestamp, marker)
    log: dict[int, tuple[int, bool]] = field(default_factory=dict)
    _highest: int | None = None

    def add(self, packet: RtpPacket, keep_log: bool) -> None:
        self.add_header(
            packet.sequence_number,
            packet.timestamp,
            bool(packet.marker),
            packet.ssrc,
            packet.payload_type,
            len(packet.payload),
            keep_log,
        )

    def add_header(
        self, seq: int, timestamp: int, marker: bool, ssrc: int, pt: int, size: int, keep_log: bool
    ) -> None:
        self.packets += 1
        self.bytes += size
        self.ssrcs.add(ssrc)
        self.payload_types.add(pt)
        if not keep_log:
            return
        if self._highest is None:
            extended = seq
        else:
            delta = (seq - self._highest + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2
            extended = self._highest + delta
        self._highest = extended if self._highest is None else max(self._highest, extended)
        self.log[extended] = (timestamp, marker)

    def complete_frames(self, frames: int, frame_ticks: int) -> int:
        """Whole frames among the `frames` consecutive frames that start at the first frame
        logged, told apart by RTP timestamp (`frame_ticks` apart), so a frame counts even when
        a stall of this process made it arrive after the window. A frame is whole when every
        sequence number from the one after the previous marker to its own marker arrived."""
        if not self.log:
            return 0
        seqs = range(min(self.log), max(self.log) + 1)
        base = self.log[seqs[0]][0]
        complete = 0
        counting = False
        whole = True
        for seq in seqs:
            entry = self.log.get(seq)
            if entry is None:
                whole = False
            elif entry[1]:
                index = ((entry[0] - base) % (1 << 32)) // frame_ticks
                if counting and whole and index < frames:
                    complete += 1
                counting = True
                whole = True
        return complete


class Counted(Protocol):
    streams: dict[str, StreamCheck]
    recording: bool


class CountingSink:
    """Counts what aiortc decrypted and parsed into `target.streams`."""

    def __init__(self, target: Counted) -> None:
        self.target = target

    async def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters, rtx: bool) -> None:
        kind = "video" if codec.mimeType.lower().startswith("video/") else "audio"
        self.target.streams[kind].add(packet, self.target.recording and kind == "video")


class CountingSubscriber:
    def __init__(self, name: str) -> None:
        self.name = name
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.streams = {"audio": StreamCheck(), "video": StreamCheck()}
        self.recording = False
        self._sink = CountingSink(self)

    async def answer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in self.pc.getTransceivers():
            if not isinstance(transceiver.receiver, rtp_hooks.ForwardingReceiver):
                rtp_hooks.make_forwarding_receiver(transceiver.receiver, self._sink, lambda: 10**9)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        rtp_hooks.set_receive_buffer(self.pc, RECEIVE_BUFFER)
        return str(self.pc.localDescription.sdp)

    def start_window(self) -> None:
        self.streams = {"audio": StreamCheck(), "video": StreamCheck()}
        self.recording = True

    def stop_window(self) -> None:
        self.recording = False

    @property
    def receiving(self) -> bool:
        return self.streams["video"].packets > 0 and self.streams["audio"].packets > 0

    async def close(self) -> None:
        await self.pc.close()


_CLEAR = struct.Struct("!BBHLL")
_OSN = struct.Struct("!H")
SRTP_AUTH_TAG = 10  # AES_CM_128_HMAC_SHA1_80, what aiortc negotiates
REMB_INTERVAL_S = 1.0
REMB_ESTIMATE = 3_000_000


class ClearHeader:
    """The two header fields aiortc's receive statistics and NACK generator read."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self, sequence_number: int, timestamp: int) -> None:
        self.sequence_number = sequence_number
        self.timestamp = timestamp


@dataclass
class PayloadRoute:
    kind: str
    receiver: RTCRtpReceiver
    clock_rate: int
    rtx_of: int | None  # the payload type an RTX payload type repairs


def header_length(data: bytes) -> int:
    """Fixed header + CSRCs + extension block of an RTP packet (whose header is in clear)."""
    length = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and len(data) >= length + 4:
        length += 4 + 4 * int.from_bytes(data[length + 2 : length + 4], "big")
    return length


class _Frames:
    """A `Counted` for the decrypted side of a cross-check."""

    def __init__(self) -> None:
        self.streams = {"audio": StreamCheck(), "video": StreamCheck()}
        self.recording = False


class CheapSubscriber:
    """A viewer whose handshakes are real and whose packet path is a header read."""

    def __init__(self, name: str, cross_check: bool = False) -> None:
        self.name = name
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.streams = {"audio": StreamCheck(), "video": StreamCheck()}
        self.recording = False
        self.cross_check = cross_check
        self.decrypted = _Frames()
        self.nacks_sent = 0
        self.unprotect_failures = 0
        self._routes: dict[int, PayloadRoute] = {}
        self._media_ssrc: dict[str, int] = {}
        self._statistics: dict[int, StreamStatistics] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._remb: asyncio.Task[None] | None = None

    async def answer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        sink = CountingSink(self.decrypted)
        for transceiver in self.pc.getTransceivers():
            if not isinstance(transceiver.receiver, rtp_hooks.ForwardingReceiver):
                rtp_hooks.make_forwarding_receiver(transceiver.receiver, sink, lambda: 10**9)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        rtp_hooks.set_receive_buffer(self.pc, RECEIVE_BUFFER)
        self._route(str(self.pc.localDescription.sdp))
        rtp_hooks.tap_datagrams(self.pc, self._tap)
        if self._remb is None and not self.cross_check:
            self._remb = asyncio.ensure_future(self._send_remb())
        return str(self.pc.localDescription.sdp)

    def _route(self, sdp: str) -> None:
        receivers = {t.mid: t.receiver for t in self.pc.getTransceivers()}
        for media in SessionDescription.parse(sdp).media:
            receiver = receivers.get(media.rtp.muxId)
            if receiver is None:
                continue
            for codec in media.rtp.codecs:
                if codec.payloadType is None:
                    continue
                apt = codec.parameters.get("apt") if codec.name.lower() == "rtx" else None
                self._routes[codec.payloadType] = PayloadRoute(
                    media.kind, receiver, codec.clockRate, int(apt) if apt is not None else None
                )

    def _tap(self, original: rtp_hooks.DatagramHandler) -> rtp_hooks.DatagramHandler:
        def datagram_received(data: bytes, addr: Any) -> None:
            # RFC 7983: 128-191 is RTP or RTCP; RTCP packet types are 192-223
            if 127 < data[0] < 192 and len(data) > 12 and not 191 < data[1] < 224:
                plain = self._count(data)
                if not self.cross_check:
                    return
                if plain is not None:  # a retransmission this side already decrypted
                    route = self._routes[data[1] & 0x7F]
                    self._spawn(rtp_hooks.handle_plain_rtp(route.receiver, plain, _now_ms()))
                    return
            original(data, addr)

        return datagram_received

    def _count(self, data: bytes) -> bytes | None:
        """Count one packet from its clear header; returns the plaintext of a retransmission
        (the only packets decrypted here)."""
        _, second, seq, timestamp, ssrc = _CLEAR.unpack_from(data)
        pt = second & 0x7F
        route = self._routes.get(pt)
        if route is None:
            return None
        length = header_length(data)
        size = len(data) - length - SRTP_AUTH_TAG
        plain = None
        wire_seq, wire_ssrc = seq, ssrc
        if route.rtx_of is not None:
            try:
                plain = rtp_hooks.receiver_srtp(route.receiver).unprotect(data)
            except pylibsrtp.Error:
                self.unprotect_failures += 1
                return None
            if len(plain) < length + 2 or route.kind not in self._media_ssrc:
                return plain
            seq = _OSN.unpack_from(plain, length)[0]
            pt, size = route.rtx_of, size - 2
            ssrc = self._media_ssrc[route.kind]
        else:
            self._media_ssrc.setdefault(route.kind, ssrc)
        kind = route.kind
        self.streams[kind].add_header(
            seq, timestamp, bool(second & 0x80), ssrc, pt, size, self.recording and kind == "video"
        )
        if not self.cross_check:
            self._feedback(route, wire_ssrc, wire_seq, ssrc, seq, timestamp)
        return plain

    def _feedback(
        self, route: PayloadRoute, wire_ssrc: int, wire_seq: int, ssrc: int, seq: int, ts: int
    ) -> None:
        """What aiortc's receiver does with a packet: statistics for the receiver reports (per
        SSRC on the wire, RTX included) and NACK for gaps in the media sequence."""
        statistics = self._statistics.get(wire_ssrc)
        if statistics is None:
            statistics = self._statistics[wire_ssrc] = StreamStatistics(route.clock_rate)
            rtp_hooks.receiver_statistics(route.receiver)[wire_ssrc] = statistics
        statistics.add(cast(RtpPacket, ClearHeader(wire_seq, ts)))
        nack = rtp_hooks.receiver_nack_generator(route.receiver)
        if nack is not None and nack.add(ClearHeader(seq, ts)):
            self.nacks_sent += 1
            self._spawn(rtp_hooks.send_nack(route.receiver, ssrc, sorted(nack.missing)))

    async def _send_remb(self) -> None:
        while True:
            await asyncio.sleep(REMB_INTERVAL_S)
            ssrc = self._media_ssrc.get("video")
            receiver = next((r.receiver for r in self._routes.values() if r.kind == "video"), None)
            if ssrc is not None and isinstance(receiver, rtp_hooks.ForwardingReceiver):
                await receiver.send_remb(REMB_ESTIMATE, [ssrc])

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start_window(self) -> None:
        self.streams = {"audio": StreamCheck(), "video": StreamCheck()}
        self.decrypted.streams = {"audio": StreamCheck(), "video": StreamCheck()}
        self.recording = self.decrypted.recording = True

    def stop_window(self) -> None:
        self.recording = self.decrypted.recording = False

    @property
    def receiving(self) -> bool:
        return self.streams["video"].packets > 0 and self.streams["audio"].packets > 0

    async def close(self) -> None:
        if self._remb is not None:
            self._remb.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.pc.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
