"""Failures of single processes: a gateway or a media node killed mid-call."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from rtcfleet.client.bot import Bot
from rtcfleet.local import LocalFleet
from tests.platform.conftest import admin, receives_from, start_call, wait_until


class GapMeter:
    """Samples how long ago a bot last decoded a frame from a publisher; keeps the worst."""

    def __init__(self, bot: Bot, publisher: str) -> None:
        self.bot, self.publisher = bot, publisher
        self.max_gap = 0.0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            stats = self.bot.peer.received(self.publisher, "video")
            if stats is not None and stats.last_frame_at is not None:
                self.max_gap = max(self.max_gap, time.monotonic() - stats.last_frame_at)
            await asyncio.sleep(0.02)

    async def stop(self) -> float:
        self._task.cancel()
        return self.max_gap


def node_states(fleet: LocalFleet) -> dict[str, str]:
    status, nodes = admin(fleet, "GET", "/api/nodes")
    assert status == 200
    return {node["node_id"]: node["state"] for node in nodes}


async def test_gateway_killed_media_continues_and_signaling_resumes(fleet: LocalFleet) -> None:
    region = fleet.regions[fleet.home]
    first, second = region.gateways[0], region.gateways[1]
    urls = [first.signal_url, second.signal_url]
    alice = Bot(urls, fleet.token("gw-kill", "alice"), name="alice")
    bob = Bot([second.signal_url, first.signal_url], fleet.token("gw-kill", "bob"), name="bob")
    try:
        await alice.start()
        await bob.start()
        await wait_until(lambda: receives_from(alice, ["bob"]), 30, "alice's media")
        await wait_until(lambda: receives_from(bob, ["alice"]), 30, "bob's media")
        assert alice.session.gateway_url == first.signal_url
        meter = GapMeter(alice, "bob")
        session_id = alice.session.session_id

        first.process.kill()
        took = await wait_until(lambda: alice.session.events.resumes >= 1, 15, "resume")
        print(f"signaling resumed through the other gateway after {took:.2f} s")
        await asyncio.sleep(2.0)
        gap = await meter.stop()
        print(f"longest gap in alice's frames from bob: {gap * 1000:.0f} ms")
        assert gap < 1.0
        assert alice.session.gateway_url == second.signal_url
        assert alice.session.session_id == session_id
        assert alice.session.events.media_rejoins == 0

        # signaling still works after the resume: a newcomer is announced to alice
        carol = Bot([second.signal_url], fleet.token("gw-kill", "carol"), name="carol")
        await carol.start()
        try:
            await wait_until(lambda: "carol" in alice.session.events.participants, 10, "carol")
            await wait_until(lambda: receives_from(alice, ["carol"]), 30, "carol's media")
        finally:
            await carol.close()
    finally:
        await asyncio.gather(alice.close(), bob.close())
        fleet.start_gateway(fleet.home, 0)
        fleet.wait_ready(30)


async def test_media_node_killed_rooms_move_to_another_node(fleet: LocalFleet) -> None:
    region = fleet.regions[fleet.home]
    bots = await start_call(fleet, "node-kill", ["alice", "bob"])
    try:
        node_id = bots[0].session.node_id
        assert node_id is not None
        victim = next(m for m in region.media_nodes if m.name == node_id)

        victim.process.kill()
        killed = time.monotonic()
        out_after = await wait_until(
            lambda: node_states(fleet).get(node_id, "stale") != "healthy",
            10,
            "the dead node to leave placement",
        )
        print(f"node {node_id} left placement {out_after:.2f} s after SIGKILL")
        assert out_after <= 6.0

        for bot, other in ((bots[0], "bob"), (bots[1], "alice")):

            def moved(b: Bot = bot, o: str = other) -> bool:
                return b.session.node_id not in (None, node_id) and receives_from(b, [o])

            await wait_until(
                moved,
                30,
                f"{bot.name}'s media on another node",
            )
        to_media = [
            max(s.first_frame_at for s in bot.peer.remote.values() if s.first_frame_at) - killed
            for bot in bots
        ]
        print(f"time to media after the node's death: {', '.join(f'{t:.2f} s' for t in to_media)}")
        assert all(bot.session.events.media_rejoins == 1 for bot in bots)
    finally:
        await asyncio.gather(*(bot.close() for bot in bots))
        fleet.start_media_node(fleet.home)


def worker_pids(supervisor_pid: int) -> list[int]:
    """The forwarding worker processes of a media node (not multiprocessing's tracker)."""
    children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text().split()
    pids = []
    for child in map(int, children):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(child)
    return pids


async def test_a_dead_worker_is_replaced_and_its_calls_come_back(fleet: LocalFleet) -> None:
    region = fleet.regions[fleet.home]
    bots = await start_call(fleet, "worker-kill", ["alice", "bob"], width=320, height=180, fps=15)
    try:
        node = next(m for m in region.media_nodes if m.name == bots[0].session.node_id)
        assert node.process.pid is not None
        (worker,) = worker_pids(node.process.pid)

        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        for bot, other in ((bots[0], "bob"), (bots[1], "alice")):

            def rejoined(b: Bot = bot, o: str = other) -> bool:
                return b.session.events.media_rejoins == 1 and receives_from(b, [o])

            await wait_until(
                rejoined,
                30,
                f"{bot.name}'s media after the worker's death",
            )
        print(f"media back {time.monotonic() - killed:.2f} s after the worker's SIGKILL")
        assert node.process.running(), "the node itself stays up"
        (replacement,) = worker_pids(node.process.pid)
        assert replacement != worker
        assert bots[0].session.node_id == node.name, "the room stays on its node"
    finally:
        await asyncio.gather(*(bot.close() for bot in bots))
