"""The SFU's video bitrate cap reaches a real aiortc publisher through REMB."""

from __future__ import annotations

import pytest

from media_node import rtp_hooks
from media_node.sfu import InvalidBitrate, SfuConfig
from tests.media_node.conftest import ROOM, Conference, wait_until

pytestmark = pytest.mark.timeout(60)


async def test_publisher_encoder_follows_the_cap(conference) -> None:
    conf: Conference = conference(SfuConfig(max_video_bitrate=400_000))
    alice = await conf.add("alice", noise_rows=48)
    sender = alice.video_sender
    assert sender is not None
    rembs: list[int] = []
    rtp_hooks.watch_remb(sender, rembs.append)
    bob = await conf.add("bob", publish=False)
    await wait_until(lambda: bool(bob.received("alice", "video")), 20, "bob decoding alice")

    def target() -> int:
        return rtp_hooks.encoder_target_bitrate(sender) or 0

    await wait_until(lambda: len(rembs) >= 3 and 0 < target() <= 400_000, 15, "a capped target")
    track = next(t for t in conf.sfu.room(ROOM).tracks() if t.kind == "video")
    receiver = track.receiver
    assert receiver is not None
    print(f"estimate {receiver.last_estimate}, REMBs {rembs[:5]}, target {target()}")
    assert max(rembs) <= 400_000
    await wait_until(lambda: (receiver.last_estimate or 0) > 400_000, 15, "estimate > cap")
    assert max(rembs) <= 400_000  # the estimator would allow more: the cap is what binds

    # lowered live: the publisher hears it at once and its encoder follows
    conf.sfu.set_max_video_bitrate(260_000)
    count = len(rembs)
    await wait_until(lambda: len(rembs) > count and target() <= 260_000, 10, "the lower cap")
    assert max(rembs[count:]) <= 260_000
    print(f"after lowering: REMBs {rembs[count : count + 5]}, target {target()}")
    await wait_until(lambda: bob.received("alice", "video").frames_decoded > 60, 10, "frames")  # type: ignore[union-attr]
    conf.check_errors()


async def test_invalid_cap_is_refused(conference) -> None:
    conf: Conference = conference()
    with pytest.raises(InvalidBitrate):
        conf.sfu.set_max_video_bitrate(0)
