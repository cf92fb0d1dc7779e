"""Floods of the largest messages a token may send must leave Redis within its bounds."""

from __future__ import annotations

import asyncio

from rtcfleet import bus
from rtcfleet.local import LocalFleet
from rtcfleet.redis_url import connect
from tests.adversarial.conftest import (
    Attacker,
    HonestCall,
    assert_unharmed,
    publish_offer_sdp,
    redis_url,
    signal_url,
)

SOCKETS = 6
MESSAGES_PER_SOCKET = 150
SDP_BYTES = 60 * 1024


async def test_a_flood_of_large_commands_keeps_the_node_inbox_bounded(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    redis = connect(redis_url(fleet))
    node_id = fleet.regions[fleet.home].media_nodes[0].name
    inbox = bus.node_inbox(node_id)
    # a subscriber answer of almost 64 KiB: the node refuses it, but it went through the inbox
    junk = "v=0\r\n" + "a=x-junk:" + "x" * (SDP_BYTES - 20) + "\r\n"
    sockets = [await Attacker.connect(signal_url(fleet)) for _ in range(SOCKETS)]
    try:
        for index, attacker in enumerate(sockets):
            await attacker.join(fleet.token("inbox-flood", f"mallory{index}"))
        before = await redis.info("memory")
        mark = honest.mark()

        async def flood(attacker: Attacker) -> None:
            for _ in range(MESSAGES_PER_SOCKET):
                await attacker.send({"type": "subscriber_answer", "sdp": junk})
                await asyncio.sleep(0.025)

        await asyncio.gather(*(flood(a) for a in sockets))
        await asyncio.sleep(1.0)
        after = await redis.info("memory")
        inbox_bytes = await redis.memory_usage(inbox, samples=0) or 0
        ttl = await redis.ttl(inbox)
        print(
            f"redis used_memory {before['used_memory']} -> {after['used_memory']}; "
            f"inbox {await redis.xlen(inbox)} entries, {inbox_bytes} bytes, ttl {ttl} s"
        )
        await assert_unharmed(fleet, honest, mark)
        assert inbox_bytes <= bus.NODE_INBOX_MAX_BYTES * 1.25, inbox_bytes
        # the live node deletes what it has read: only commands on their way stay
        assert await redis.xlen(inbox) < 64, "the node's inbox keeps commands it has read"
        assert 0 < ttl <= bus.NODE_INBOX_TTL_SECONDS, "a node's inbox must expire without it"
    finally:
        for attacker in sockets:
            await attacker.close()
        await redis.aclose()


async def test_a_session_stream_stays_within_its_byte_bound(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    redis = connect(redis_url(fleet))
    sdp = await publish_offer_sdp(("audio", "video") * 8)
    attacker = await Attacker.connect(signal_url(fleet))
    try:
        joined = await attacker.join(fleet.token("stream-flood", "mallory"))
        stream = bus.session_stream(joined["session_id"])
        mark = honest.mark()
        for _ in range(200):
            await attacker.send({"type": "publish_offer", "sdp": sdp})
            await attacker.receive_type_of(("publish_answer", "error"), timeout=30)
        stream_bytes = await redis.memory_usage(stream, samples=0) or 0
        print(f"session stream {await redis.xlen(stream)} entries, {stream_bytes} bytes")
        await assert_unharmed(fleet, honest, mark)
        assert stream_bytes <= bus.SESSION_STREAM_MAX_BYTES * 1.25, stream_bytes
    finally:
        await attacker.close()
        await redis.aclose()
