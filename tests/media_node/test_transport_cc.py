"""Transport-wide feedback: what the SFU builds decodes to exactly the arrivals it recorded,
and a publisher that offers transport-cc gets it answered."""

from __future__ import annotations

import random

import pytest
from aiortc.sdp import SessionDescription

from media_node import transport_cc
from media_node.transport_cc import TransportWideFeedback, parse_feedback
from rtcfleet.client.peer import ClientPeer
from tests.media_node.conftest import ROOM, Conference

pytestmark = pytest.mark.timeout(60)


def decode(packets: list[bytes]) -> tuple[dict[int, int], list[int]]:
    arrivals: dict[int, int] = {}
    reported: list[int] = []
    for data in packets:
        feedback = parse_feedback(data)
        assert len(data) % 4 == 0 and len(data) < 1400
        reported += [(feedback.base_sequence + i) % 65536 for i in range(feedback.count)]
        arrivals |= feedback.arrivals
    return arrivals, reported


def test_every_arrival_round_trips_with_losses_reordering_and_wrap() -> None:
    rng = random.Random(7)
    feedback = TransportWideFeedback()
    sent = [(65000 + i) % 65536 for i in range(3000)]
    received = [s for s in sent if rng.random() > 0.05]
    order = received[:]
    for i in range(0, len(order) - 1, 17):  # local reordering
        order[i], order[i + 1] = order[i + 1], order[i]
    now = 10_000_000
    times = {}
    for seq in order:
        now += rng.choice([0, 250, 1000, 5000, 90_000])  # up to 90 ms gaps
        times[seq] = now
        feedback.record(seq, now)
    arrivals, reported = decode(feedback.build(sender_ssrc=1, media_ssrc=2))
    assert reported == sent[sent.index(received[0]) : sent.index(received[-1]) + 1]
    assert set(arrivals) == set(received)
    for seq, at in times.items():
        assert abs(arrivals[seq] - at) < transport_cc.TICK_US  # 250 us resolution


def test_consecutive_feedbacks_continue_and_ignore_late_packets() -> None:
    feedback = TransportWideFeedback()
    for seq in (10, 11, 13):
        feedback.record(seq, 1_000_000 + seq * 1000)
    first, _ = decode(feedback.build(1, 2))
    feedback.record(12, 1_050_000)  # reported lost already
    feedback.record(15, 1_060_000)
    packets = feedback.build(1, 2)
    second, reported = decode(packets)
    assert set(first) == {10, 11, 13}
    assert reported == [14, 15] and set(second) == {15}
    assert parse_feedback(packets[0]).feedback_count == 1
    assert feedback.build(1, 2) == []


def test_a_gap_longer_than_a_delta_starts_a_new_packet() -> None:
    feedback = TransportWideFeedback()
    feedback.record(1, 1_000_000)
    feedback.record(2, 1_000_000 + 20_000_000)  # 20 s later: beyond a 16-bit delta
    packets = feedback.build(1, 2)
    arrivals, _ = decode(packets)
    assert len(packets) == 2
    assert arrivals == {1: 1_000_000, 2: 21_000_000}


async def test_a_publisher_offering_transport_cc_gets_it_answered(conference) -> None:
    conf: Conference = conference()
    client = conf.peers["alice"] = ClientPeer("alice")
    await conf.sfu.join(ROOM, "alice", can_publish=True, can_subscribe=False)
    offer = await client.create_publish_offer()
    munged = offer.replace(
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n",
        f"a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:5 {transport_cc.URI}\r\n",
    )
    assert munged.count(transport_cc.URI) == 2
    answer = await conf.sfu.publish_offer(ROOM, "alice", munged)
    for media in SessionDescription.parse(answer).media:
        assert (5, transport_cc.URI) in [(h.id, h.uri) for h in media.rtp.headerExtensions]
        primary = media.rtp.codecs[0]
        assert "transport-cc" in [fb.type for fb in primary.rtcpFeedback], media.kind
    publisher = conf.sfu.room(ROOM).participants["alice"].publisher
    assert publisher is not None and publisher.transport_cc
    conf.check_errors()
