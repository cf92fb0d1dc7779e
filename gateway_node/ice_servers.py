"""The STUN and TURN servers a session's join answer names."""

from __future__ import annotations

from gateway_node.settings import GatewaySettings
from rtcfleet.signaling import IceServer
from rtcfleet.tokens import turn_credentials


def ice_servers(
    settings: GatewaySettings, identity: str, node_address: str | None = None
) -> list[IceServer]:
    """The configured servers, then the coturn of the session's media node, with TURN
    credentials that expire (``turn_ttl_seconds``) and name the participant."""
    stun = list(settings.stun_urls)
    turn = list(settings.turn_urls)
    port = settings.node_turn_port
    if node_address and port and settings.turn_secret is not None:
        host = f"[{node_address}]" if ":" in node_address else node_address
        stun.append(f"stun:{host}:{port}")
        turn += [f"turn:{host}:{port}?transport=udp", f"turn:{host}:{port}?transport=tcp"]
    servers = [IceServer(urls=stun)] if stun else []
    if turn and settings.turn_secret is not None:
        username, credential = turn_credentials(
            settings.turn_secret.get_secret_value(), identity, settings.turn_ttl_seconds
        )
        servers.append(IceServer(urls=turn, username=username, credential=credential))
    return servers
