"""The region's Redis loses its primary: calls go on, and signaling follows Sentinel's promotion."""

from __future__ import annotations

import asyncio
import time

from rtcfleet.client.bot import Bot
from rtcfleet.local import LocalFleet
from tests.platform.conftest import receives_from, wait_until


async def test_redis_primary_killed_calls_continue_and_new_joins_work(fleet: LocalFleet) -> None:
    region = fleet.regions[fleet.home]
    urls = [g.signal_url for g in region.gateways]

    def bot(room: str, name: str) -> Bot:
        return Bot(urls, fleet.token(room, name), name=name, width=320, height=180, fps=15)

    alice, bob = bot("before", "alice"), bot("before", "bob")
    carol, dave = bot("after", "carol"), bot("after", "dave")
    try:
        await alice.start()
        await bob.start()
        await wait_until(lambda: receives_from(alice, ["bob"]), 30, "the call")
        frames = alice.peer.received("bob", "video").frames_decoded  # type: ignore[union-attr]
        sampled = time.monotonic()

        region.redis.primary.kill()
        killed = time.monotonic()
        # joining needs Redis: retry until the gateways reach the promoted replica
        deadline = killed + 30
        while True:
            try:
                await carol.start()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await carol.close()
                carol = bot("after", "carol")
                await asyncio.sleep(0.5)
        print(
            f"a new join succeeded {time.monotonic() - killed:.2f} s after the Redis primary died"
        )
        await dave.start()
        await wait_until(lambda: receives_from(dave, ["carol"]), 30, "the new call")
        # the call that was up before never depended on Redis for its media: bob's 15 fps arrived
        got = alice.peer.received("bob", "video").frames_decoded - frames  # type: ignore[union-attr]
        expected = 15 * (time.monotonic() - sampled)
        print(f"alice decoded {got} of about {expected:.0f} frames of bob's across the failover")
        assert got >= 0.8 * expected
        assert alice.session.events.media_rejoins == 0
    finally:
        await asyncio.gather(*(b.close() for b in (alice, bob, carol, dave)))
