"""Media ports inside the configured range, and the public IP in the candidates."""

from __future__ import annotations

import socket

import pytest
from aiortc.sdp import SessionDescription

from media_node import ice
from media_node.ice import IcePolicy, InvalidPublicIp, PortRangeError, PortRangeExhausted
from media_node.sfu import SfuConfig
from rtcfleet.client.peer import ClientPeer
from tests.media_node.conftest import ROOM, Conference, wait_until
from tests.media_node.test_conference import all_video_flowing

pytestmark = pytest.mark.timeout(60)

PUBLIC_IP = "203.0.113.7"


def candidates(sdp: str) -> list:
    return [c for m in SessionDescription.parse(sdp).media for c in m.ice_candidates]


async def test_ports_in_range_and_public_ip_advertised(conference) -> None:
    conf: Conference = conference(SfuConfig(public_ip=PUBLIC_IP, port_min=50000, port_max=50099))
    alice = await conf.add("alice")
    bob = await conf.add("bob")
    await wait_until(lambda: all_video_flowing([alice, bob]), 20, "video both ways")

    for sdp in (
        alice.publisher_pc.remoteDescription.sdp,
        alice.subscriber_pc.remoteDescription.sdp,
    ):
        found = candidates(sdp)
        hosts = [c for c in found if c.type == "host"]
        public = [c for c in found if c.ip == PUBLIC_IP]
        assert hosts and public
        assert all(c.type == "srflx" and c.relatedAddress for c in public)
        assert {c.port for c in public} <= {c.port for c in hosts}
        assert all(50000 <= c.port <= 50099 for c in found)

    room = conf.sfu.room(ROOM)
    bound = [
        port
        for p in room.participants.values()
        for pc in (p.publisher.pc, p.subscriber.pc)  # type: ignore[union-attr]
        for port in ice.bound_ports(pc)
    ]
    print("SFU media ports:", bound)
    assert bound and all(50000 <= port <= 50099 for port in bound)
    conf.check_errors()


async def test_exhausted_range_is_a_named_error(conference) -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("0.0.0.0", 0))
    port = blocker.getsockname()[1]
    try:
        conf: Conference = conference(SfuConfig(port_min=port, port_max=port))
        client = ClientPeer("alice")
        conf.peers["alice"] = client
        await conf.sfu.join(ROOM, "alice", can_publish=True, can_subscribe=False)
        with pytest.raises(PortRangeExhausted):
            await conf.sfu.publish_offer(ROOM, "alice", await client.create_publish_offer())
    finally:
        blocker.close()


def test_policy_validation() -> None:
    with pytest.raises(PortRangeError):
        IcePolicy(port_min=60000, port_max=50000)
    with pytest.raises(PortRangeError):
        IcePolicy(port_min=0, port_max=10)
    with pytest.raises(InvalidPublicIp):
        IcePolicy(public_ip="media.example.com")
    policy = IcePolicy(port_min=50000, port_max=50009)
    ports = list(policy.candidate_ports())
    assert set(ports) == set(range(50000, 50010))


def test_trickled_candidate_parsing() -> None:
    parsed = ice.ice_candidate_from_dict(
        {
            "candidate": "candidate:1 1 udp 2122260223 192.0.2.9 50123 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        }
    )
    assert parsed is not None and (parsed.ip, parsed.port, parsed.sdpMid) == (
        "192.0.2.9",
        50123,
        "0",
    )
    assert ice.ice_candidate_from_dict(None) is None
    assert ice.ice_candidate_from_dict({"candidate": ""}) is None
    with pytest.raises(ice.InvalidCandidate):
        ice.ice_candidate_from_dict({"candidate": "garbage", "sdpMid": "0"})
