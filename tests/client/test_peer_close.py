"""A client's peer connections close even when an earlier close was cancelled half-way."""

from __future__ import annotations

import asyncio

from rtcfleet.client.peer import ClientPeer


async def test_a_close_cancelled_half_way_still_closes_the_connections() -> None:
    peer = ClientPeer("carla", width=64, height=48, fps=2)
    await peer.create_publish_offer()
    # aiortc drops a connection's listeners as the last step of its close
    peer.publisher_pc.on("connectionstatechange", lambda: None)
    interrupted = asyncio.ensure_future(peer.close())
    await asyncio.sleep(0)
    interrupted.cancel()
    await asyncio.gather(interrupted, return_exceptions=True)

    await asyncio.wait_for(peer.close(), 10.0)
    assert peer.publisher_pc.listeners("connectionstatechange") == [], "close never finished"
