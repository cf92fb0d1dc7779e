"""A keyframe that answers a request lets the next subscriber's request through at once: the
rate limit holds back only requests made while one is still outstanding."""

from __future__ import annotations

import asyncio

from media_node.publisher import KEYFRAME_REQUEST_INTERVAL, PublishedTrack
from tests.media_node.test_published_track import VP8, FakeReceiver, packet

DELTA = b"\x10\x01delta"  # S bit, partition 0, then a frame header with P set: interframe
KEY = b"\x10\x00key"


async def test_a_keyframe_answers_the_outstanding_request() -> None:
    now = [100.0]
    track = PublishedTrack("t1", "alice", "video", clock=lambda: now[0])
    track.primary_payload_type = 96
    receiver = FakeReceiver()
    track.receiver = receiver  # type: ignore[assignment]
    await track.on_rtp(packet(0x1234, 1, DELTA), VP8, rtx=False)

    assert track.request_keyframe()
    now[0] += KEYFRAME_REQUEST_INTERVAL / 10
    await track.on_rtp(packet(0x1234, 2, DELTA), VP8, rtx=False)
    assert not track.request_keyframe()  # still outstanding
    await track.on_rtp(packet(0x1234, 3, KEY), VP8, rtx=False)
    assert track.request_keyframe()  # answered: a new subscriber asks at once
    await track.on_rtp(packet(0x5678, 4, KEY), VP8, rtx=False)  # another SSRC answers nothing
    assert not track.request_keyframe()
    await asyncio.sleep(0)
    assert receiver.plis == [0x1234, 0x1234]
