"""A participant whose subscriber connection closed (its client closed its side to rejoin, and
aiortc then closes ours) must not stop anyone else's publish or leave, nor its own leave."""

from __future__ import annotations

from tests.media_node.conftest import ROOM, Conference


async def test_a_closed_subscriber_connection_stops_no_one_else(conference) -> None:
    conf: Conference = conference()
    await conf.sfu.join(ROOM, "gone", can_publish=False, can_subscribe=True)
    room = conf.sfu.room(ROOM)
    subscriber = room.participants["gone"].subscriber
    assert subscriber is not None
    await subscriber.pc.close()

    # a newcomer's publish is answered although one subscriber cannot take its tracks
    speaker = await conf.add("speaker", subscribe=False)
    assert speaker.publisher_pc.signalingState == "stable"
    assert len(room.tracks()) == 2

    # its leave completes: tracks unpublished, connection closed, the room told
    await conf.remove("speaker")
    assert (ROOM, "speaker", "participant_left", {}) in conf.events
    assert room.tracks() == []

    # and the closed participant's own leave empties the room
    await conf.sfu.leave(ROOM, "gone")
    assert conf.sfu.rooms() == []
