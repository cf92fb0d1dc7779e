"""The hook layer: pinned aiortc, and hooks that only ever apply to objects not yet started."""

from __future__ import annotations

import aiortc
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from media_node import rtp_hooks


class NullSink:
    async def on_rtp(self, packet, codec, rtx) -> None:  # pragma: no cover - never called
        raise AssertionError


class NullFeedback:
    def on_started(self, sender) -> None:
        pass

    def on_keyframe_request(self) -> None:
        pass

    async def on_nack(self, lost) -> None:
        pass


def test_aiortc_is_the_version_the_hooks_were_written_for() -> None:
    assert aiortc.__version__ == rtp_hooks.AIORTC_VERSION


async def test_hooks_swap_the_class_of_one_object_only() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        hooked = pc.addTransceiver("video", direction="sendonly")
        plain = pc.addTransceiver("video", direction="sendonly")
        receiver = rtp_hooks.make_forwarding_receiver(hooked.receiver, NullSink(), lambda: 1)
        sender = rtp_hooks.make_forwarding_sender(hooked.sender, NullFeedback())
        assert isinstance(receiver, rtp_hooks.ForwardingReceiver)
        assert isinstance(sender, rtp_hooks.ForwardingSender)
        assert type(plain.receiver) is aiortc.RTCRtpReceiver
        assert type(plain.sender) is aiortc.RTCRtpSender
        assert not receiver.decoder_started and not sender.encoder_created
        rtp_hooks.set_msid(sender, "alice", "track-1")
        offer = await pc.createOffer()
        assert "a=msid:alice track-1" in offer.sdp
    finally:
        await pc.close()


async def test_started_objects_are_refused() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("audio")
        setattr(transceiver.receiver, "_RTCRtpReceiver__started", True)  # noqa: B010
        setattr(transceiver.sender, "_RTCRtpSender__started", True)  # noqa: B010
        with pytest.raises(RuntimeError):
            rtp_hooks.make_forwarding_receiver(transceiver.receiver, NullSink(), lambda: 1)
        with pytest.raises(RuntimeError):
            rtp_hooks.make_forwarding_sender(transceiver.sender, NullFeedback())
        setattr(transceiver.receiver, "_RTCRtpReceiver__started", False)  # noqa: B010
        setattr(transceiver.sender, "_RTCRtpSender__started", False)  # noqa: B010
    finally:
        await pc.close()
