"""A subscriber on a lossy path keeps decoding: lost video packets come back as RTX.

Two publishers and one subscriber through the in-process SFU (the same `Sfu` a worker runs);
the subscriber's UDP socket drops 5 % of the datagrams it sends and receives, as the
impairment benchmark's bridge does. Two publishers matter: the subscriber connection then
receives two videos whose RTX share one payload type, which is where retransmissions used to
be discarded (aiortc routes RTX by payload type alone) and the video froze for the rest of
the run.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from media_node import rtp_hooks
from tests.media_node.conftest import ROOM, Conference, wait_until

pytestmark = pytest.mark.timeout(90)

LOSS = 0.05
WINDOW = 12.0
IN_FLIGHT = 15  # frames still on their way when the window closes (1 s at 15 fps)


class _LossySend:
    """A datagram transport that drops a share of what is sent through it."""

    def __init__(self, transport: Any, rng: random.Random, counts: dict[str, int]) -> None:
        self._transport, self._rng, self._counts = transport, rng, counts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def sendto(self, data: bytes, addr: Any = None) -> None:
        if self._rng.random() < LOSS:
            self._counts["dropped"] += 1
            return
        self._transport.sendto(data, addr)


def drop_udp(pc: RTCPeerConnection, rng: random.Random, counts: dict[str, int]) -> None:
    """Lose `LOSS` of every datagram `pc` sends or receives, at random."""
    for protocol in rtp_hooks.ice_protocols(pc):
        received = protocol.datagram_received

        def lossy_receive(data: bytes, addr: Any, received: Any = received) -> None:
            if rng.random() < LOSS:
                counts["dropped"] += 1
                return
            received(data, addr)

        protocol.datagram_received = lossy_receive  # type: ignore[method-assign,assignment]
        protocol.transport = _LossySend(protocol.transport, rng, counts)  # type: ignore[assignment]


async def test_a_subscriber_under_5_percent_loss_keeps_its_video(conference) -> None:
    conf: Conference = conference()
    alice = await conf.add("alice", width=320, height=180, fps=15)
    await conf.add("bob", width=320, height=180, fps=15)
    viewer = await conf.add("viewer", publish=False)
    await wait_until(
        lambda: all(
            (s := viewer.received(name, "video")) is not None and s.frames_decoded > 5
            for name in ("alice", "bob")
        ),
        20,
        "the viewer decoding both publishers",
    )
    counts = {"dropped": 0}
    drop_udp(viewer.subscriber_pc, random.Random(23), counts)
    stats = viewer.received("alice", "video")
    assert stats is not None and alice.video_track is not None
    stats.longest_gap_s = 0.0
    first = alice.video_track.last_sequence_number + 1
    await asyncio.sleep(WINDOW)
    last = alice.video_track.last_sequence_number - IN_FLIGHT
    share = stats.received_between(first, last) / (last - first + 1)
    assert stats.last_frame_at is not None
    # a freeze still going on at the end of the window counts
    freeze = max(stats.longest_gap_s, time.monotonic() - stats.last_frame_at)
    room = conf.sfu.room(ROOM)
    track = next(t for t in room.tracks() if t.publisher == "alice" and t.kind == "video")
    subscriber = room.participants["viewer"].subscriber
    slot = subscriber.downtrack_for(track) if subscriber is not None else None
    assert slot is not None and slot.forwarder is not None
    retransmitted = slot.forwarder.stats.retransmitted
    print(
        f"frames {share:.1%}, longest freeze {freeze:.2f} s, "
        f"{counts['dropped']} datagrams dropped, {retransmitted} retransmitted"
    )
    assert counts["dropped"] > 20
    assert retransmitted > 0
    assert share >= 0.95, f"decoded {share:.1%} of alice's frames under {LOSS:.0%} loss"
    # before RTX reached the receiver, the first unrecovered packet froze the rest of the window
    assert freeze < 3.0, f"froze for {freeze:.1f} s"
    conf.check_errors()
