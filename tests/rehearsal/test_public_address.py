"""An Azure media node: IMDS shows no public IP (Standard IPs), so it asks STUN outside the NAT."""

from __future__ import annotations

import redis

from infra.spec import Role
from rtcfleet import bus
from rtcfleet.nodes import NodeState
from rtcfleet.rehearsal.region import BootedNode, RehearsedRegion

GIVEN_PUBLIC_IP = "203.0.113.50"


def test_azure_media_node_advertises_the_public_address_the_nat_gives_it(
    region: RehearsedRegion, booted: dict[Role, BootedNode]
) -> None:
    node = region.launch(Role.MEDIA_NODE, cloud="azure", public_ip=GIVEN_PUBLIC_IP)
    try:
        region.wait_ready(node)
        assert region.redis_server is not None
        client = redis.Redis(host=region.redis_server.bind.address, port=region.redis_server.port)
        try:
            raw = client.get(bus.node_key(node.node_id))
        finally:
            client.close()
        assert raw is not None
        state = NodeState.model_validate_json(raw)
        assert state.registration.public_ip == GIVEN_PUBLIC_IP
        env = node.instance.run("cat", "/etc/rtcfleet/media.env").stdout
        assert f'RTCFLEET_MEDIA_PUBLIC_IP="{GIVEN_PUBLIC_IP}"' in env
        assert 'RTCFLEET_MEDIA_CLOUD="azure"' in env
        turn = node.instance.run("cat", "/etc/rtcfleet/turnserver.conf").stdout
        assert f"external-ip={GIVEN_PUBLIC_IP}/{node.address}" in turn
        assert "(STUN)" in node.instance.journal("rtcfleet-first-boot.service")
    finally:
        region.retire(node)
