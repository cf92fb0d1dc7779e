"""Real aiortc peers through the SFU over loopback: what every participant decodes."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from media_node import rtp_hooks
from rtcfleet.client.peer import ClientPeer
from tests.media_node.conftest import ROOM, Conference, wait_until

pytestmark = pytest.mark.timeout(90)

WINDOW = 5.0
DRAIN = 1.0


def sent(peer: ClientPeer) -> int:
    assert peer.video_track is not None
    return peer.video_track.last_sequence_number


async def decoded_ratios(
    receivers: list[ClientPeer], publishers: list[ClientPeer], window: float
) -> dict[tuple[str, str], float]:
    """Share of each publisher's frames sent during `window` that each receiver decoded."""
    start = {p.name: sent(p) for p in publishers}
    await asyncio.sleep(window)
    end = {p.name: sent(p) for p in publishers}
    await asyncio.sleep(DRAIN)
    ratios = {}
    for receiver, publisher in itertools.product(receivers, publishers):
        if receiver is publisher:
            continue
        stats = receiver.received(publisher.name, "video")
        first, last = start[publisher.name] + 1, end[publisher.name]
        got = stats.received_between(first, last) if stats else 0
        ratios[(receiver.name, publisher.name)] = got / max(1, last - first + 1)
    return ratios


def all_video_flowing(peers: list[ClientPeer]) -> bool:
    return all(
        (s := r.received(p.name, "video")) is not None and s.frames_decoded > 0
        for r, p in itertools.permutations(peers, 2)
    )


async def test_three_peers_decode_each_other_without_transcoding(conference) -> None:
    conf: Conference = conference()
    peers = [await conf.add(name) for name in ("alice", "bob", "carol")]
    await wait_until(lambda: all_video_flowing(peers), 20, "video between all peers")
    # video can start before audio's first decoded frame now that keyframes come at once
    await wait_until(
        lambda: all(r.received(p.name, "audio") for r, p in itertools.permutations(peers, 2)),
        10,
        "audio between all peers",
    )
    audio_before = {
        (r.name, p.name): r.received(p.name, "audio").frames_decoded  # type: ignore[union-attr]
        for r, p in itertools.permutations(peers, 2)
    }

    ratios = await decoded_ratios(peers, peers, WINDOW)

    print(
        "decoded share of sent frames:", {f"{r}<-{p}": round(v, 3) for (r, p), v in ratios.items()}
    )
    assert min(ratios.values()) >= 0.9, ratios
    for r, p in itertools.permutations(peers, 2):
        video = r.received(p.name, "video")
        assert video is not None and (video.width, video.height) == (640, 360)
        audio = r.received(p.name, "audio")
        assert audio is not None and audio.frames_decoded > audio_before[(r.name, p.name)] + 100
    conf.check_errors()

    # nothing on the SFU decoded or encoded: its receivers never started a decoder thread nor
    # queued a frame, its senders never created an encoder
    room = conf.sfu.room(ROOM)
    receivers = [t.receiver for t in room.tracks() if t.receiver is not None]
    senders = [
        s.sender
        for p in room.participants.values()
        if p.subscriber
        for s in p.subscriber.downtracks
    ]
    assert len(receivers) == 6 and len(senders) == 12
    assert all(isinstance(r, rtp_hooks.ForwardingReceiver) for r in receivers)
    assert not any(r.decoder_started or r.queued_frames for r in receivers)
    assert all(isinstance(s, rtp_hooks.ForwardingSender) for s in senders)
    assert not any(s.encoder_created for s in senders)
    load = conf.sfu.load()
    assert (load.rooms, load.participants, load.forwarded_streams) == (1, 3, 12)
    assert load.bitrate_out_bps > 0 and load.packets_forwarded > 0


async def test_subscriber_receives_the_publishers_payload_bytes(conference) -> None:
    conf: Conference = conference()
    alice = await conf.add("alice")
    sent_payloads: set[bytes] = set()
    assert alice.video_sender is not None
    rtp_hooks.watch_sent_rtp(alice.video_sender, lambda packet: sent_payloads.add(packet.payload))
    bob = await conf.add("bob", publish=False)
    await wait_until(lambda: bool(bob.received("alice", "video")), 20, "bob decoding alice")
    transceiver = next(t for t in bob.subscriber_pc.getTransceivers() if t.kind == "video")
    received: list[bytes] = []
    rtp_hooks.watch_received_rtp(
        transceiver.receiver, lambda packet: received.append(packet.payload)
    )
    await asyncio.sleep(2)

    assert len(received) > 30
    matched = sum(1 for payload in received if payload in sent_payloads)
    print(f"{matched}/{len(received)} received payloads identical to sent ones")
    assert matched == len(received)
    conf.check_errors()


