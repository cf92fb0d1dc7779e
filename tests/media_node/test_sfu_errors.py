"""Named errors for what the SFU refuses."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from media_node.sfu import (
    CodecNotAllowed,
    PublishNotAllowed,
    SfuConfig,
    SubscribeNotAllowed,
    UnknownParticipant,
    UnknownRoom,
)
from rtcfleet.client.peer import ClientPeer
from tests.media_node.conftest import ROOM, Conference


async def test_grants_and_membership(conference) -> None:
    conf: Conference = conference()
    viewer = ClientPeer("viewer")
    conf.peers["viewer"] = viewer
    await conf.sfu.join(ROOM, "viewer", can_publish=False, can_subscribe=True)
    await conf.sfu.join(ROOM, "speaker", can_publish=True, can_subscribe=False)
    with pytest.raises(PublishNotAllowed):
        await conf.sfu.publish_offer(ROOM, "viewer", await viewer.create_publish_offer())
    with pytest.raises(SubscribeNotAllowed):
        await conf.sfu.subscriber_answer(ROOM, "speaker", "v=0")
    with pytest.raises(UnknownParticipant):
        await conf.sfu.publish_offer(ROOM, "ghost", "v=0")
    await conf.sfu.join("x", "a", can_publish=True, can_subscribe=True)
    with pytest.raises(UnknownRoom):
        await conf.sfu.leave("nowhere", "a")
    assert conf.sfu.rooms() == [ROOM, "x"]
    await conf.sfu.close_room("x")
    assert conf.sfu.rooms() == [ROOM]
    await conf.sfu.leave(ROOM, "viewer")
    assert conf.events[-1] == (ROOM, "viewer", "participant_left", {})


async def test_offer_without_an_allowed_codec_is_refused(conference) -> None:
    conf: Conference = conference(SfuConfig(allowed_codecs=("VP8", "opus")))
    await conf.sfu.join(ROOM, "h264", can_publish=True, can_subscribe=False)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video", direction="sendonly")
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
        )
        await pc.setLocalDescription(await pc.createOffer())
        with pytest.raises(CodecNotAllowed):
            await conf.sfu.publish_offer(ROOM, "h264", pc.localDescription.sdp)
    finally:
        await pc.close()
