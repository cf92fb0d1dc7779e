"""One session per identity per room: the replaced session hears why, and ends everywhere."""

from __future__ import annotations

import json

import aiohttp

from gateway_node.sessions import WS_CLOSE_REPLACED
from rtcfleet import bus
from rtcfleet.signaling import ErrorCode, SessionReplaced
from tests.gateway_node.conftest import GatewayUnderTest
from tests.gateway_node.test_bad_input import NODE, receive


async def test_a_replaced_session_is_told_closed_and_forgotten(gw: GatewayUnderTest) -> None:
    await gw.register_node(NODE)
    token = gw.token("room", "alice")
    first, second = await gw.signal(), await gw.signal()
    sessions = []
    for ws in (first, second):
        await ws.send_str(json.dumps({"type": "join", "token": token}))
        joined = await receive(ws)
        assert joined["type"] == "joined", joined
        sessions.append(joined["session_id"])
    old, new = sessions
    assert old != new

    # what the room's worker says to the older session when the newer join takes its place
    await bus.send_to_session(gw.redis, old, SessionReplaced().model_dump(mode="json"))
    told = await receive(first)
    assert told["type"] == "session_replaced", told
    closing = await first.receive(timeout=5)
    assert closing.type == aiohttp.WSMsgType.CLOSE, closing
    assert closing.data == WS_CLOSE_REPLACED
    assert await gw.redis.exists(bus.session_key(old)) == 0
    assert await gw.redis.exists(bus.session_key(new)) == 1

    # the old session cannot be resumed; the new one goes on
    retry = await gw.signal()
    await retry.send_str(json.dumps({"type": "join", "token": token, "session_id": old}))
    assert (await receive(retry))["code"] == ErrorCode.SESSION_NOT_FOUND.value
    await second.send_str(json.dumps({"type": "ping"}))
    assert (await receive(second))["type"] == "pong"
    for ws in (retry, second):
        await ws.close()
