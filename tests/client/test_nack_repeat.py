"""A receiver asks again for a packet still missing a round later (aiortc asks once per gap)."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

from media_node import rtp_hooks

MEDIA_SSRC = 0x1234
RTX_SSRC = 0x5678


async def test_a_packet_still_missing_is_nacked_again_until_it_arrives() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        setattr(receiver, "_RTCRtpReceiver__started", True)  # noqa: B010
        streams = getattr(receiver, "_RTCRtpReceiver__remote_streams")  # noqa: B009
        streams[MEDIA_SSRC] = StreamStatistics(90000)
        streams[RTX_SSRC] = StreamStatistics(90000)
        getattr(receiver, "_RTCRtpReceiver__rtx_ssrc")[RTX_SSRC] = MEDIA_SSRC  # noqa: B009
        generator = getattr(receiver, "_RTCRtpReceiver__nack_generator")  # noqa: B009
        sent: list[tuple[int, list[int]]] = []

        async def send_nack(media_ssrc: int, lost: list[int]) -> None:
            sent.append((media_ssrc, lost))

        receiver._send_rtcp_nack = send_nack  # type: ignore[method-assign]
        for seq in (10, 13):  # 11 and 12 lost
            generator.add(RtpPacket(sequence_number=seq, ssrc=MEDIA_SSRC))

        missing = await rtp_hooks.repeat_nacks(receiver, set())
        assert missing == {11, 12} and sent == []  # aiortc has just asked for them itself
        generator.add(RtpPacket(sequence_number=11, ssrc=MEDIA_SSRC))  # 11 retransmitted
        missing = await rtp_hooks.repeat_nacks(receiver, missing)
        assert sent == [(MEDIA_SSRC, [12])]
        missing = await rtp_hooks.repeat_nacks(receiver, missing)
        assert sent[-1] == (MEDIA_SSRC, [12]) and len(sent) == 2
        generator.add(RtpPacket(sequence_number=12, ssrc=MEDIA_SSRC))
        assert await rtp_hooks.repeat_nacks(receiver, missing) == set()
        assert len(sent) == 2
    finally:
        setattr(receiver, "_RTCRtpReceiver__started", False)  # noqa: B010
        await pc.close()
