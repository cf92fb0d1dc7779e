"""Every connection of an SFU on one shared UDP port: media decoded, one port in every candidate,
a fan-out's datagrams in one system call, ICE consent kept, a closed connection's addresses given
back and a stranger's datagrams dropped. The per-connection sockets (the default) are what the
other media node tests run on."""

from __future__ import annotations

import asyncio
import socket

import aioice.ice
import pytest
from aioice import stun
from aiortc.sdp import SessionDescription

from media_node import datagram_batch, ice
from media_node.publisher import PublishedTrack
from media_node.sfu import SfuConfig
from media_node.udp_mux import UdpMux
from tests.media_node.conftest import ROOM, Conference, wait_until

pytestmark = pytest.mark.timeout(90)

PUBLIC_IP = "203.0.113.9"
LOOPBACK = "127.0.0.1"
CONSENT_INTERVAL_S = 0.3


async def test_one_port_for_every_connection(conference, monkeypatch: pytest.MonkeyPatch) -> None:
    # consent checks every ~0.3 s: six unanswered (under 3 s) would close a connection
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", CONSENT_INTERVAL_S)
    monkeypatch.setattr(datagram_batch, "MIN_SENDMMSG", 2)
    conf: Conference = conference(
        SfuConfig(public_ip=PUBLIC_IP, port_min=50200, port_max=50299, shared_udp_port=True)
    )
    await conf.add("alice", subscribe=False)
    viewers = [await conf.add(name, publish=False) for name in ("bob", "carol", "dave")]

    def decoded(names: list[str], frames: int) -> bool:
        return all(
            (s := conf.peers[n].received("alice", kind)) is not None and s.frames_decoded >= frames
            for n in names
            for kind in ("video", "audio")
        )

    names = [v.name for v in viewers]

    def video_frames(name: str) -> int:
        stats = conf.peers[name].received("alice", "video")
        return stats.frames_decoded if stats is not None else 0

    await wait_until(lambda: decoded(names, 20), 30, "media decoded by every viewer")

    room = conf.sfu.room(ROOM)
    pcs = [
        pc
        for p in room.participants.values()
        for pc in (
            p.publisher.pc if p.publisher else None,
            p.subscriber.pc if p.subscriber else None,
        )
        if pc is not None
    ]
    ports = {port for pc in pcs for port in ice.bound_ports(pc)}
    assert len(pcs) == 4 and len(ports) == 1 and 50200 <= min(ports) <= 50299
    for viewer in viewers:
        found = [
            c
            for m in SessionDescription.parse(viewer.subscriber_pc.remoteDescription.sdp).media
            for c in m.ice_candidates
        ]
        assert {c.port for c in found} == ports and {c.type for c in found} == {"host", "srflx"}

    # the video's datagrams for three viewers leave in one sendmmsg per published packet
    video = next(t for t in room.tracks() if t.kind == "video")
    sent = sum(
        d.forwarder.stats.packets
        for p in room.participants.values()
        if p.subscriber is not None
        for d in p.subscriber.downtracks
        if d.track is video and d.forwarder is not None
    )
    assert video.batch.dropped == 0 and 0 < video.batch.system_calls * 2 < sent

    # consent (RFC 7675) is asked and answered through the shared socket for many intervals
    frames = {n: video_frames(n) for n in names}
    await asyncio.sleep(12 * CONSENT_INTERVAL_S)
    assert all(pc.iceConnectionState == "completed" for pc in pcs)
    await wait_until(
        lambda: all(video_frames(n) > frames[n] + 30
                    for n in names),
        20,
        "video still decoded after the consent checks",
    )  # fmt: skip

    # a stranger's datagrams reach no connection
    mux = mux_of(conf)
    unrouted = mux.unrouted
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for _ in range(5):
            stranger.sendto(b"\x80\x60" + bytes(40), (LOOPBACK, min(ports)))
    await wait_until(lambda: mux.unrouted >= unrouted + 5, 5, "the stranger's datagrams counted")

    # a viewer that leaves gives its ufrag and addresses back; the others keep decoding
    ufrags, addresses = len(mux.by_ufrag), len(mux.by_address)
    await conf.remove("dave")
    await wait_until(lambda: len(mux.by_ufrag) == ufrags - 1, 10, "dave's ufrag released")
    assert len(mux.by_address) < addresses
    frames = {n: video_frames(n) for n in names[:2]}
    await wait_until(
        lambda: all(video_frames(n) > frames[n] + 10
                    for n in names[:2]),
        20,
        "video decoded after a viewer left",
    )  # fmt: skip
    tracks: list[PublishedTrack] = room.tracks()
    assert all(t.batch.dropped == 0 for t in tracks)
    conf.check_errors()


