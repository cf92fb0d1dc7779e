"""Faults that drop packets, on a two-region local fleet whose hosts sit in network namespaces.

A blackholed gateway or region resets nothing: clients learn of it only from the silence of
their pings, and must leave it in seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from media_node import rtp_hooks
from rtcfleet.client.bot import Bot
from rtcfleet.drill import DrillSpec, run_region_outage
from rtcfleet.drill.backend import FaultKind
from rtcfleet.drill.local import LocalBackend
from rtcfleet.local import FleetSpec, LocalFleet
from rtcfleet.netfault import Blackhole, Fabric, leftovers, missing_tools
from tests.platform.conftest import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_tools()), reason=f"network namespaces need {missing_tools()}"),
]


@pytest.fixture(scope="module")
def fleet() -> Iterator[LocalFleet]:
    fabric = Fabric().start()
    try:
        rtp_hooks.restrict_host_addresses([fabric.client_address])
        fleet = LocalFleet(FleetSpec(regions=2, gateways=2, media=1), fabric=fabric).start()
        try:
            yield fleet
        finally:
            fleet.remove()
    finally:
        fabric.remove()
        rtp_hooks.restrict_host_addresses_from_environment()
    assert leftovers(fabric.tag) == []


def fresh_media(bot: Bot, publisher: str, since: float) -> bool:
    stats = bot.peer.received(publisher, "video")
    return stats is not None and stats.last_frame_at is not None and stats.last_frame_at > since


async def test_a_blackholed_gateway_is_left_and_media_never_stops(fleet: LocalFleet) -> None:
    assert fleet.fabric is not None
    urls = fleet.gateway_urls("local-1")
    bots = [
        Bot(urls, fleet.token("gw-fault", name), name=name, width=320, height=180, fps=15)
        for name in ("ann", "ben")
    ]
    try:
        for bot in bots:
            await bot.start()
        ann, ben = bots
        await wait_until(
            lambda: fresh_media(ann, "ben", 0) and fresh_media(ben, "ann", 0), 20, "media"
        )
        used = ann.session.gateway_url
        assert used == ben.session.gateway_url == urls[0]
        gateway = fleet.regions["local-1"].gateways[0]
        fleet.fabric.apply([Blackhole(fleet.host_addresses(gateway.name))])
        fault_at = time.monotonic()
        took = await wait_until(
            lambda: all(b.session.gateway_url != used and b.session.events.resumes for b in bots),
            20,
            "both sessions resumed on the other gateway",
        )
        print(f"signaling resumed on the other gateway {took:.2f} s after the blackhole")
        for bot in bots:
            assert bot.session.events.signaling_timeouts >= 1, "the silence was not noticed"
            assert bot.session.events.media_rejoins == 0, "media does not pass through gateways"
        now = time.monotonic()
        await wait_until(
            lambda: fresh_media(ann, "ben", now) and fresh_media(ben, "ann", now), 5, "media"
        )
        assert fresh_media(ann, "ben", fault_at)
        gaps = {
            b.name: stats.longest_gap_s
            for b, other in ((ann, "ben"), (ben, "ann"))
            if (stats := b.peer.received(other, "video")) is not None
        }
        print(f"longest video gap of each bot over the call: {gaps}")
    finally:
        fleet.fabric.heal()
        await asyncio.gather(*(b.close() for b in bots))


@pytest.mark.parametrize("fault", ["blackhole", "kill"])
async def test_a_lost_media_node_loses_its_room_before_its_heartbeat_is_stale(
    fleet: LocalFleet, fault: str
) -> None:
    assert fleet.fabric is not None
    region = fleet.regions["local-1"]
    if sum(m.process.running() for m in region.media_nodes) < 2:
        fleet.start_media_node("local-1")
        await asyncio.to_thread(fleet.wait_ready)
    urls = fleet.gateway_urls("local-1")
    room = f"node-{fault}"
    bots = [
        Bot(urls, fleet.token(room, name), name=name, width=320, height=180, fps=15)
        for name in ("ann", "ben")
    ]
    try:
        for bot in bots:
            await bot.start()
        ann, ben = bots
        await wait_until(
            lambda: fresh_media(ann, "ben", 0) and fresh_media(ben, "ann", 0), 20, "media"
        )
        lost = ann.session.node_id
        assert lost is not None
        if fault == "blackhole":
            fleet.fabric.apply([Blackhole(fleet.host_addresses(lost))])
        else:
            next(m for m in region.media_nodes if m.name == lost).process.kill()
        fault_at = time.monotonic()
        took = await wait_until(
            lambda: all(
                b.session.node_id not in (None, lost)
                and fresh_media(b, "ben" if b is ann else "ann", fault_at)
                for b in bots
            ),
            20,
            "media on another node",
        )
        print(f"media node {fault}: media back on another node after {took:.2f} s")
        assert any(b.session.events.media_timeouts for b in bots), "the silence was not noticed"
        for bot in bots:
            # moved on the clients' word and the node's missed beats, before the gateway's own
            # reconnect (sent only when the heartbeat goes stale)
            assert "reconnect" not in [m["type"] for m in bot.session.events.messages]
    finally:
        fleet.fabric.heal()
        await asyncio.gather(*(b.close() for b in bots))


async def test_a_blackholed_region_drill(fleet: LocalFleet) -> None:
    backend = LocalBackend(fleet)
    spec = DrillSpec(region="local-2", bots=4, rooms=2, fault=FaultKind.BLACKHOLE)
    report = await run_region_outage(backend, spec)
    print(json.dumps(report.to_json(), indent=1))
    assert report.fault == "blackhole"
    assert report.affected_bots >= 2, "a room must have lived in the blackholed region"
    assert report.sessions_dropped == 0
    assert len(report.time_to_media_s) == report.affected_bots
    assert report.time_to_detect_s is not None
    assert any("blackhole" in step for step in report.steps)
    assert not fleet.fabric or fleet.fabric.faults == [], "the drill heals what it broke"


async def test_a_partition_never_leaves_a_room_live_in_two_regions(fleet: LocalFleet) -> None:
    """Shorter than the drill's 30 s (the figure for that is in the report), same checks."""
    backend = LocalBackend(fleet)
    spec = DrillSpec(region="local-2", bots=4, rooms=2, fault=FaultKind.PARTITION, partition_s=8)
    report = await run_region_outage(backend, spec)
    print(json.dumps(report.split_brain, indent=1))
    split = report.split_brain
    assert split["samples"] > 10
    assert split["samples_live_in_two_regions"] == 0
    owners = split["owners_seen"]
    assert sum(1 for nodes in owners.values() if nodes) == 1, owners
    assert all(bot["error"] is None for bot in split["bots"]), split["bots"]
    assert len({bot["joined_region"] for bot in split["bots"]}) == 1
    assert report.sessions_dropped == 0, "a partition between regions must not cut clients off"
