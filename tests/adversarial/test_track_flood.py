"""A publisher offer with hundreds of m-lines, or offers that fail half-way, must not multiply
the node's work: past the bound they are refused, and a failed offer leaves nothing behind."""

from __future__ import annotations

import asyncio

from rtcfleet.local import LocalFleet
from rtcfleet.signaling import MAX_MEDIA_SECTIONS, MAX_SDP_BYTES
from tests.adversarial.conftest import (
    Attacker,
    HonestCall,
    assert_unharmed,
    flood_sdp,
    publish_offer_sdp,
    signal_url,
)

FLOOD_SECTIONS = 120
ROUNDS = 8


async def test_an_offer_with_hundreds_of_m_lines_is_refused(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    base = await publish_offer_sdp(("audio",))
    attacker = await Attacker.connect(signal_url(fleet))
    watcher = await Attacker.connect(signal_url(fleet))
    try:
        await attacker.join(fleet.token("flood", "mallory"))
        await watcher.join(fleet.token("flood", "watcher", can_publish=False))
        mark = honest.mark()
        answers = []
        for round_ in range(ROUNDS):
            sdp = flood_sdp(base, FLOOD_SECTIONS, first_mid=round_ * FLOOD_SECTIONS)
            assert len(sdp.encode()) < MAX_SDP_BYTES
            await attacker.send({"type": "publish_offer", "sdp": sdp})
            answer = await attacker.receive_type_of(("publish_answer", "error"), timeout=30)
            answers.append(answer["type"] if answer["type"] != "error" else answer["code"])
        await asyncio.sleep(2.0)
        await assert_unharmed(fleet, honest, mark)
        assert answers == ["too_many_tracks"] * ROUNDS, answers
        published = await watcher.drain_types()
        assert "track_published" not in published, "a refused offer published tracks"
    finally:
        await attacker.close()
        await watcher.close()


async def test_offers_failing_half_way_leave_no_transceivers_behind(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    base = await publish_offer_sdp(("audio",))
    attacker = await Attacker.connect(signal_url(fleet))
    try:
        await attacker.join(fleet.token("leak", "mallory"))
        mark = honest.mark()
        codes = []
        for round_ in range(20):
            # 15 acceptable m-lines, then one whose codec is not allowed: the offer fails late
            sdp = flood_sdp(
                base, MAX_MEDIA_SECTIONS - 1, first_mid=round_ * 100, video_codec="H264"
            )
            await attacker.send({"type": "publish_offer", "sdp": sdp})
            answer = await attacker.receive_type_of(("publish_answer", "error"), timeout=30)
            codes.append(answer.get("code", answer["type"]))
        # a valid offer afterwards starts on a clean connection: exactly its own two m-lines
        await attacker.send({"type": "publish_offer", "sdp": await publish_offer_sdp()})
        answer = await attacker.receive_type_of(("publish_answer", "error"), timeout=30)
        await assert_unharmed(fleet, honest, mark)
        assert set(codes) == {"media_error"}, codes
        assert answer["type"] == "publish_answer", answer
        assert answer["sdp"].count("\nm=") == 2, "the answer carries leftover m-lines"
    finally:
        await attacker.close()
