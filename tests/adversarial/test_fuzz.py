"""Generated client messages, valid and not, from many sockets at once against a real gateway.

Hypothesis draws the traffic: joins with good, expired, forged and foreign tokens, resumes with
any cursor, offers and answers of real and junk SDP, candidates, rejoins, leaves, unknown types,
broken and deeply nested JSON, binary frames. Throughout: liveness answers 200, no process logs
an uncaught exception, Redis memory stays bounded, and an honest call on the same gateway and node
keeps its frames. The suite runs a bounded size; ``RTCFLEET_FUZZ_MESSAGES=10000`` (see
benchmarks/README.md) runs the full one.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from typing import Any

import aiohttp
import jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtcfleet.local import LocalFleet
from rtcfleet.redis_url import connect
from tests.adversarial.conftest import (
    HonestCall,
    assert_unharmed,
    logs,
    publish_offer_sdp,
    redis_url,
    signal_url,
)

MESSAGES = int(os.environ.get("RTCFLEET_FUZZ_MESSAGES", "1500"))
SOCKETS = int(os.environ.get("RTCFLEET_FUZZ_SOCKETS", "20"))
CHUNK = 25
UNCAUGHT = ("Traceback", "Unhandled exception", "Error handling request", "Task exception")

names = st.text(alphabet="abcdefghij-_.:@+é\r\n ", min_size=0, max_size=12)
cursors = st.one_of(
    st.none(),
    st.from_regex(r"\A\d{1,20}-\d{1,20}\Z"),
    st.text(max_size=30),
)


def token_kinds(fleet: LocalFleet) -> st.SearchStrategy[str]:
    now = int(time.time())
    key, secret = fleet.spec.api_key, fleet.spec.api_secret
    good = st.builds(
        lambda room, who: fleet.token(f"fuzz-{room % 4}", f"p{who}"),
        st.integers(0, 50),
        st.integers(0, 50),
    )

    def forged(claims: dict[str, Any], signer: str) -> str:
        return jwt.encode(claims, signer, algorithm="HS256", headers={"kid": key})

    odd_claims = st.fixed_dictionaries(
        {"iss": st.just(key), "iat": st.just(now), "exp": st.integers(now - 100, now + 10**8)},
        optional={
            "room": names,
            "identity": names,
            "can_publish": st.one_of(st.booleans(), st.text(max_size=5), st.integers()),
        },
    )
    return st.one_of(
        good,
        good,
        st.builds(forged, odd_claims, st.just(secret)),
        st.builds(forged, odd_claims, st.just("not-the-secret-but-as-long-as-one-0123456789")),
        st.text(max_size=60),
    )


def client_messages(fleet: LocalFleet, sdp: str) -> st.SearchStrategy[Any]:
    candidate = st.fixed_dictionaries(
        {
            "candidate": st.one_of(
                st.builds(
                    lambda a, p: f"candidate:1 1 udp 2130706431 {a} {p} typ host",
                    st.sampled_from(["127.0.0.1", "169.254.169.254", "8.8.8.8", "::1", "x"]),
                    st.integers(0, 70000),
                ),
                st.text(max_size=80),
            ),
            "sdpMid": st.one_of(st.none(), st.text(max_size=3)),
            "sdpMLineIndex": st.one_of(st.none(), st.integers(-1, 300)),
        }
    )
    structured = st.one_of(
        st.builds(
            lambda t, s, c: {"type": "join", "token": t, "session_id": s, "cursor": c},
            token_kinds(fleet),
            st.one_of(st.none(), st.from_regex(r"\A[0-9a-f]{32}\Z")),
            cursors,
        ),
        st.builds(lambda t: {"type": "join", "token": t}, token_kinds(fleet)),
        st.builds(
            lambda s: {"type": "publish_offer", "sdp": s},
            st.one_of(st.just(sdp), st.text(max_size=200), st.just("v=0\r\n" + "m=audio\r\n" * 40)),
        ),
        st.builds(lambda s: {"type": "subscriber_answer", "sdp": s}, st.text(max_size=200)),
        st.builds(
            lambda t, c: {"type": "trickle", "target": t, "candidate": c},
            st.sampled_from(["publisher", "subscriber", "nobody"]),
            st.one_of(st.none(), candidate),
        ),
        st.just({"type": "rejoin"}),
        st.just({"type": "leave"}),
        st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4),
    )
    raw = st.one_of(
        st.text(max_size=100),
        st.integers(1, 100_000).map(lambda n: "[" * n),
        st.binary(max_size=64),
    )
    return st.one_of(structured, structured, structured, raw)


def alive(fleet: LocalFleet) -> bool:
    gateway = fleet.regions[fleet.home].gateways[0]
    with urllib.request.urlopen(gateway.http_url + "/healthz", timeout=2) as response:
        return bool(response.status == 200)


async def run_traffic(fleet: LocalFleet, traffic: list[tuple[int, Any]]) -> dict[str, Any]:
    """Send ``traffic`` over ``SOCKETS`` sockets (reopened when the gateway closes one), each
    socket read by its own task; liveness checked every 200 messages."""
    http = aiohttp.ClientSession()
    sockets: list[aiohttp.ClientWebSocketResponse | None] = [None] * SOCKETS
    readers: list[asyncio.Task[None]] = []
    received = reopened = liveness_failures = 0

    async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
        nonlocal received
        async for _ in ws:
            received += 1

    async def socket(index: int) -> aiohttp.ClientWebSocketResponse:
        nonlocal reopened
        ws = sockets[index]
        if ws is None or ws.closed:
            reopened += ws is not None
            ws = sockets[index] = await http.ws_connect(signal_url(fleet))
            readers.append(asyncio.create_task(read(ws)))
        return ws

    try:
        for sent, (index, message) in enumerate(traffic):
            ws = await socket(index)
            try:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                elif isinstance(message, str):
                    await ws.send_str(message)
                else:
                    await ws.send_str(json.dumps(message))
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                pass
            if sent % 200 == 0 and not await asyncio.to_thread(alive, fleet):
                liveness_failures += 1
            # a 20th of the sockets' allowed rate each: the limiter is tested elsewhere
            await asyncio.sleep(0.004)
    finally:
        for opened in sockets:
            if opened is not None:
                await opened.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await http.close()
    return {"received": received, "reopened": reopened, "liveness_failures": liveness_failures}


async def test_generated_traffic_hurts_no_one(fleet: LocalFleet, honest: HonestCall) -> None:
    sdp = await publish_offer_sdp()
    redis = connect(redis_url(fleet))
    log_before = len(logs(fleet))
    memory_before = (await redis.info("memory"))["used_memory"]
    mark = honest.mark()
    drawn: list[list[tuple[int, Any]]] = []

    strategy = st.lists(
        st.tuples(st.integers(0, SOCKETS - 1), client_messages(fleet, sdp)),
        min_size=CHUNK,
        max_size=CHUNK,
    )

    # hypothesis draws the traffic in chunks (one example each: its buffer bounds one draw)
    @settings(
        max_examples=MESSAGES // CHUNK,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(chunk: list[tuple[int, Any]]) -> None:
        drawn.append(chunk)

    await asyncio.to_thread(draw)
    traffic = [message for chunk in drawn for message in chunk][:MESSAGES]
    started = time.monotonic()
    figures = await run_traffic(fleet, traffic)
    elapsed = time.monotonic() - started
    await asyncio.sleep(2.0)
    memory_after = (await redis.info("memory"))["used_memory"]
    await redis.aclose()
    new_logs = logs(fleet)[log_before:]
    uncaught = [line for line in new_logs.splitlines() if any(u in line for u in UNCAUGHT)]
    print(
        f"fuzz: {len(traffic)} messages over {SOCKETS} sockets in {elapsed:.1f} s; {figures}; "
        f"redis used_memory {memory_before} -> {memory_after}"
    )
    await assert_unharmed(fleet, honest, mark)
    assert figures["liveness_failures"] == 0
    assert alive(fleet)
    assert not uncaught, uncaught[:5]
    assert memory_after - memory_before < 64 * 1024 * 1024
