"""A client that stops reading its socket must not stall the relay of every other session."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from gateway_node.sessions import SESSION_SEND_TIMEOUT_S
from rtcfleet.local import LocalFleet
from tests.adversarial.conftest import (
    Attacker,
    HonestCall,
    assert_unharmed,
    logs,
    new_join_seconds,
    publish_offer_sdp,
    signal_url,
)
from tests.platform.conftest import wait_until

ATTACK_S = 14.0
OFFERS_PER_S = 40


async def test_a_client_that_stops_reading_is_disconnected_alone(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    attacker = await Attacker.connect(signal_url(fleet))
    sdp = await publish_offer_sdp(("audio", "video") * 8)  # the largest offer allowed
    # the attacker's own client stops reading: its kernel buffer fills, then the gateway's sends
    transport = attacker.ws._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    try:
        await attacker.join(fleet.token("slow", "sloth"))
        transport.pause_reading()
        mark = honest.mark()
        joins = []
        started = time.monotonic()
        while time.monotonic() - started < ATTACK_S:
            try:
                # every offer earns a publish_answer of a few KB in the session's stream
                for _ in range(OFFERS_PER_S // 5):
                    await attacker.send({"type": "publish_offer", "sdp": sdp})
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                break
            joins.append(await new_join_seconds(fleet))
            await asyncio.sleep(0.2)
        print(f"new joins during the attack: max {max(joins):.2f} s over {len(joins)}")
        assert max(joins) <= 2.0, f"a new join waited {max(joins):.2f} s during the attack"
        await assert_unharmed(fleet, honest, mark)
        # still not reading: the gateway gives up on this client alone
        await wait_until(
            lambda: (
                "does not read its socket" in logs(fleet) or "did not take a message" in logs(fleet)
            ),
            SESSION_SEND_TIMEOUT_S + 10,
            "the gateway to disconnect the slow reader",
        )
    finally:
        transport.abort()
        await attacker.close()
