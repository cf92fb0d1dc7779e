"""Trickled candidates are where the node sends STUN: a client must not aim them at the cloud's
metadata service or flood a connection with them."""

from __future__ import annotations

from media_node.ice import MAX_REMOTE_CANDIDATES
from rtcfleet.local import LocalFleet
from tests.adversarial.conftest import (
    Attacker,
    HonestCall,
    assert_unharmed,
    publish_offer_sdp,
    signal_url,
)

FORBIDDEN = ["169.254.169.254", "0.0.0.0", "224.0.0.1", "240.0.0.1"]


def candidate(address: str, port: int = 80) -> dict[str, object]:
    line = f"candidate:1 1 udp 2130706431 {address} {port} typ host"
    return {
        "type": "trickle",
        "target": "publisher",
        "candidate": {"candidate": line, "sdpMid": "0"},
    }


async def test_candidates_to_forbidden_addresses_and_past_the_bound_are_refused(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    attacker = await Attacker.connect(signal_url(fleet))
    try:
        await attacker.join(fleet.token("candidates", "mallory"))
        await attacker.send({"type": "publish_offer", "sdp": await publish_offer_sdp()})
        await attacker.receive_type("publish_answer", timeout=15)
        mark = honest.mark()
        refused = {}
        for address in FORBIDDEN:
            await attacker.send(candidate(address))
            answers = await attacker.drain_messages(0.5)
            refused[address] = [a.get("code") for a in answers if a["type"] == "error"]
        # public addresses (documentation range) up to the bound pass, the next is refused
        for index in range(MAX_REMOTE_CANDIDATES + 1):
            await attacker.send(candidate("198.51.100.7", 40000 + index))
        flood = [a.get("code") for a in await attacker.drain_messages(1.0) if a["type"] == "error"]
        await assert_unharmed(fleet, honest, mark)
        assert refused == {a: ["media_error"] for a in FORBIDDEN}, refused
        assert flood == ["media_error"], flood
    finally:
        await attacker.close()