async def test_late_joiner_gets_a_keyframe_at_once(conference) -> None:
    conf: Conference = conference()
    alice = await conf.add("alice")
    bob = await conf.add("bob")
    await wait_until(lambda: all_video_flowing([alice, bob]), 20, "alice and bob")
    await asyncio.sleep(1.5)  # well past alice's first keyframe; the next one is ~100 s away
    track = next(
        t for t in conf.sfu.room(ROOM).tracks() if t.publisher == "alice" and t.kind == "video"
    )
    plis_before = track.keyframe_requests_sent

    carol = await conf.add("carol", publish=False)
    await wait_until(lambda: carol.subscriber_pc.connectionState == "connected", 15, "carol")
    connected_at = sent(alice)
    await wait_until(lambda: bool(carol.received("alice", "video")), 10, "carol decoding")
    stats = carol.received("alice", "video")
    assert stats is not None
    await wait_until(lambda: len(stats.sequence_numbers) >= 30, 10, "30 frames at carol")

    first = min(stats.sequence_numbers)
    print(f"carol's first decoded frame: alice's #{first}, {first - connected_at} after connecting")
    assert track.keyframe_requests_sent > plis_before
    assert first - connected_at <= 30  # a keyframe was produced on request, not by the GOP
    assert (stats.width, stats.height) == (640, 360)
    conf.check_errors()


async def test_leaving_renegotiates_and_the_others_keep_going(conference) -> None:
    conf: Conference = conference()
    alice = await conf.add("alice")
    bob = await conf.add("bob")
    carol = await conf.add("carol")
    dave = await conf.add("dave", publish=False)
    everyone = [alice, bob, carol]
    await wait_until(lambda: all_video_flowing(everyone), 20, "video between all peers")
    await wait_until(lambda: dave.active_publishers() == {"alice", "bob", "carol"}, 10, "dave")
    room = conf.sfu.room(ROOM)
    offers_before = {p.name: p.subscriber_offers for p in (alice, bob)}

    # a subscribe-only participant leaves: only its own streams stop
    assert conf.sfu.load().forwarded_streams == 18
    await conf.remove("dave")
    assert conf.sfu.load().forwarded_streams == 12
    # a publisher leaves: everyone still there is re-offered without carol's tracks
    await conf.remove("carol")
    await wait_until(
        lambda: all(p.active_publishers() == {"alice", "bob"} - {p.name} for p in (alice, bob)),
        10,
        "re-offers without carol",
    )
    assert all(p.subscriber_offers > offers_before[p.name] for p in (alice, bob))
    assert conf.sfu.load().forwarded_streams == 4
    assert ("room-1", "carol", "participant_left", {}) in conf.events
    unpublished = [e for e in conf.events if e[2] == "track_unpublished" and e[1] == "carol"]
    assert {e[3]["kind"] for e in unpublished} == {"audio", "video"}

    ratios = await decoded_ratios([alice, bob], [alice, bob], 2.0)
    print("after carol left:", ratios)
    assert min(ratios.values()) >= 0.9, ratios

    # a new publisher recycles carol's inactive m-lines: no new m-lines, and the recycled
    # stream continues with the same SSRC while alice decodes erin's frames
    subscriber = room.participants["alice"].subscriber
    assert subscriber is not None
    downtracks_before = len(subscriber.downtracks)
    erin = await conf.add("erin")
    await wait_until(lambda: bool(alice.received("erin", "video")), 15, "alice decoding erin")
    assert len(subscriber.downtracks) == downtracks_before
    recycled = next(
        s
        for s in subscriber.downtracks
        if s.track and s.track.publisher == "erin" and s.kind == "video"
    )
    assert recycled.forwarder is not None and len(recycled.forwarder.stats.sources) == 2
    ratios = await decoded_ratios([alice, bob, erin], [alice, bob, erin], 2.0)
    print("after erin joined:", ratios)
    assert min(ratios.values()) >= 0.9, ratios
    conf.check_errors()
