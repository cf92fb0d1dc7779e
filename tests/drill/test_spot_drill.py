"""Spot interruption drill on a local fleet: a doomed media node's calls move before it goes.

One region (Redis, Postgres, a gateway) and media nodes whose cloud is a local double: AWS
IMDSv2 with the Spot interruption notice, Azure IMDS with Scheduled Events. Five bots
(160x90 at 10 fps) talk in two rooms on node A (AWS). Node B (Azure) joins the region; EC2
serves A its two-minute notice and every bot must have media again, on B, within the notice,
and A must leave the region.
Then node C joins, Azure preempts B with its 30 s notice, and the same bots must move to C.

Printed per case: time from the notice to each participant's media back (first decoded frame
of every other participant on the new node), p50 and max, and the node's exit.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
import urllib.request
from collections.abc import Iterator

import pytest

from rtcfleet.client.bot import Bot
from rtcfleet.local import LocalFleet
from rtcfleet.local.fleet import ServiceProcess
from tests.media_node.cloud_double import (
    AwsInstance,
    AzureInstance,
    CloudDouble,
    cloud_env,
    exit_code,
    start_cloud_fleet,
)
from tests.platform.conftest import admin, start_call, wait_until

pytestmark = pytest.mark.slow

ROOMS = {"spot-a": ["ann", "ben", "cat"], "spot-b": ["dan", "eve"]}
# small and slow: the drill measures the move, and five bots share one process of the test
VIDEO = {"width": 160, "height": 90, "fps": 10}
AWS_NOTICE_S = 120.0  # EC2's Spot interruption notice
AZURE_NOTICE_S = 30.0  # the least notice Azure gives a Preempt


@pytest.fixture(scope="module")
def cloud() -> Iterator[CloudDouble]:
    double = CloudDouble().start()
    double.aws = AwsInstance("i-0spot0000000000a", "us-east-1", "prod-use1-media")
    double.azure = AzureInstance(
        name="media_5",
        resource_id=(
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rtcfleet-prod"
            "/providers/Microsoft.Compute/virtualMachineScaleSets/media/virtualMachines/5"
        ),
    )
    yield double
    double.stop()


@pytest.fixture(scope="module")
def fleet(cloud: CloudDouble) -> Iterator[LocalFleet]:
    """The region starts with node A only, so every room is placed there."""
    fleet = start_cloud_fleet(cloud)
    yield fleet
    fleet.remove()


def registered(fleet: LocalFleet) -> dict[str, str]:
    status, nodes = admin(fleet, "GET", "/api/nodes")
    assert status == 200, nodes
    return {str(n["node_id"]): str(n["state"]) for n in nodes}


def drain_count(fleet: LocalFleet, cloud: str) -> float:
    """How many drains the gateway counted for ``cloud`` (its Prometheus histogram)."""
    gateway = fleet.regions[fleet.home].gateways[0]
    with urllib.request.urlopen(gateway.http_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = (
        r"^rtcfleet_gateway_media_drain_seconds_count\{"
        rf'cloud="{cloud}",notice="interruption"\}} (\S+)$'
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def media_back(bot: Bot, others: list[str], node: str, since: float) -> float | None:
    """When ``bot`` had decoded a frame of every other participant through ``node`` (monotonic
    seconds), or None while it has not."""
    if bot.session.node_id != node:
        return None
    firsts = []
    for other in others:
        stats = bot.peer.received(other, "video")
        if stats is None or stats.first_frame_at is None or stats.first_frame_at < since:
            return None
        firsts.append(stats.first_frame_at)
    return max(firsts)


async def measure_move(
    fleet: LocalFleet, bots: list[Bot], target: ServiceProcess, since: float, notice: float
) -> list[float]:
    """Seconds from ``since`` to each bot's media back on ``target``, within ``notice``."""
    rooms = {name: members for members in ROOMS.values() for name in members}
    times: dict[str, float] = {}

    def all_back() -> bool:
        for bot in bots:
            if bot.name not in times:
                others = [n for n in rooms[bot.name] if n != bot.name]
                at = media_back(bot, others, target.name, since)
                if at is not None:
                    times[bot.name] = at - since
        return len(times) == len(bots)

    try:
        await wait_until(all_back, notice, f"every participant's media on {target.name}")
    except AssertionError as exc:
        missing = [where(bot, since) for bot in bots if bot.name not in times]
        raise AssertionError(f"{exc}: {missing}") from None
    return [times[bot.name] for bot in bots]


