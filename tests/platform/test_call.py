"""A real call through the platform: bots join one room through different gateways."""

from __future__ import annotations

import asyncio
from functools import partial

from rtcfleet.client.bot import Bot
from rtcfleet.local import LocalFleet
from tests.platform.conftest import receives_from, wait_until

WINDOW_S = 5.0


async def test_three_bots_through_two_gateways_decode_each_other(fleet: LocalFleet) -> None:
    region = fleet.regions[fleet.home]
    first, second = region.gateways[0].signal_url, region.gateways[1].signal_url
    names = ["alice", "bob", "carol"]
    urls = {"alice": first, "bob": first, "carol": second}
    bots = {n: Bot([urls[n]], fleet.token("call-1", n), name=n) for n in names}
    try:
        for bot in bots.values():
            await bot.start()
        for name, bot in bots.items():
            others = [o for o in names if o != name]
            await wait_until(partial(receives_from, bot, others), 30, f"{name}'s media")
        assert {bot.session.gateway_url for bot in bots.values()} == {first, second}
        assert len({bot.session.node_id for bot in bots.values()}) == 1, "room split"

        sent_before = {n: bots[n].frames_sent() for n in names}
        await asyncio.sleep(WINDOW_S)
        sent_after = {n: bots[n].frames_sent() - 1 for n in names}
        for receiver in names:
            for sender in names:
                if sender == receiver:
                    continue
                stats = bots[receiver].peer.received(sender, "video")
                assert stats is not None
                sent = sent_after[sender] - sent_before[sender] + 1
                got = stats.received_between(sent_before[sender], sent_after[sender])
                ratio = got / sent
                print(f"{receiver} <- {sender}: {got}/{sent} frames ({ratio:.1%})")
                assert ratio >= 0.9, f"{receiver} decoded {ratio:.1%} of {sender}'s frames"
                assert (stats.width, stats.height) == (640, 360)
                audio = bots[receiver].peer.received(sender, "audio")
                assert audio is not None and audio.frames_decoded > 0
    finally:
        await asyncio.gather(*(bot.close() for bot in bots.values()))


async def test_the_same_participants_meet_again_in_a_reused_room(fleet: LocalFleet) -> None:
    """A room closes when its last participant leaves; joining it again starts it afresh."""
    urls = [g.signal_url for g in fleet.regions[fleet.home].gateways]
    for round_ in range(2):
        bots = [
            Bot(urls, fleet.token("again", n), name=n, width=320, height=180, fps=15)
            for n in ("ann", "ben")
        ]
        try:
            for bot in bots:
                await bot.start()
            await wait_until(partial(receives_from, bots[0], ["ben"]), 20, f"round {round_}")
            await wait_until(partial(receives_from, bots[1], ["ann"]), 20, f"round {round_}")
        finally:
            await asyncio.gather(*(bot.close() for bot in bots))
