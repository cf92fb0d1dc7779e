"""TURN on a booted media node, from outside its namespace, with credentials from a real join.

coturn must authenticate with the gateway's time-limited credentials (UDP and TCP 3478),
refuse anyone without them, and refuse to relay into private, loopback and link-local
addresses (the cloud's metadata service among them). TURN over TLS on 443 is not offered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlparse

import aiohttp
import pytest
from aioice import stun
from aioice.turn import TurnClientTcpProtocol, TurnClientUdpProtocol

from infra.spec import CLIENT_SIGNALING_PORT, Role
from rtcfleet.rehearsal.region import BootedNode, RehearsedRegion
from rtcfleet.tokens import mint_token, turn_credentials

pytestmark = pytest.mark.slow


async def joined_message(region: RehearsedRegion, gateway: BootedNode) -> dict:
    token = mint_token(
        region.env, region.secrets["apiSecret"], room="turn-check", identity="turn-client"
    )
    url = f"ws://{gateway.address}:{CLIENT_SIGNALING_PORT}/v1/signal"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"type": "join", "token": token}))
        async for message in ws:
            data = json.loads(message.data)
            if data.get("type") == "joined":
                return data
    raise AssertionError("no joined message")


@pytest.fixture(scope="module")
def ice(region: RehearsedRegion, booted: dict[Role, BootedNode]) -> dict:
    joined = asyncio.run(joined_message(region, booted[Role.GATEWAY]))
    turn = next(s for s in joined["ice_servers"] if s.get("username"))
    return {"joined": joined, "turn": turn}


@asynccontextmanager
async def turn_client(
    server: tuple[str, int], transport: str, username: str | None, password: str | None
) -> AsyncIterator[TurnClientUdpProtocol | TurnClientTcpProtocol]:
    loop = asyncio.get_running_loop()
    inner: asyncio.BaseTransport
    protocol: TurnClientUdpProtocol | TurnClientTcpProtocol
    if transport == "tcp":
        inner, protocol = await loop.create_connection(
            lambda: TurnClientTcpProtocol(server, username, password, 600, 300), *server
        )
    else:
        inner, protocol = await loop.create_datagram_endpoint(
            lambda: TurnClientUdpProtocol(server, username, password, 600, 300),
            remote_addr=server,
        )
    try:
        yield protocol
    finally:
        inner.close()


def _server(url: str) -> tuple[tuple[str, int], str]:
    parsed = urlparse(url.replace("turn:", "turn://", 1))
    transport = "tcp" if "transport=tcp" in parsed.query else "udp"
    assert parsed.hostname and parsed.port
    return (parsed.hostname, parsed.port), transport


async def _permission(protocol: TurnClientUdpProtocol | TurnClientTcpProtocol, peer: str) -> int:
    request = stun.Message(
        message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST
    )
    request.attributes["XOR-PEER-ADDRESS"] = (peer, 9)
    try:
        await protocol.request_with_retry(request)
    except stun.TransactionFailed as failed:
        return int(failed.response.attributes["ERROR-CODE"][0])
    return 200


def _refused_with(coroutine) -> int:
    try:
        asyncio.run(coroutine)
    except stun.TransactionFailed as failed:
        return int(failed.response.attributes["ERROR-CODE"][0])
    return 200


def test_join_offers_turn_on_udp_and_tcp_3478_of_the_media_node_and_no_443(
    ice: dict, booted: dict[Role, BootedNode]
) -> None:
    media = booted[Role.MEDIA_NODE].address
    assert ice["turn"]["urls"] == [
        f"turn:{media}:3478?transport=udp",
        f"turn:{media}:3478?transport=tcp",
    ]
    urls = [url for server in ice["joined"]["ice_servers"] for url in server["urls"]]
    assert f"stun:{media}:3478" in urls
    assert not any(url.startswith("turns:") or ":443" in url for url in urls)
    listening = booted[Role.MEDIA_NODE].instance.run("ss", "-Hltn", "sport = :443").stdout
    assert listening.strip() == ""


@pytest.mark.parametrize("index", [0, 1], ids=["udp", "tcp"])
def test_allocation_with_the_joined_credentials_and_no_relay_into_private_ranges(
    ice: dict, booted: dict[Role, BootedNode], index: int
) -> None:
    server, transport = _server(ice["turn"]["urls"][index])
    username, password = ice["turn"]["username"], ice["turn"]["credential"]
    gateway = booted[Role.GATEWAY].address

    async def check() -> dict[str, object]:
        async with turn_client(server, transport, username, password) as client:
            relayed = await client.connect()
            return {
                "relayed": relayed,
                # the node's own SFU: the one private peer clients reach through the relay
                "own": await _permission(client, server[0]),
                "vpc": await _permission(client, "10.0.0.1"),
                "gateway": await _permission(client, gateway),
                "loopback": await _permission(client, "127.0.0.1"),
                "metadata": await _permission(client, "169.254.169.254"),
            }

    result = asyncio.run(check())
    assert result["relayed"][0] == server[0]  # type: ignore[index]
    assert result["own"] == 200
    assert (result["vpc"], result["gateway"], result["loopback"], result["metadata"]) == (
        403,
        403,
        403,
        403,
    ), result


def test_allocation_without_or_with_bad_credentials_is_refused(ice: dict) -> None:
    server, transport = _server(ice["turn"]["urls"][0])
    username, password = ice["turn"]["username"], ice["turn"]["credential"]

    async def allocate(user: str | None, secret: str | None) -> None:
        async with turn_client(server, transport, user, secret) as client:
            await client.connect()

    assert _refused_with(allocate(None, None)) == 401
    assert _refused_with(allocate(username, password[:-4] + "AAA=")) == 401
    identity = username.split(":", 1)[1]
    forged_user, forged = turn_credentials("not-the-secret", identity, 600)
    assert _refused_with(allocate(forged_user, forged)) == 401


def test_expired_credentials_are_refused(ice: dict, region: RehearsedRegion) -> None:
    from rtcfleet.bundle.first_boot import turn_secret

    server, transport = _server(ice["turn"]["urls"][0])
    # signed with the real secret, but their time is over
    user, password = turn_credentials(turn_secret(region.secrets), "late", 600, now=0)

    async def allocate() -> None:
        async with turn_client(server, transport, user, password) as client:
            await client.connect()

    assert _refused_with(allocate()) == 401
    fresh_user, fresh = turn_credentials(turn_secret(region.secrets), "late", 600)

    async def allocate_fresh() -> tuple[str, int]:
        async with turn_client(server, transport, fresh_user, fresh) as client:
            return await client.connect()

    assert asyncio.run(allocate_fresh())[0] == server[0]
