"""A call whose media goes only through the booted media node's coturn, both ways."""

from __future__ import annotations

import asyncio
import time

import pytest

from infra.spec import CLIENT_SIGNALING_PORT, Role
from rtcfleet.client.bot import Bot
from rtcfleet.rehearsal.region import BootedNode, RehearsedRegion
from rtcfleet.tokens import mint_token

pytestmark = pytest.mark.slow


async def test_two_relay_only_bots_decode_each_others_video(
    region: RehearsedRegion, booted: dict[Role, BootedNode]
) -> None:
    gateway, media = booted[Role.GATEWAY], booted[Role.MEDIA_NODE]
    url = f"ws://{gateway.address}:{CLIENT_SIGNALING_PORT}/v1/signal"
    bots = [
        Bot(
            [url],
            mint_token(region.env, region.secrets["apiSecret"], room="relayed", identity=name),
            name=name,
            relay_only=True,
        )
        for name in ("alice", "bob")
    ]
    try:
        for bot in bots:
            await bot.start(timeout=30)
        alice, bob = bots

        def decoded() -> tuple[int, int]:
            a, b = alice.peer.received("bob", "video"), bob.peer.received("alice", "video")
            return (a.frames_decoded if a else 0, b.frames_decoded if b else 0)

        started = time.monotonic()
        while min(decoded()) < 30:
            assert time.monotonic() - started < 45, f"frames decoded {decoded()}"
            await asyncio.sleep(0.2)
        assert alice.session.node_id == media.cloud.instance_id
        for bot in bots:
            for pc in (bot.peer.publisher_pc, bot.peer.subscriber_pc):
                gatherer = pc.getTransceivers()[0].sender.transport.transport.iceGatherer
                kinds = {c.type for c in gatherer.getLocalCandidates()}
                # nothing but coturn's relayed addresses to send from: the media went through it
                assert kinds == {"relay"}, (bot.name, kinds)
                relayed = {c.ip for c in gatherer.getLocalCandidates()}
                assert relayed == {media.address}, relayed
        print(f"\nrelay-only bots decoded {decoded()} frames through coturn")
    finally:
        await asyncio.gather(*(bot.close() for bot in bots))
