"""Connections a client closed (to rejoin, or to start over; aiortc then closes the server's
side too) must not stop anyone else's publish or leave, nor the participant's own next offer
or leave."""

from __future__ import annotations

from rtcfleet.client.peer import ClientPeer
from tests.media_node.conftest import ROOM, Conference, wait_until


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


async def test_an_offer_after_the_client_closed_its_publisher_starts_a_new_connection(
    conference,
) -> None:
    conf: Conference = conference()
    first = await conf.add("speaker", subscribe=False)
    room = conf.sfu.room(ROOM)
    publisher = room.participants["speaker"].publisher
    assert publisher is not None
    await wait_until(lambda: publisher.pc.connectionState == "connected", 20, "connected")
    await first.close()  # the client starts over: its connections close, and so do ours
    await wait_until(lambda: publisher.pc.signalingState == "closed", 10, "our side closed")

    again = ClientPeer("speaker")
    conf.peers["speaker"] = again
    answer = await conf.sfu.publish_offer(ROOM, "speaker", await again.create_publish_offer())
    await again.apply_publish_answer(answer)
    fresh = room.participants["speaker"].publisher
    assert fresh is not None and fresh is not publisher
    assert len(room.tracks()) == 2