def where(bot: Bot, since: float) -> dict[str, object]:
    """What a bot went through since ``since`` (messages with their times from it)."""
    events = bot.session.events
    return {
        "bot": bot.name,
        "node": bot.session.node_id,
        "media_rejoins": events.media_rejoins,
        "media_timeouts": events.media_timeouts,
        "errors": [e.get("code") for e in events.errors],
        "messages": [
            f"{m['type']}@{m['at'] - since:.2f}" for m in events.messages if m["at"] >= since
        ],
        "frames": {f"{p}/{k}": s.frames_decoded for (p, k), s in bot.peer.remote.items()},
    }


def roster_intact(bots: list[Bot]) -> bool:
    """Each bot's roster holds exactly its room's other participants (no late word from the
    old node unsaying the new room's joins)."""
    rooms = {name: members for members in ROOMS.values() for name in members}
    return all(bot.session.events.participants == set(rooms[bot.name]) - {bot.name} for bot in bots)


def show(
    case: str,
    bots: list[Bot],
    times: list[float],
    since: float,
    exited_after: float,
    node: ServiceProcess,
) -> None:
    """The case's figures, each participant's, and what the doomed node logged of its drain."""
    print(
        f"{case}: media back p50 {statistics.median(times):.2f} s, max {max(times):.2f} s "
        f"over {len(times)} participants; node gone {exited_after:.2f} s after the notice"
    )
    for bot, seconds in zip(bots, times, strict=True):
        print(f"  {bot.name}: {seconds:.2f} s {where(bot, since)}")
    for line in node.process.log_path.read_text().splitlines():
        if re.search(r"draining|evacuat|told to move|drain for", line):
            print(f"  {node.name}: {line}")


async def test_spot_interruptions_move_every_call_before_the_node_goes(
    fleet: LocalFleet, cloud: CloudDouble
) -> None:
    assert cloud.aws is not None and cloud.azure is not None
    region = fleet.regions[fleet.home]
    node_a = region.media_nodes[0]
    calls = [await start_call(fleet, room, names, **VIDEO) for room, names in ROOMS.items()]
    bots = [bot for call in calls for bot in call]
    try:
        assert {bot.session.node_id for bot in bots} == {node_a.name}

        # ---- AWS: EC2's two-minute notice to A; B is the region's other node ----------------
        fleet.spec.media_env = cloud_env(cloud, "azure")
        node_b = fleet.start_media_node(fleet.home)
        await asyncio.to_thread(fleet.wait_ready, 30)  # the bots keep their loop meanwhile
        noticed = time.monotonic()
        cloud.interrupt_spot(AWS_NOTICE_S)
        exited = asyncio.create_task(
            wait_until(lambda: exit_code(node_a) is not None, AWS_NOTICE_S, "A to exit")
        )
        aws_times = await measure_move(fleet, bots, node_b, noticed, AWS_NOTICE_S)
        gone = await exited
        assert exit_code(node_a) == 0
        assert node_a.name not in registered(fleet)
        assert cloud.aws.unauthenticated_reads == 0, "an IMDS read went without a token"
        assert roster_intact(bots), [sorted(b.session.events.participants) for b in bots]
        await wait_until(lambda: drain_count(fleet, "aws") == 1, 5, "A's drain report")
        show("aws spot interruption", bots, aws_times, noticed, gone, node_a)

        # ---- Azure: Preempt of B, 30 s ahead; C takes the calls --------------------------------
        fleet.spec.media_env = {}
        node_c = fleet.start_media_node(fleet.home)
        await asyncio.to_thread(fleet.wait_ready, 30)  # the bots keep their loop meanwhile
        noticed = time.monotonic()
        event = cloud.schedule_azure_event("Preempt", AZURE_NOTICE_S)
        exited = asyncio.create_task(
            wait_until(lambda: exit_code(node_b) is not None, AZURE_NOTICE_S, "B to exit")
        )
        azure_times = await measure_move(fleet, bots, node_c, noticed, AZURE_NOTICE_S)
        gone = await exited
        assert exit_code(node_b) == 0
        assert node_b.name not in registered(fleet)
        assert cloud.azure.approvals == [event], "the drained node approved its Preempt once"
        assert roster_intact(bots), [sorted(b.session.events.participants) for b in bots]
        await wait_until(lambda: drain_count(fleet, "azure") == 1, 5, "B's drain report")
        show("azure Preempt", bots, azure_times, noticed, gone, node_b)
        assert registered(fleet) == {node_c.name: "healthy"}
    finally:
        await asyncio.gather(*(bot.close() for bot in bots), return_exceptions=True)
