"""A session's token expiry: a fresher token resumed elsewhere outlives the old token's socket,
and nothing an expired session sends is acted on."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway_node.app import create_apps
from gateway_node.sessions import WS_CLOSE_TOKEN_EXPIRED
from gateway_node.signal import SignalConnection
from rtcfleet import bus
from rtcfleet.tokens import CLOCK_SKEW_SECONDS, mint_token
from tests.gateway_node.conftest import API_KEY, API_SECRET, GatewayUnderTest
from tests.gateway_node.test_bad_input import NODE, receive

# seconds the old token is still accepted for (inside the clock skew) when minted
GRACE_S = 2


async def test_a_refresh_elsewhere_keeps_the_session_past_the_old_token(
    gw: GatewayUnderTest,
) -> None:
    await gw.register_node(NODE)
    issued = int(time.time()) + GRACE_S - CLOCK_SKEW_SECONDS - 60
    old_token = mint_token(
        API_KEY, API_SECRET, room="room", identity="ann", ttl_seconds=60, now=issued
    )
    settings = gw.gateway.settings.model_copy(update={"gateway_id": f"gw-{uuid.uuid4().hex[:6]}"})
    other = TestClient(TestServer(create_apps(settings)[0]))
    await other.start_server()
    try:
        first = await gw.signal()
        await first.send_str(json.dumps({"type": "join", "token": old_token}))
        joined = await receive(first)
        assert joined["type"] == "joined", joined
        session = joined["session_id"]

        # the client resumes on another gateway with a fresh token; its old socket lingers
        second = await other.ws_connect("/v1/signal")
        fresh = gw.token("room", "ann")
        await second.send_str(json.dumps({"type": "join", "token": fresh, "session_id": session}))
        assert (await receive(second))["resumed"] is True

        # a rejoin on the old socket writes the session with its older token: no shorter life
        await first.send_str(json.dumps({"type": "rejoin"}))
        assert (await receive(first))["type"] == "joined"
        kept = await gw.redis.hget(bus.session_key(session), "expires_at")
        assert kept is not None and int(kept) > issued + 60, kept

        # the old token lapses: its socket goes, the session does not
        told = await receive(first, timeout=GRACE_S + 5)
        assert told["code"] == "token_expired", told
        closing = await first.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == WS_CLOSE_TOKEN_EXPIRED
        assert await gw.redis.exists(bus.session_key(session)) == 1
        await second.send_str(
            json.dumps({"type": "trickle", "target": "publisher", "candidate": None})
        )
        await second.send_str(json.dumps({"type": "ping"}))
        # the stream's earlier messages replay first (no cursor was given); no error among them
        replies = [await receive(second)]
        while replies[-1]["type"] != "pong":
            replies.append(await receive(second))
        assert all(reply["type"] != "error" for reply in replies), replies
        await second.close()
    finally:
        await other.close()


async def test_a_message_that_beats_the_expiry_is_refused(
    gw: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def late(self: SignalConnection, session: object) -> None:
        """The end of the session, still on its way."""

    monkeypatch.setattr(SignalConnection, "_expire", late)
    await gw.register_node(NODE)
    issued = int(time.time()) + GRACE_S - CLOCK_SKEW_SECONDS - 60
    token = mint_token(API_KEY, API_SECRET, room="room", identity="ann", ttl_seconds=60, now=issued)
    ws = await gw.signal()
    await ws.send_str(json.dumps({"type": "join", "token": token}))
    assert (await receive(ws))["type"] == "joined"
    await asyncio.sleep(max(issued + 60 + CLOCK_SKEW_SECONDS - time.time(), 0) + 0.2)
    for message in (
        {"type": "rejoin"},
        {"type": "publish_offer", "sdp": "v=0\r\n"},
        {"type": "trickle", "target": "publisher", "candidate": None},
    ):
        await ws.send_str(json.dumps(message))
        reply = await receive(ws)
        assert reply["type"] == "error" and reply["code"] == "token_expired", (message, reply)
    await ws.close()
