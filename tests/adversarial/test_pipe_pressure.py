"""Many sockets at once sending the largest offers the gateway admits, each answered by a large
answer: commands fill the pipe to the worker while answers fill the pipe back. Neither side may
wait on the other (a deadlock stops the media of every room on the worker), and no command may
go unanswered: each gets its answer or a documented refusal.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid

import pytest

from media_node.node_bus import RESYNC_REASON
from rtcfleet.local import LocalFleet
from rtcfleet.signaling import MAX_MEDIA_SECTIONS, MAX_SDP_BYTES
from tests.adversarial.conftest import (
    NEW_JOIN_SECONDS,
    Attacker,
    HonestCall,
    assert_unharmed,
    new_join_seconds,
    publish_offer_sdp,
    signal_url,
)

ATTACKERS = 32
# within a socket's burst, so the gateway's rate limiter passes every one of them
OFFERS_EACH = 12
ANSWERS_WITHIN_S = 60.0
NEW_JOIN_GIVE_UP_S = 10.0
# what a command may be refused with (docs/signaling.md, docs/admin.md "Limits")
REFUSALS = {"media_error: media node busy", "rate_limited", f"reconnect: {RESYNC_REASON}"}


def padded(sdp: str) -> str:
    """The offer grown to just under the gateway's SDP bound with session attributes a parser
    ignores: the largest command a client can send (about 63 KB; its answer is about 23 KB)."""
    lines = sdp.split("\r\n")
    first_media = next(i for i, line in enumerate(lines) if line.startswith("m="))
    room = MAX_SDP_BYTES - 1024 - len(sdp.encode())
    padding = [f"a=x-pad{i}:" + "p" * 990 for i in range(room // 1000)]
    return "\r\n".join(lines[:first_media] + padding + lines[first_media:])


async def offers_and_outcomes(attacker: Attacker, sdp: str, outcomes: list[str]) -> None:
    """Send every offer at once, then read what each got (into ``outcomes``): an answer or a
    refusal."""
    for _ in range(OFFERS_EACH):
        await attacker.send({"type": "publish_offer", "sdp": sdp})
    deadline = time.monotonic() + ANSWERS_WITHIN_S
    while len(outcomes) < OFFERS_EACH:
        try:
            message = await attacker.receive(max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            break
        kind = message.get("type")
        if kind == "publish_answer":
            assert len(message["sdp"]) > 16 * 1024, "a small answer: the offer was not taken"
            outcomes.append("publish_answer")
        elif kind == "error" and message["code"] == "media_error":
            outcomes.append("media_error: " + str(message.get("message", ""))[:17])
        elif kind == "error":
            outcomes.append(str(message["code"]))
        elif kind == "reconnect":
            # the session's media must start again: nothing outstanding will be answered
            outcomes += [f"reconnect: {message.get('reason')}"] * (OFFERS_EACH - len(outcomes))


async def joins_while(fleet: LocalFleet, running: asyncio.Future[list[None]]) -> list[float]:
    """New joins on the gateway, one after another, for as long as the attack runs."""
    waits = []
    while not running.done():
        try:
            waits.append(await asyncio.wait_for(new_join_seconds(fleet), NEW_JOIN_GIVE_UP_S))
        except TimeoutError:
            waits.append(float("inf"))
        await asyncio.sleep(0.3)
    return waits


async def test_large_offers_from_many_sockets_at_once_are_each_answered_without_deadlock(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    sdp = padded(await publish_offer_sdp(("audio", "video") * (MAX_MEDIA_SECTIONS // 2)))
    assert MAX_SDP_BYTES - 2048 < len(sdp.encode()) <= MAX_SDP_BYTES
    attackers = await asyncio.gather(
        *(Attacker.connect(signal_url(fleet)) for _ in range(ATTACKERS))
    )
    try:
        tag = uuid.uuid4().hex[:6]
        await asyncio.gather(
            *(
                attacker.join(fleet.token(f"pressure-{tag}-{i}", f"mallory{i}"))
                for i, attacker in enumerate(attackers)
            )
        )
        mark = honest.mark()
        started = time.monotonic()
        outcomes: list[list[str]] = [[] for _ in attackers]
        attack = asyncio.gather(
            *(offers_and_outcomes(a, sdp, o) for a, o in zip(attackers, outcomes, strict=True))
        )
        try:
            async with asyncio.timeout(ANSWERS_WITHIN_S + NEW_JOIN_GIVE_UP_S):
                joins = await joins_while(fleet, attack)
                await attack
        except TimeoutError:
            attack.cancel()
            got = collections.Counter(o for each in outcomes for o in each)
            pytest.fail(f"the attack's offers stalled: {dict(got)} of {ATTACKERS * OFFERS_EACH}")
        took = time.monotonic() - started
        counts = collections.Counter(o for each in outcomes for o in each)
        print(
            f"{ATTACKERS} sockets x {OFFERS_EACH} offers of {len(sdp.encode())} B in {took:.1f} s:"
            f" {dict(counts)}; new joins during it: {len(joins)}, max {max(joins):.2f} s"
        )
        unanswered = [OFFERS_EACH - len(each) for each in outcomes]
        assert sum(unanswered) == 0, f"offers never answered, per socket: {unanswered}"
        assert set(counts) <= {"publish_answer"} | REFUSALS, f"not answered as documented: {counts}"
        assert counts["publish_answer"] > 0, "no offer got through: the attack measured nothing"
        assert max(joins) <= NEW_JOIN_SECONDS, f"a new join waited {max(joins):.2f} s"
        await assert_unharmed(fleet, honest, mark)
    finally:
        await asyncio.gather(*(a.close() for a in attackers), return_exceptions=True)
