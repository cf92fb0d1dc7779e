"""A resume cursor past Redis's stream id range must not break the relay of every session."""

from __future__ import annotations

import asyncio

from rtcfleet.local import LocalFleet
from tests.adversarial.conftest import Attacker, HonestCall, assert_unharmed, signal_url

POISON = "99999999999999999999-0"  # 20 digits: above 2^64 - 1, the largest stream id part


async def test_a_poisoned_cursor_is_refused_and_the_relay_keeps_running(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    mark = honest.mark()
    attacker = await Attacker.connect(signal_url(fleet))
    token = fleet.token("poison", "mallory")
    joined = await attacker.join(token)
    await attacker.close()

    attacker = await Attacker.connect(signal_url(fleet))
    try:
        await attacker.send(
            {"type": "join", "token": token, "session_id": joined["session_id"], "cursor": POISON}
        )
        answer = await attacker.receive()
        await asyncio.sleep(2.0)
        await assert_unharmed(fleet, honest, mark)
        assert answer["type"] == "error" and answer["code"] == "bad_message", answer
    finally:
        await attacker.close()
