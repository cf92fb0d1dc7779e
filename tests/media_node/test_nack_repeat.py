"""The node asks a publisher again for a video packet that is still missing.

aiortc's receiver sends a NACK only when a new gap opens; when that NACK (or the retransmission
it asks for) is lost, the packet waits for the next gap, which on a clean path may never come.
With transport-wide feedback negotiated, the node's publisher repeats the NACK every 100 ms
(``Publisher._send_feedback``). Here one video packet of a real aiortc publisher never arrives
and the publisher ignores the first request for it: only a repeated NACK brings it back.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket, RtpPacket, is_rtcp

from media_node import transport_cc
from rtcfleet.client.peer import ClientPeer
from tests.media_node.conftest import ROOM, Conference, wait_until

pytestmark = pytest.mark.timeout(60)

# how long the lost packet is watched: its first NACK, then a repeat within 100-200 ms
WATCH_S = 2.0


class LosingPublisher:
    """Drops one video packet of ``sender`` on its way out, and the first NACK that asks for
    it on its way in; counts every NACK and retransmission of that packet."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.sender = sender
        self.target: int | None = None
        self.armed = False
        self.nacks: Counter[int] = Counter()
        self.retransmitted: Counter[int] = Counter()
        transport = sender.transport
        send_rtp, handle_rtcp = transport._send_rtp, sender._handle_rtcp_packet

        async def send(data: bytes) -> None:
            if is_rtcp(data):  # the sender's reports take the same way out
                await send_rtp(data)
                return
            packet = RtpPacket.parse(data)
            if packet.ssrc == sender._ssrc:
                if self.armed and self.target is None:
                    self.target = packet.sequence_number
                    return  # lost on the way
                if packet.sequence_number == self.target:  # sent again without RTX
                    self.retransmitted[packet.sequence_number] += 1
            elif packet.ssrc == sender._rtx_ssrc and len(packet.payload) >= 2:
                self.retransmitted[int.from_bytes(packet.payload[:2], "big")] += 1
            await send_rtp(data)

        async def receive(packet: Any) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self.nacks.update(packet.lost)
                if self.target in packet.lost and self.nacks[self.target] == 1:
                    lost = [seq for seq in packet.lost if seq != self.target]
                    packet = RtcpRtpfbPacket(packet.fmt, packet.ssrc, packet.media_ssrc, lost)
            await handle_rtcp(packet)

        transport._send_rtp = send  # type: ignore[method-assign]
        sender._handle_rtcp_packet = receive  # type: ignore[method-assign]


async def test_a_lost_video_packet_whose_first_nack_is_lost_is_asked_for_again(
    conference: Any,
) -> None:
    conf: Conference = conference()
    client = conf.peers["alice"] = ClientPeer("alice", width=320, height=180, fps=15)
    await conf.sfu.join(ROOM, "alice", can_publish=True, can_subscribe=False)
    offer = await client.create_publish_offer()
    # aiortc does not offer transport-wide feedback; the node repeats NACKs where it is on
    munged = offer.replace(
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n",
        f"a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:5 {transport_cc.URI}\r\n",
    )
    await client.apply_publish_answer(await conf.sfu.publish_offer(ROOM, "alice", munged))
    publisher = conf.sfu.room(ROOM).participants["alice"].publisher
    assert publisher is not None and publisher.transport_cc
    video = next(s for s in client.publisher_pc.getSenders() if s.track and s.track.kind == "video")
    losing = LosingPublisher(video)
    track = next(t for t in publisher.tracks.values() if t.kind == "video")
    await wait_until(lambda: track.media_ssrc is not None, 15, "video at the node")
    await asyncio.sleep(0.5)
    losing.armed = True
    await wait_until(lambda: losing.target is not None, 5, "a video packet dropped")
    target = losing.target
    assert target is not None
    await asyncio.sleep(WATCH_S)
    print(
        f"packet {target}: {losing.nacks[target]} NACKs reached the publisher, "
        f"{losing.retransmitted[target]} retransmissions"
    )
    assert losing.nacks[target] >= 2, "the lost packet was asked for once only"
    assert losing.retransmitted[target] >= 1, "the repeated NACK brought no retransmission"
    # recovered: the node stops asking
    asked = losing.nacks[target]
    await asyncio.sleep(0.5)
    assert losing.nacks[target] == asked
    conf.check_errors()
