"""Faults that must not cascade: the settings writer lost, a Redis failover, a region's media
nodes lost. Liveness holds through each; readiness and region health say what changed."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial

import aiohttp
import pytest
import redis.asyncio as aioredis

from infra.spec import REGION_HEALTH_PATH
from rtcfleet.client.bot import Bot
from rtcfleet.local import FleetSpec, LocalFleet
from rtcfleet.servers.redis import SENTINEL_MASTER_NAME
from rtcfleet.signaling import Join, encode
from tests.platform.conftest import admin, receives_from, wait_until

# how long the home Postgres stays dead before it is promoted away
WRITER_OUTAGE_S = float(os.environ.get("RTCFLEET_WRITER_OUTAGE_S", "60"))


@pytest.fixture(scope="module")
def regions() -> Iterator[LocalFleet]:
    fleet = LocalFleet(FleetSpec(regions=2, gateways=2, media=1, workers_per_node=1)).start()
    yield fleet
    fleet.remove()


class LivenessWatch:
    """Polls every gateway's and media node's liveness, as a node group's check would."""

    def __init__(self, fleet: LocalFleet) -> None:
        self.urls = [
            service.liveness_url
            for region in fleet.regions.values()
            for service in (*region.gateways, *region.media_nodes)
            if service.process.running()
        ]
        self.polls = 0
        self.failures: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                for url in self.urls:
                    try:
                        async with http.get(url) as response:
                            if response.status != 200:
                                self.failures.append(f"{url}: {response.status}")
                    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                        self.failures.append(f"{url}: {exc!r}")
                self.polls += 1
                await asyncio.sleep(0.2)

    def __enter__(self) -> LivenessWatch:
        self._task = asyncio.ensure_future(self._loop())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def join_once(url: str, token: str) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        try:
            async with http.ws_connect(url) as ws:
                await ws.send_str(encode(Join(token=token)))
                frame = await ws.receive(timeout=2)
                if frame.type != aiohttp.WSMsgType.TEXT:
                    return str(frame.type)
                message = json.loads(frame.data)
                if message.get("type") == "joined":
                    await ws.send_str(json.dumps({"type": "leave"}))
                return str(message.get("type"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return type(exc).__name__


async def region_health(fleet: LocalFleet, region: str) -> bool:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
        for gateway in fleet.regions[region].gateways:
            try:
                async with http.get(gateway.http_url + REGION_HEALTH_PATH) as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError, OSError):
                continue
    return False


async def calls(fleet: LocalFleet, tag: str) -> list[tuple[Bot, Bot]]:
    """A two-party call in every region, each bot decoding the other."""
    pairs = []
    for region in fleet.regions:
        urls = fleet.gateway_urls(region)
        room = f"{tag}-{region}"
        a, b = (
            Bot(urls, fleet.token(room, name), name=name, width=160, height=90, fps=10)
            for name in ("a", "b")
        )
        pairs.append((a, b))
        await a.start()
        await b.start()
        await wait_until(partial(receives_from, a, ["b"]), 30, f"media in {region}")
    return pairs


def frames(bot: Bot, publisher: str) -> int:
    stats = bot.peer.received(publisher, "video")
    return 0 if stats is None else stats.frames_decoded


async def test_home_postgres_lost_joins_and_calls_go_on_writes_wait_for_promotion(
    regions: LocalFleet,
) -> None:
    fleet = regions
    assert fleet.postgres is not None
    pairs = await calls(fleet, "pg")
    try:
        before = [frames(a, "b") for a, _ in pairs]
        with LivenessWatch(fleet) as watch:
            fleet.postgres.primary.kill()
            killed = time.monotonic()
            status, body = admin(fleet, "PUT", "/api/settings", {"max_participants_per_room": 42})
            print(f"admin write with the writer dead: {status} {body}")
            assert status == 503 and body["error"] == "settings_writer_unavailable"
            assert "read/write node" in body["detail"]
            joins: dict[str, list[str]] = {region: [] for region in fleet.regions}
            attempt = 0
            while time.monotonic() - killed < WRITER_OUTAGE_S:
                for region in fleet.regions:
                    attempt += 1
                    url = fleet.gateway_urls(region)[attempt % 2]
                    token = fleet.token(f"pg-new-{attempt}", f"j{attempt}")
                    joins[region].append(await join_once(url, token))
                await asyncio.sleep(2)
            # reads are served from the gateway's copy, its age shown
            status, current = admin(fleet, "GET", "/api/settings")
            assert status == 200 and current["max_participants_per_room"] != 42
            promoted_at = time.monotonic()
            await asyncio.to_thread(fleet.promote_standby)
            while True:
                status, body = admin(
                    fleet, "PUT", "/api/settings", {"max_participants_per_room": 43}
                )
                if status == 200:
                    break
                assert time.monotonic() - promoted_at < 30, body
                await asyncio.sleep(0.2)
            write_back = time.monotonic() - promoted_at
        after = [frames(a, "b") for a, _ in pairs]
        outage = time.monotonic() - killed
        decoded = [x - y for x, y in zip(after, before, strict=True)]
        print(
            f"writer dead {WRITER_OUTAGE_S:.0f} s: joins per region "
            f"{ {r: (j.count('joined'), len(j)) for r, j in joins.items()} }; frames decoded "
            f"in the calls over {outage:.0f} s: {decoded}; "
            f"liveness polls {watch.polls}, failures {len(watch.failures)}; "
            f"admin write accepted {write_back:.2f} s after promotion, no restart"
        )
        for region, answers in joins.items():
            assert answers and set(answers) == {"joined"}, (region, answers)
        assert watch.failures == [] and watch.polls > 10
        assert min(decoded) >= 0.7 * 10 * WRITER_OUTAGE_S
        # the new value reached every region's replica and every gateway's copy
        for region in fleet.regions:

            def written(r: str = region) -> bool:
                body = admin(fleet, "GET", "/api/settings", region=r)[1]
                return bool(body.get("max_participants_per_room") == 43)

            await wait_until(written, 15, f"settings in {region}")
    finally:
        for a, b in pairs:
            await asyncio.gather(a.close(), b.close())
        admin(fleet, "PUT", "/api/settings", {"max_participants_per_room": 50})


async def test_redis_failover_liveness_holds_and_joins_return(regions: LocalFleet) -> None:
    fleet = regions
    region = fleet.regions[fleet.spec.region_names()[0]]
    host, port = region.redis.sentinels[0]
    sentinel = aioredis.Redis(host=host, port=port, decode_responses=True)
    url = fleet.gateway_urls(region.name)[0]
    try:
        old = await sentinel.sentinel_get_master_addr_by_name(SENTINEL_MASTER_NAME)
        with LivenessWatch(fleet) as watch:
            region.redis.primary.kill()
            killed = time.monotonic()
            promoted = None
            attempt = 0
            while True:
                address = await sentinel.sentinel_get_master_addr_by_name(SENTINEL_MASTER_NAME)
                if promoted is None and address != old:
                    promoted = time.monotonic()
                attempt += 1
                answer = await join_once(url, fleet.token("redis-after", f"r{attempt}"))
                if answer == "joined" and promoted is not None:
                    break
                assert time.monotonic() - killed < 60, f"no join after the failover: {answer}"
                await asyncio.sleep(0.1)
            joined = time.monotonic()
            await asyncio.sleep(1)
        assert promoted is not None
        print(
            f"Redis primary killed: Sentinel promoted after {promoted - killed:.2f} s; a join "
            f"succeeded {joined - promoted:.2f} s after the promotion "
            f"({joined - killed:.2f} s after the kill); liveness polls {watch.polls}, "
            f"failures {len(watch.failures)}"
        )
        assert watch.failures == [] and watch.polls > 3
    finally:
        await sentinel.aclose()


async def test_media_nodes_lost_region_health_red_gateways_live(regions: LocalFleet) -> None:
    fleet = regions
    name = fleet.spec.region_names()[1]
    region = fleet.regions[name]
    await wait_until_async(lambda: region_health(fleet, name), 30, "region health green")
    gateways = [g.liveness_url for g in region.gateways]
    with LivenessWatch(fleet) as watch:
        watch.urls = gateways
        for node in region.media_nodes:
            node.process.kill()
        killed = time.monotonic()
        while await region_health(fleet, name):
            assert time.monotonic() - killed < 30, "region health stayed green"
            await asyncio.sleep(0.1)
        detected = time.monotonic() - killed
        await asyncio.sleep(3)
    print(
        f"every media node of {name} killed: region health red after {detected:.2f} s; "
        f"gateway liveness polls {watch.polls}, failures {len(watch.failures)}"
    )
    assert watch.failures == []
    assert all(g.process.running() for g in region.gateways)
    region.media_nodes = []
    fleet.start_media_node(name)
    await wait_until_async(lambda: region_health(fleet, name), 60, "region health green again")


async def wait_until_async(
    predicate: Callable[[], Awaitable[bool]], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
