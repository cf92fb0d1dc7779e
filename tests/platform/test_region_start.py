"""A region started from nothing, its media nodes registering through a load balancer that
applies the probe the example stacks plan (AWS and Azure), becomes able to place a call; with
the probe Azure used to plan (join readiness, no fail-open) it never does."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import warnings
from collections.abc import AsyncIterator

import aiohttp
import pytest

from infra.plan.probes import PlannedProbe, signaling_probe
from infra.plan.runner import Planner
from infra.spec import CLIENT_SIGNALING_PORT, READINESS_PATH, REGION_HEALTH_PATH
from rtcfleet.local import FleetSpec, LocalFleet
from rtcfleet.signaling import Join, encode
from tests.platform.conftest import admin
from tests.platform.lb_double import LoadBalancerDouble

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws\..*")

STACKS = {"aws": "prod-aws-us-east-1", "azure": "prod-azure-westeurope"}
REGION = "local-1"


@pytest.fixture(scope="module")
def probes() -> dict[str, PlannedProbe]:
    planner = Planner()
    return {cloud: signaling_probe(planner.plan(stack)) for cloud, stack in STACKS.items()}


@dataclasses.dataclass
class FreshRegion:
    fleet: LocalFleet
    double: LoadBalancerDouble
    spawned_at: float


@contextlib.asynccontextmanager
async def fresh_region(probe: PlannedProbe) -> AsyncIterator[FreshRegion]:
    """Redis, Postgres and the gateways spawned, nothing ready yet; one media node registering
    through the double."""
    fleet = LocalFleet(FleetSpec(regions=1, gateways=2, media=0, workers_per_node=1))
    try:
        await asyncio.to_thread(fleet.start, None)
        spawned_at = time.monotonic()
        double = await LoadBalancerDouble.of(probe, fleet.internal_urls(REGION)).start()
        try:
            fleet.start_media_node(REGION, [double.url])
            yield FreshRegion(fleet, double, spawned_at)
        finally:
            await double.close()
    finally:
        await asyncio.to_thread(fleet.remove)


async def join_once(fleet: LocalFleet, attempt: int) -> str:
    """One signaling join; the answer's type (``joined`` once a room can be placed)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
        try:
            async with http.ws_connect(fleet.gateway_urls(REGION)[0]) as ws:
                await ws.send_str(encode(Join(token=fleet.token("start", f"probe-{attempt}"))))
                frame = await ws.receive(timeout=3)
                message = json.loads(frame.data) if frame.type == aiohttp.WSMsgType.TEXT else {}
                return str(message.get("type", frame.type))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return type(exc).__name__


async def region_health(fleet: LocalFleet) -> int:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        try:
            url = fleet.regions[REGION].gateways[0].http_url + REGION_HEALTH_PATH
            async with http.get(url) as response:
                return response.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            return 0


@pytest.mark.parametrize("cloud", ["aws", "azure"])
async def test_a_region_from_nothing_places_a_call(
    probes: dict[str, PlannedProbe], cloud: str
) -> None:
    probe = probes[cloud]
    # the double probes each gateway's client port, which stands for the planned 8080
    assert probe.port == CLIENT_SIGNALING_PORT
    assert probe.path == "/readyz/registration" and probe.fail_open
    async with fresh_region(probe) as region:
        attempt, answer = 0, ""
        while answer != "joined":
            attempt += 1
            answer = await join_once(region.fleet, attempt)
            took = time.monotonic() - region.spawned_at
            assert took < 120, f"no placement after {took:.0f} s: {answer}"
            if answer != "joined":
                await asyncio.sleep(0.2)
        placed = time.monotonic() - region.spawned_at
        while await region_health(region.fleet) != 200:
            assert time.monotonic() - region.spawned_at < 120, "region health never green"
            await asyncio.sleep(0.2)
        green = time.monotonic() - region.spawned_at
        print(
            f"{cloud} probe {probe}: a join was placed {placed:.1f} s after the gateways were "
            f"spawned, region health green at {green:.1f} s; load balancer forwarded "
            f"{region.double.forwarded}, refused {region.double.refused}"
        )
        status, nodes = admin(region.fleet, "GET", "/api/nodes")
        assert status == 200 and [n["state"] for n in nodes] == ["healthy"]


async def test_registration_behind_join_readiness_deadlocks(
    probes: dict[str, PlannedProbe],
) -> None:
    """Azure's former wiring: the signaling probe asked join readiness (a registered media node)
    and, every gateway down, the load balancer sent no new flows."""
    former = dataclasses.replace(probes["azure"], path=READINESS_PATH, fail_open=False)
    async with fresh_region(former) as region:
        # three probe rounds: every gateway is probed down each time, for want of a media node
        # that cannot register because every gateway is probed down
        while region.double.rounds < 3:
            await asyncio.sleep(0.2)
        took = time.monotonic() - region.spawned_at
        assert [t.up for t in region.double.targets] == [False, False]
        assert region.double.refused > 0 and region.double.forwarded == 0
        assert admin(region.fleet, "GET", "/api/nodes") == (200, [])
        assert await join_once(region.fleet, 1) == "error"
        assert await region_health(region.fleet) == 503
        assert region.fleet.regions[REGION].media_nodes[0].process.running()
        print(
            f"former Azure probe {former}: after {took:.1f} s and {region.double.rounds} probe "
            f"rounds no gateway is up, {region.double.refused} registration attempts refused, "
            "no media node registered"
        )