def mux_of(conf: Conference) -> UdpMux:
    muxes = conf.sfu.udp_muxes
    assert muxes is not None
    mux = muxes.peek(LOOPBACK)
    assert mux is not None
    return mux


async def test_addresses_belong_to_a_connection_only_from_the_remote_side() -> None:
    mux = UdpMux.bind(LOOPBACK, 0)
    first, second = aioice.ice.Connection(ice_controlling=True), aioice.ice.Connection(True)
    seen: dict[str, list[tuple[bytes, tuple[str, int]]]] = {"first": [], "second": []}
    protocols = {}
    for name, connection in (("first", first), ("second", second)):
        protocol = protocols[name] = mux.attach(connection)

        def received(data: bytes, addr: tuple[str, int], name: str = name) -> None:
            seen[name].append((data, addr))

        setattr(protocol, "datagram_received", received)  # noqa: B010
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for client in clients:
        client.bind((LOOPBACK, 0))
    a, b, c = clients
    a_addr, b_addr, c_addr = (s.getsockname() for s in clients)

    def binding(message_class: stun.Class, username: str | None = None) -> stun.Message:
        message = stun.Message(stun.Method.BINDING, message_class)
        if username is not None:
            message.attributes["USERNAME"] = username
        return message

    async def settle(total: int) -> None:
        await wait_until(lambda: sum(map(len, seen.values())) + mux.unrouted >= total, 5, "routed")

    try:
        # a check sent to c claims nothing: what c sends reaches nobody
        protocols["first"].send_stun(binding(stun.Class.REQUEST, "x:y"), c_addr)
        c.sendto(b"\x80\x60" + bytes(30), (LOOPBACK, mux.port))
        await settle(1)
        assert mux.unrouted == 1 and c_addr not in mux.by_address
        # a request naming a connection's ufrag gives it the address, and media follows
        a.sendto(bytes(binding(stun.Class.REQUEST, f"{first.local_username}:r")),
                 (LOOPBACK, mux.port))  # fmt: skip
        b.sendto(bytes(binding(stun.Class.REQUEST, f"{second.local_username}:r")),
                 (LOOPBACK, mux.port))  # fmt: skip
        a.sendto(b"\x80\x60media-a", (LOOPBACK, mux.port))
        await settle(4)
        # a's address stays first's even when a request names second's ufrag from it
        a.sendto(bytes(binding(stun.Class.REQUEST, f"{second.local_username}:r")),
                 (LOOPBACK, mux.port))  # fmt: skip
        a.sendto(b"\x80\x60media-a2", (LOOPBACK, mux.port))
        await settle(6)
        assert [d for d, _ in seen["first"] if d.startswith(b"\x80")] == [
            b"\x80\x60media-a",
            b"\x80\x60media-a2",
        ]
        assert [addr for _, addr in seen["second"]] == [b_addr, a_addr]
        assert mux.by_address == {a_addr: protocols["first"], b_addr: protocols["second"]}
        # a success response to second's own check gives second the responder's address
        check = binding(stun.Class.REQUEST, "x:y")
        mux.transactions[check.transaction_id] = protocols["second"]
        response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, check.transaction_id)
        c.sendto(bytes(response), (LOOPBACK, mux.port))
        c.sendto(b"\x80\x60media-c", (LOOPBACK, mux.port))
        await settle(8)
        assert mux.by_address[c_addr] is protocols["second"]
        assert seen["second"][-1] == (b"\x80\x60media-c", c_addr)
        # a closed connection gives its ufrag and addresses back
        protocols["second"].transport.close()
        await asyncio.sleep(0)
        assert set(mux.by_address) == {a_addr} and set(mux.by_ufrag) == {first.local_username}
    finally:
        for client in clients:
            client.close()
        mux.transport.close()
