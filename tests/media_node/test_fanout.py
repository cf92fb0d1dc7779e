"""The batched fan-out: the bytes each subscriber gets, and frames decoded through the SFU on
both send paths (sendmmsg and the pure-Python fallback)."""

from __future__ import annotations

import random

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters as Ext
from aiortc.rtp import HeaderExtensions, RtpPacket

from media_node import datagram_batch
from media_node.datagram_batch import DatagramBatch
from media_node.fanout import fan_out
from media_node.forwarder import Forwarder, OutputStream
from media_node.publisher import PublishedTrack
from media_node.rtp_header import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, MID_URI, TOFFSET_URI
from media_node.subscriber import SubscriberDownTrack
from tests.media_node.conftest import ROOM, Conference, wait_until

pytestmark = pytest.mark.timeout(60)

KEY = b"\x10\x00\x00\x9d\x01\x2a" + bytes(40)
LAYOUTS = [
    ({MID_URI: 1, ABS_SEND_TIME_URI: 3}, "0", 96, 0x1111),
    ({MID_URI: 1, ABS_SEND_TIME_URI: 3}, "1", 96, 0x2222),  # another MID: another tail
    ({MID_URI: 4, ABS_SEND_TIME_URI: 9, TOFFSET_URI: 14, AUDIO_LEVEL_URI: 2}, "17", 100, 0x3333),
    ({MID_URI: 1, ABS_SEND_TIME_URI: 3}, "0", 98, 0x4444),  # same tail as the first
    ({MID_URI: 15}, "2", 96, 0x5555),  # beyond the one-byte form: aiortc's serializer
]


def stream(ids: dict[str, int], mid: str, pt: int, ssrc: int) -> OutputStream:
    return OutputStream(
        kind="video",
        ssrc=ssrc,
        payload_type=pt,
        clock_rate=90000,
        mid=mid,
        header_extensions=tuple(Ext(id=i, uri=u) for u, i in ids.items()),
    )


async def test_each_subscriber_gets_what_its_own_forwarder_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(SubscriberDownTrack, "active", True)
    pc = RTCPeerConnection()
    queued: dict[int, list[bytes]] = {}
    downtracks, references = [], []
    for ids, mid, pt, ssrc in LAYOUTS:
        downtrack = SubscriberDownTrack(pc.addTransceiver("video"), "video", lambda b, p: None)
        downtrack.forwarder = Forwarder(stream(ids, mid, pt, ssrc), first_sequence_number=7,
                                        first_timestamp=9)  # fmt: skip
        references.append(Forwarder(stream(ids, mid, pt, ssrc), first_sequence_number=7,
                                    first_timestamp=9))  # fmt: skip

        def capture(data: bytes, *_: object, ssrc: int = ssrc) -> bool:
            queued.setdefault(ssrc, []).append(data)
            return True

        monkeypatch.setattr(downtrack.sender, "queue_rtp", capture)
        downtracks.append(downtrack)
    rng = random.Random(5)
    batch = DatagramBatch(use_sendmmsg=False)
    expected: dict[int, list[bytes]] = {}
    for i in range(120):
        packet = RtpPacket(
            payload_type=100, marker=rng.random() < 0.3, sequence_number=(65500 + i) % 65536,
            timestamp=3000 * (i // 3), ssrc=7,
            payload=KEY if i == 0 else rng.randbytes(rng.randrange(1, 1100)),
        )  # fmt: skip
        packet.csrc = [rng.randrange(1 << 32)] if rng.random() < 0.1 else []
        packet.extensions = HeaderExtensions(
            abs_send_time=rng.randrange(1 << 24) if rng.random() < 0.8 else None,
            transmission_offset=rng.randrange(-1000, 1000) if rng.random() < 0.5 else None,
            audio_level=(rng.random() < 0.5, rng.randrange(128)) if rng.random() < 0.5 else None,
            mid="99",
        )
        fan_out(packet, "pub", downtracks, batch)
        for reference in references:
            data = reference.forward(packet, "pub")
            assert data is not None
            expected.setdefault(reference.stream.ssrc, []).append(data)
    assert queued == expected
    await pc.close()


@pytest.mark.parametrize(
    "use_sendmmsg",
    [
        pytest.param(True, marks=pytest.mark.skipif(not datagram_batch.sendmmsg_available(),
                                                    reason="no sendmmsg on this platform")),
        False,
    ],
)  # fmt: skip
async def test_subscribers_decode_through_either_send_path(
    conference, monkeypatch: pytest.MonkeyPatch, use_sendmmsg: bool
) -> None:
    monkeypatch.setenv(datagram_batch.ENVIRONMENT, "1" if use_sendmmsg else "0")
    # every subscriber has a socket of its own: sendmmsg even for one datagram per socket
    monkeypatch.setattr(datagram_batch, "MIN_SENDMMSG", 1)
    conf: Conference = conference()
    publisher = await conf.add("alice", subscribe=False)
    viewers = [await conf.add(name, publish=False) for name in ("bob", "carol")]

    def decoded(kind: str, frames: int) -> bool:
        return all(
            (s := v.received("alice", kind)) is not None and s.frames_decoded >= frames
            for v in viewers
        )

    await wait_until(lambda: decoded("video", 30) and decoded("audio", 20), 30, "media decoded")
    tracks: list[PublishedTrack] = conf.sfu.room(ROOM).tracks()
    assert {t.batch.use_sendmmsg for t in tracks} == {use_sendmmsg}
    assert all(t.batch.system_calls > 0 and t.batch.dropped == 0 for t in tracks)
    for viewer in viewers:
        video = viewer.received("alice", "video")
        assert video is not None and (video.width, video.height) == (640, 360)
    assert publisher.video_track is not None
    conf.check_errors()
