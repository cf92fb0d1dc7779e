"""Draining a media node: its calls finish, it takes no new room, then it exits 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from typing import Any

from rtcfleet.client.bot import Bot
from rtcfleet.local import LocalFleet
from tests.platform.conftest import admin, start_call, wait_until


def exited(process) -> int | None:
    try:
        return int(process.wait(0))
    except subprocess.TimeoutExpired:
        return None


def node_record(fleet: LocalFleet, node_id: str) -> dict[str, Any]:
    """The node as the admin API reports it (state, utilization, load)."""
    status, nodes = admin(fleet, "GET", "/api/nodes")
    assert status == 200, nodes
    return next((n for n in nodes if n["node_id"] == node_id), {"state": "absent"})


async def test_admin_drain_keeps_the_call_then_the_node_exits(fleet: LocalFleet) -> None:
    """The draining node is the least loaded one, so placement would pick it but for the drain."""
    region = fleet.regions[fleet.home]
    urls = [g.signal_url for g in region.gateways]
    small: dict[str, Any] = {"width": 320, "height": 180, "fps": 15}
    alice, bob = await start_call(fleet, "drain-1", ["alice", "bob"], **small)
    busy: list[Bot] = []
    carol = Bot(urls, fleet.token("drain-3", "carol"), name="carol", **small)
    try:
        node_id = alice.session.node_id
        assert node_id is not None
        node = next(m for m in region.media_nodes if m.name == node_id)
        (other_id,) = (
            m.name for m in region.media_nodes if m.name != node_id and m.process.running()
        )
        # a node just started reports its start-up CPU for a few heartbeats
        await wait_until(
            lambda: (
                node_record(fleet, other_id)["utilization"]
                < node_record(fleet, node_id)["utilization"]
            ),
            15,
            f"{other_id} to report less load than {node_id}",
        )
        busy = await start_call(fleet, "drain-2", ["dan", "eve", "fay"], **small)
        assert busy[0].session.node_id == other_id, "placement ignored the load"
        await wait_until(
            lambda: (
                node_record(fleet, other_id)["utilization"]
                > node_record(fleet, node_id)["utilization"]
            ),
            15,
            f"{other_id} to report more load than {node_id}",
        )

        assert admin(fleet, "POST", f"/api/nodes/{node_id}/drain")[0] == 202
        await wait_until(
            lambda: node_record(fleet, node_id)["state"] == "draining", 10, "the draining state"
        )
        draining, other = node_record(fleet, node_id), node_record(fleet, other_id)
        print(
            f"utilization: {node_id} {draining['utilization']}, {other_id} {other['utilization']}"
        )
        assert draining["utilization"] < other["utilization"], "placement would not pick it anyway"
        await carol.start()
        assert carol.session.node_id == other_id, "a draining node took a new room"

        frames_before = alice.peer.received("bob", "video").frames_decoded  # type: ignore[union-attr]
        await asyncio.sleep(3.0)
        frames_after = alice.peer.received("bob", "video").frames_decoded  # type: ignore[union-attr]
        assert frames_after - frames_before >= 30, "the call stopped during the drain"
        assert exited(node.process) is None, "the node left before its call ended"

        await alice.close()
        await bob.close()
        await wait_until(lambda: exited(node.process) is not None, 30, "the node to exit")
        assert exited(node.process) == 0
    finally:
        await asyncio.gather(alice.close(), bob.close(), carol.close(), *(b.close() for b in busy))
        fleet.start_media_node(fleet.home)
        fleet.wait_ready(30)


async def test_sigterm_drains_and_a_second_sigterm_exits_at_once(fleet: LocalFleet) -> None:
    region = fleet.regions[fleet.home]
    alice, bob = await start_call(fleet, "term-1", ["alice", "bob"])
    try:
        node = next(m for m in region.media_nodes if m.name == alice.session.node_id)
        node.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.5)
        assert exited(node.process) is None, "one SIGTERM must drain, not exit"
        node.process.send_signal(signal.SIGTERM)
        await wait_until(lambda: exited(node.process) is not None, 10, "exit on second SIGTERM")
        assert exited(node.process) == 0
    finally:
        await asyncio.gather(alice.close(), bob.close())
        fleet.start_media_node(fleet.home)
        fleet.wait_ready(30)


def test_admin_api_refuses_without_the_token(fleet: LocalFleet) -> None:
    for token in ("", "wrong"):
        status, body = admin(fleet, "GET", "/api/nodes", token=token)
        assert (status, body["error"]) == (401, "unauthorized")
