"""Bad input gets a clear error code and changes nothing: no session, no command to a node."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtcfleet import bus
from rtcfleet.signaling import (
    CLIENT_TYPES,
    MAX_SDP_BYTES,
    ErrorCode,
    SignalingError,
    parse_client_message,
)
from rtcfleet.tokens import mint_token
from tests.gateway_node.conftest import API_KEY, GatewayUnderTest

NODE = "node-a"


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict:
    frame = await ws.receive(timeout=timeout)
    assert frame.type == aiohttp.WSMsgType.TEXT, frame
    return json.loads(frame.data)


async def sessions_in_redis(gw: GatewayUnderTest) -> list[str]:
    keys = [key async for key in gw.redis.scan_iter(match=f"{bus.PREFIX}sess:*")]
    return [key for key in keys if key.count(":") == 2]


async def node_commands(gw: GatewayUnderTest) -> list[dict]:
    """What clients made the gateway send the node (not the region-health probes it sends by
    itself every second)."""
    entries = await gw.redis.xrange(bus.node_inbox(NODE))
    assert entries is not None
    # the client decodes responses: keys and values are str
    commands = [
        bus.decode_entry({str(k): str(v) for k, v in (fields or {}).items()})
        for _, fields in entries
    ]
    return [command for command in commands if command.get("op") != "probe"]


async def joined_socket(gw: GatewayUnderTest, **grants: object):
    await gw.register_node(NODE)
    ws = await gw.signal()
    await ws.send_str(json.dumps({"type": "join", "token": gw.token("room", "alice", **grants)}))
    assert (await receive(ws))["type"] == "joined"
    return ws


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", ErrorCode.BAD_JSON),
        ("[1, 2]", ErrorCode.BAD_MESSAGE),
        ('{"type": "teleport"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "join"}', ErrorCode.BAD_MESSAGE),
        ('{"type": "join", "token": "x", "extra": 1}', ErrorCode.BAD_MESSAGE),
        ('{"type": "publish_offer", "sdp": "v=0"}', ErrorCode.NOT_JOINED),
        ('{"type": "join", "token": "not-a-jwt"}', ErrorCode.UNAUTHORIZED),
    ],
)
async def test_malformed_frames_get_their_code_and_the_socket_stays_usable(
    gw: GatewayUnderTest, frame: str, code: ErrorCode
) -> None:
    await gw.register_node(NODE)
    ws = await gw.signal()
    await ws.send_str(frame)
    answer = await receive(ws)
    assert answer["type"] == "error" and answer["code"] == code.value
    assert await sessions_in_redis(gw) == []
    # the same socket still joins afterwards
    await ws.send_str(json.dumps({"type": "join", "token": gw.token("room", "alice")}))
    assert (await receive(ws))["type"] == "joined"
    await ws.close()


async def test_expired_and_forged_tokens_are_refused(gw: GatewayUnderTest) -> None:
    await gw.register_node(NODE)
    expired = mint_token(
        API_KEY,
        "test-secret-0123456789abcdef-0123456789",
        room="r",
        identity="a",
        now=time.time() - 7200,
        ttl_seconds=60,
    )
    forged = mint_token(API_KEY, "someone-elses-secret-0000000000000000000", room="r", identity="a")
    unknown_key = mint_token(
        "other-key", "test-secret-0123456789abcdef-0123456789", room="r", identity="a"
    )
    ws = await gw.signal()
    for token, code in (
        (expired, ErrorCode.TOKEN_EXPIRED),
        (forged, ErrorCode.UNAUTHORIZED),
        (unknown_key, ErrorCode.UNAUTHORIZED),
    ):
        await ws.send_str(json.dumps({"type": "join", "token": token}))
        answer = await receive(ws)
        assert answer["code"] == code.value, answer
    assert await sessions_in_redis(gw) == []
    assert await node_commands(gw) == []
    await ws.close()


async def test_oversized_sdp_is_refused(gw: GatewayUnderTest) -> None:
    ws = await joined_socket(gw)
    sdp = "v=0\r\n" + "a=x\r\n" * (MAX_SDP_BYTES // 5)
    await ws.send_str(json.dumps({"type": "publish_offer", "sdp": sdp}))
    answer = await receive(ws)
    assert answer["code"] == ErrorCode.TOO_LARGE.value
    assert "publish_offer" not in [c["op"] for c in await node_commands(gw)]
    await ws.close()


async def test_publishing_without_the_grant_is_forbidden(gw: GatewayUnderTest) -> None:
    ws = await joined_socket(gw, can_publish=False)
    await ws.send_str(json.dumps({"type": "publish_offer", "sdp": "v=0\r\n"}))
    answer = await receive(ws)
    assert answer["code"] == ErrorCode.FORBIDDEN.value
    ops = [command["op"] for command in await node_commands(gw)]
    assert "publish_offer" not in ops, ops
    await ws.close()


async def test_resume_with_anothers_token_is_refused(gw: GatewayUnderTest) -> None:
    ws = await joined_socket(gw)
    await ws.close()
    session_key = (await sessions_in_redis(gw))[0]
    session_id = session_key.removeprefix(f"{bus.PREFIX}sess:")
    thief = await gw.signal()
    await thief.send_str(
        json.dumps({"type": "join", "token": gw.token("room", "mallory"), "session_id": session_id})
    )
    assert (await receive(thief))["code"] == ErrorCode.UNAUTHORIZED.value
    record = await gw.redis.hgetall(session_key)
    assert record["identity"] == "alice"
    await thief.close()


async def test_a_flood_is_rate_limited_then_disconnected(gw: GatewayUnderTest) -> None:
    ws = await joined_socket(gw)
    frame = json.dumps({"type": "trickle", "target": "publisher", "candidate": None})
    sent, started = 0, time.monotonic()
    # bounded: at most 2,000 frames or 10 s, whichever comes first
    while sent < 2000 and time.monotonic() - started < 10 and not ws.closed:
        try:
            await ws.send_str(frame)
        except ConnectionError:
            break
        sent += 1
    elapsed = time.monotonic() - started
    codes, close_code = [], None
    while True:
        try:
            message = await ws.receive(timeout=5)
        except TimeoutError:
            break
        if message.type == aiohttp.WSMsgType.TEXT:
            codes.append(json.loads(message.data).get("code"))
        else:
            close_code = ws.close_code
            break
    assert ErrorCode.RATE_LIMITED.value in codes
    assert close_code == 1008, "a client that keeps flooding is disconnected"
    trickles = [c for c in await node_commands(gw) if c["op"] == "trickle"]
    allowed = 20 + 20 * elapsed  # burst + rate x time
    print(f"sent {sent} frames in {elapsed:.2f} s; {len(trickles)} reached the node")
    assert 0 < len(trickles) <= allowed + 1


client_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(CLIENT_TYPES)) | st.text(max_size=12),
    fields=st.dictionaries(
        st.sampled_from(["token", "sdp", "target", "candidate", "session_id", "cursor", "x"]),
        client_values,
        max_size=4,
    ),
)
def test_any_object_parses_or_fails_with_a_protocol_code(kind: str, fields: dict) -> None:
    raw = json.dumps({"type": kind, **fields})
    try:
        message = parse_client_message(raw)
    except SignalingError as exc:
        assert exc.code in set(ErrorCode)
        assert exc.message
        return
    assert message.type == kind


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256) | st.text(max_size=256))
def test_arbitrary_bytes_never_crash_the_parser(raw: bytes | str) -> None:
    try:
        parse_client_message(raw)
    except SignalingError as exc:
        assert exc.code in {
            ErrorCode.BAD_JSON,
            ErrorCode.BAD_MESSAGE,
            ErrorCode.UNKNOWN_TYPE,
            ErrorCode.TOO_LARGE,
        }


async def test_ping_is_answered_before_and_after_join_and_leaves_no_trace(
    gw: GatewayUnderTest,
) -> None:
    """The liveness probe of the signaling path: answered at once, no session, no cursor."""
    await gw.register_node(NODE)
    ws = await gw.signal()
    await ws.send_str(json.dumps({"type": "ping"}))
    assert await receive(ws) == {"type": "pong"}
    assert await sessions_in_redis(gw) == []
    await ws.send_str(json.dumps({"type": "join", "token": gw.token("room", "alice")}))
    assert (await receive(ws))["type"] == "joined"
    await ws.send_str(json.dumps({"type": "ping"}))
    while (answer := await receive(ws))["type"] != "pong":
        pass
    assert "cursor" not in answer
    await ws.send_str(json.dumps({"type": "ping", "extra": 1}))
    assert (await receive(ws))["code"] == ErrorCode.BAD_MESSAGE.value
    await ws.close()
