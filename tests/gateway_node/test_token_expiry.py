"""A session refreshed with a fresher token on another gateway outlives the old token's socket."""

from __future__ import annotations

import json
import time
import uuid

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from gateway_node.app import create_apps
from gateway_node.sessions import WS_CLOSE_TOKEN_EXPIRED
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
