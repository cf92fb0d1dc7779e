"""SSRC learning and keyframe-request relay of a published track, with crafted packets."""

from __future__ import annotations

import asyncio

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media_node.fanout import OutgoingPacket
from media_node.publisher import KEYFRAME_REQUEST_INTERVAL, PublishedTrack

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)


class FakeReceiver:
    def __init__(self) -> None:
        self.plis: list[int] = []

    async def send_pli(self, media_ssrc: int) -> None:
        self.plis.append(media_ssrc)


class Sink:
    def __init__(self) -> None:
        self.packets: list[tuple[int, object]] = []

    def forward(self, outgoing: OutgoingPacket) -> None:
        self.packets.append((outgoing.packet.sequence_number, outgoing.source))


def packet(ssrc: int, seq: int, payload: bytes = b"\x10\x00media", pt: int = 96) -> RtpPacket:
    return RtpPacket(payload_type=pt, sequence_number=seq, ssrc=ssrc, payload=payload)


async def test_media_ssrc_is_learnt_from_primary_codec_packets_with_payload() -> None:
    track = PublishedTrack("t1", "alice", "video")
    track.primary_payload_type = 96
    sink = Sink()
    track.downtracks.add(sink)

    await track.on_rtp(packet(0xBEEF, 1, b"\x00" * 2, pt=97), RTX, rtx=False)  # RTX probe
    await track.on_rtp(packet(0xCAFE, 2, b""), VP8, rtx=False)  # padding only
    await track.on_rtp(packet(0xF00D, 3), VP8, rtx=True)  # a retransmission
    assert track.media_ssrc is None and sink.packets == []

    await track.on_rtp(packet(0x1234, 10), VP8, rtx=False)
    await track.on_rtp(packet(0x9999, 11), VP8, rtx=False)  # another SSRC: ignored
    await track.on_rtp(packet(0x1234, 9), VP8, rtx=True)  # retransmission of the media SSRC
    assert track.media_ssrc == 0x1234
    assert sink.packets == [(10, ("t1", 0x1234)), (9, ("t1", 0x1234))]


async def test_keyframe_requests_are_relayed_at_most_once_per_interval() -> None:
    now = [100.0]
    track = PublishedTrack("t1", "alice", "video", clock=lambda: now[0])
    track.primary_payload_type = 96
    receiver = FakeReceiver()
    track.receiver = receiver  # type: ignore[assignment]

    assert not track.request_keyframe()  # SSRC not known yet: remembered
    await track.on_rtp(packet(0x1234, 1), VP8, rtx=False)
    await asyncio.sleep(0)
    assert receiver.plis == [0x1234]

    for _ in range(10):  # ten subscribers asking at once
        track.request_keyframe()
    now[0] += KEYFRAME_REQUEST_INTERVAL / 2
    assert not track.request_keyframe()
    now[0] += KEYFRAME_REQUEST_INTERVAL
    assert track.request_keyframe()
    await asyncio.sleep(0)
    assert receiver.plis == [0x1234, 0x1234]


async def test_audio_tracks_never_ask_for_keyframes() -> None:
    track = PublishedTrack("t2", "alice", "audio")
    track.receiver = FakeReceiver()  # type: ignore[assignment]
    track.media_ssrc = 1
    assert not track.request_keyframe()
