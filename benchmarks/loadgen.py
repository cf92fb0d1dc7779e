"""Load generators for the media benchmarks: subscribers that count and check RTP instead of
decoding it, so a few processes can stand in for hundreds of viewers without starving the node.

A `CountingSubscriber` answers the server's offers like a real client, but its receivers are the
SFU's own non-decoding `ForwardingReceiver`s (they still send receiver reports, NACKs and REMB)
with a sink that checks each packet: one SSRC and payload type per stream, and which video frames
arrived whole (every sequence number from the one after the previous frame's marker up to this
frame's marker).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

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
        self.packets += 1
        self.bytes += len(packet.payload)
        self.ssrcs.add(packet.ssrc)
        self.payload_types.add(packet.payload_type)
        if not keep_log:
            return
        seq = packet.sequence_number
        if self._highest is None:
            extended = seq
        else:
            delta = (seq - self._highest + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2
            extended = self._highest + delta
        self._highest = extended if self._highest is None else max(self._highest, extended)
        self.log[extended] = (packet.timestamp, bool(packet.marker))

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


class CountingSink:
    def __init__(self, subscriber: CountingSubscriber) -> None:
        self.subscriber = subscriber

    async def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters, rtx: bool) -> None:
        kind = "video" if codec.mimeType.lower().startswith("video/") else "audio"
        self.subscriber.streams[kind].add(packet, self.subscriber.recording and kind == "video")


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


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
