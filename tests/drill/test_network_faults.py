"""Faults that drop packets, on a two-region local fleet whose hosts sit in network namespaces.

A blackholed gateway or region resets nothing: clients learn of it only from the silence of
their pings, and must leave it in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from gateway_node.room_home import room_home
from media_node import rtp_hooks
from rtcfleet import bus
from rtcfleet.client.bot import Bot
from rtcfleet.drill import DrillSpec, run_region_outage
from rtcfleet.drill.backend import FaultKind
from rtcfleet.drill.local import LocalBackend
from rtcfleet.local import FleetSpec, LocalFleet
from rtcfleet.local.fleet import writer_host
from rtcfleet.netfault import Blackhole, Fabric, leftovers, missing_tools
from rtcfleet.nodes import NodeState
from rtcfleet.redis_url import connect
from rtcfleet.signaling import Join, encode
from tests.browser.chromium import SKIP_BROWSER_ENV, Browser, Page, require_chromium
from tests.platform.conftest import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_tools()), reason=f"network namespaces need {missing_tools()}"),
]

# longer than a missed beat (1.5 s), shorter than the staleness bound (5 s)
PAUSE_S = 2.5
SETTING = "max_participants_per_room"


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


def unwatched(bot: Bot) -> Bot:
    """A bot that never reports dead media on its own: what moves it is the gateways' doing."""
    bot.session.media_dead_after = 3600.0
    return bot


def message_types(bot: Bot) -> list[str]:
    return [str(m["type"]) for m in bot.session.events.messages]


async def two_media_nodes(fleet: LocalFleet, region: str) -> None:
    if sum(m.process.running() for m in fleet.regions[region].media_nodes) < 2:
        fleet.start_media_node(region)
        await asyncio.to_thread(fleet.wait_ready)


async def node_record(fleet: LocalFleet, region: str, node_id: str) -> NodeState:
    redis = connect(fleet.regions[region].redis.url)
    try:
        raw = await redis.get(bus.node_key(node_id))
    finally:
        await redis.aclose()
    assert raw is not None, f"{node_id} has no registry record"
    return NodeState.model_validate_json(raw)


def fresh_media(bot: Bot, publisher: str, since: float) -> bool:
    stats = bot.peer.received(publisher, "video")
    return stats is not None and stats.last_frame_at is not None and stats.last_frame_at > since


@contextlib.asynccontextmanager
async def call_on_two_nodes(
    fleet: LocalFleet, room: str, *, watched: bool = True
) -> AsyncIterator[tuple[Bot, Bot]]:
    """Ann and Ben in ``room`` in local-1, which has a second media node to move to, each
    decoding the other; ``watched=False``: neither reports dead media on its own."""
    await two_media_nodes(fleet, "local-1")
    async with call_of_two(fleet, room, watched=watched) as call:
        yield call


@contextlib.asynccontextmanager
async def call_of_two(
    fleet: LocalFleet, room: str, *, watched: bool = True
) -> AsyncIterator[tuple[Bot, Bot]]:
    """Ann and Ben in ``room`` in local-1, each decoding the other."""
    urls = fleet.gateway_urls("local-1")
    bots = [
        Bot(urls, fleet.token(room, name), name=name, width=320, height=180, fps=15)
        for name in ("ann", "ben")
    ]
    if not watched:
        bots = [unwatched(bot) for bot in bots]
    try:
        for bot in bots:
            await bot.start()
        ann, ben = bots
        await wait_until(
            lambda: fresh_media(ann, "ben", 0) and fresh_media(ben, "ann", 0), 20, "media"
        )
        yield ann, ben
    finally:
        await asyncio.gather(*(b.close() for b in bots))


def moved_off(ann: Bot, ben: Bot, lost: str, since: float) -> bool:
    """Both on another node than ``lost``, each decoding the other again since ``since``."""
    return all(
        b.session.node_id not in (None, lost) and fresh_media(b, other, since)
        for b, other in ((ann, "ben"), (ben, "ann"))
    )


async def test_a_blackholed_gateway_is_left_and_media_never_stops(fleet: LocalFleet) -> None:
    assert fleet.fabric is not None
    urls = fleet.gateway_urls("local-1")
    async with call_of_two(fleet, "gw-fault") as (ann, ben):
        try:
            await gateway_blackholed(fleet, urls, ann, ben)
        finally:
            fleet.fabric.heal()


async def gateway_blackholed(fleet: LocalFleet, urls: list[str], ann: Bot, ben: Bot) -> None:
    """The call's gateway blackholed: both resume on the other gateway, media never stops."""
    assert fleet.fabric is not None
    bots = (ann, ben)
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


@pytest.mark.parametrize("fault", ["blackhole", "kill"])
async def test_a_lost_media_node_loses_its_room_before_its_heartbeat_is_stale(
    fleet: LocalFleet, fault: str
) -> None:
    assert fleet.fabric is not None
    region = fleet.regions["local-1"]
    async with call_on_two_nodes(fleet, f"node-{fault}") as (ann, ben):
        lost = ann.session.node_id
        assert lost is not None
        try:
            if fault == "blackhole":
                fleet.fabric.apply([Blackhole(fleet.host_addresses(lost))])
            else:
                next(m for m in region.media_nodes if m.name == lost).process.kill()
            fault_at = time.monotonic()
            took = await wait_until(
                lambda: moved_off(ann, ben, lost, fault_at), 20, "media on another node"
            )
            print(f"media node {fault}: media back on another node after {took:.2f} s")
            if fault == "blackhole":
                assert ann.session.events.media_timeouts or ben.session.events.media_timeouts, (
                    "silence not noticed"
                )
                for bot in (ann, ben):
                    # moved on the clients' word and the node's missed beats: a blackholed
                    # node's Redis connections stay open, so no gateway reconnect before
                    # staleness
                    assert "reconnect" not in message_types(bot)
            # killed: the clients' word or the node's closed connections, whichever is first
        finally:
            fleet.fabric.heal()


async def test_a_killed_media_node_is_found_by_its_closed_connections(fleet: LocalFleet) -> None:
    """No client reports dead media: the gateways alone find the node gone, from its Redis
    connections, and move its room before its heartbeat is stale."""
    region = fleet.regions["local-1"]
    async with call_on_two_nodes(fleet, "node-gone", watched=False) as (ann, ben):
        lost = ann.session.node_id
        assert lost is not None
        next(m for m in region.media_nodes if m.name == lost).process.kill()
        fault_at = time.monotonic()
        told = await wait_until(
            lambda: all("reconnect" in message_types(b) for b in (ann, ben)), 20, "reconnect"
        )
        took = await wait_until(
            lambda: moved_off(ann, ben, lost, fault_at), 20, "media on another node"
        )
        record = await node_record(fleet, "local-1", lost)
        assert record.lost_at is not None, "not found by its closed connections"
        found = record.lost_at - record.heartbeat_at
        print(
            f"media node SIGKILL, no client report: sessions told to reconnect after "
            f"{told:.2f} s, media back on another node after {told + took:.2f} s; the node "
            f"was marked lost {found:.2f} s after its last beat"
        )
        # found before its heartbeat went stale, which would have moved it too
        assert found < fleet.spec.node_stale_seconds
        for bot in (ann, ben):
            assert bot.session.events.media_timeouts == 0


async def test_a_paused_media_node_keeps_its_room(fleet: LocalFleet) -> None:
    """A node whose every process is stopped for longer than a beat but shorter than the
    staleness bound (a stalled loop, a long pause) holds its Redis connections: nothing moves."""
    region = fleet.regions["local-1"]
    async with call_on_two_nodes(fleet, "node-pause", watched=False) as (ann, ben):
        node_id = ann.session.node_id
        assert node_id is not None
        pid = next(m for m in region.media_nodes if m.name == node_id).process.pid
        assert pid is not None
        os.killpg(pid, signal.SIGSTOP)
        try:
            paused_at = time.monotonic()
            beat_age = 0.0
            while time.monotonic() - paused_at < PAUSE_S:
                record = await node_record(fleet, "local-1", node_id)
                beat_age = max(beat_age, time.time() - record.heartbeat_at)
                await asyncio.sleep(0.1)
        finally:
            os.killpg(pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        print(f"media node paused {PAUSE_S:.1f} s: heartbeat {beat_age:.2f} s old at most")
        assert beat_age > 2.0, "the pause did not make the node miss a beat"
        assert beat_age < fleet.spec.node_stale_seconds
        await wait_until(
            lambda: fresh_media(ann, "ben", resumed_at) and fresh_media(ben, "ann", resumed_at),
            10,
            "media from the same node after the pause",
        )
        await asyncio.sleep(1.0)  # a monitor round or two after the node beats again
        record = await node_record(fleet, "local-1", node_id)
        assert record.lost_at is None
        for bot in (ann, ben):
            assert bot.session.node_id == node_id
            assert "reconnect" not in message_types(bot)


class TimedBackend(LocalBackend):
    """The local backend, telling when the drill's fault went in (monotonic, wall clock) and
    when it began to heal it."""

    injected_at: tuple[float, float] | None = None
    restored_at: float | None = None

    async def inject(self, region: str, fault: FaultKind = FaultKind.KILL) -> list[str]:
        self.injected_at = (time.monotonic(), time.time())
        return await super().inject(region, fault)

    async def restore(self, region: str, fault: FaultKind = FaultKind.KILL) -> list[str]:
        self.restored_at = time.monotonic()
        return await super().restore(region, fault)


# Every 100 ms: when the page's current subscriber connection (made at ``since``) first
# decoded more video frames than before, from getStats' inbound-rtp framesDecoded.
DECODE_WATCH = """(() => {
  if (window.decodeWatch) return true;
  const watch = window.decodeWatch = {pc: null, since: 0, frames: 0, first: null};
  setInterval(async () => {
    const pc = subPc;
    if (!pc) return;
    if (watch.pc !== pc) Object.assign(watch, {pc, since: Date.now(), frames: 0, first: null});
    let frames = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
    });
    if (watch.pc !== pc) return;
    if (frames > watch.frames && watch.first === null) watch.first = Date.now();
    watch.frames = frames;
  }, 100);
  return true;
})()"""
DECODING = "window.decodeWatch && {since: decodeWatch.since, first: decodeWatch.first}"
PAGE_STATE = """({status: rtcfleetDemo.status, region: rtcfleetDemo.joined?.region,
  node: rtcfleetDemo.joined?.node_id, errors: rtcfleetDemo.errors,
  signaling_timeouts: rtcfleetDemo.signalingTimeouts || 0, events: rtcfleetDemo.events})"""
JOIN_CLICK = "document.querySelector('#join button[type=submit]').click()"
LOADED = "document.readyState === 'complete' && !!window.rtcfleetDemo"


def room_homed_in(region: str, regions: list[str], prefix: str) -> str:
    """A room name whose home region (``room_home``) is ``region``."""
    return next(
        f"{prefix}-{i}" for i in itertools.count() if room_home(f"{prefix}-{i}", regions) == region
    )


async def chromium_back(
    page: Page, bot: Bot, backend: TimedBackend, bound: float
) -> dict[str, float | None]:
    """Seconds from the fault until the page decodes the bot's video on a connection made
    after it, and until the bot decodes the page's video on a track that began after it; None
    for what did not happen while the region was still blackholed (a heal resets the page's
    old socket, which would hide a page that never noticed the silence)."""
    while backend.injected_at is None:
        await asyncio.sleep(0.05)
    at, wall = backend.injected_at
    to_page: float | None = None
    to_bot: float | None = None
    while (to_page is None or to_bot is None) and time.monotonic() - at < bound:
        if backend.restored_at is not None:
            break
        if to_page is None:
            seen = await page.evaluate(DECODING)
            if seen["first"] is not None and seen["since"] > wall * 1000:
                to_page = seen["first"] / 1000 - wall
        stats = bot.peer.received("chromium", "video")
        first = None if stats is None or stats.frames_decoded < 3 else stats.first_frame_at
        if to_bot is None and first is not None and first > at:
            to_bot = first - at
        await asyncio.sleep(0.1)
    return {"chromium_decodes_bot_s": to_page, "bot_decodes_chromium_s": to_bot}


async def page_in_room(
    fleet: LocalFleet, region: str, stack: contextlib.AsyncExitStack
) -> tuple[Page, Bot]:
    """The demo page in Chromium, served by a gateway of ``region``, and a bot, in a room whose
    home is ``region``; each decoding the other."""
    room = room_homed_in(region, list(fleet.regions), "chromium-drill")
    others = [u for r in fleet.regions if r != region for u in fleet.gateway_urls(r)]
    bot = Bot(
        fleet.gateway_urls(region) + others,
        fleet.token(room, "bot"),
        name="bot",
        width=320,
        height=180,
        fps=15,
    )
    stack.push_async_callback(bot.close)
    gateway = fleet.regions[region].gateways[0]
    # the page comes from the fabric's private address, which a browser does not count as a
    # secure context: camera access needs it named as one
    flags = (f"--unsafely-treat-insecure-origin-as-secure={gateway.http_url}",)
    browser = Browser(require_chromium(), flags)
    stack.push_async_callback(browser.close)
    await browser.start()
    await bot.start()
    token = fleet.token(room, "chromium")
    page = await browser.open(f"{gateway.http_url}/demo?room={room}&video=320x180#token={token}")
    await page.wait_for(LOADED, 20, "the demo script")
    await page.evaluate(JOIN_CLICK)
    joined = await page.wait_for("window.rtcfleetDemo?.joined", 20, "the page to join")
    assert joined["region"] == region
    await page.evaluate(DECODE_WATCH)
    await page.wait_for("decodeWatch.first !== null", 20, "the page decoding the bot")
    await wait_until(lambda: fresh_media(bot, "chromium", 0), 20, "the bot decoding the page")
    return page, bot


async def test_a_blackholed_region_drill(fleet: LocalFleet) -> None:
    """The drill's bots, and the demo page in Chromium with a bot in a room of the blackholed
    region (unless browsers are left out): the page notices the silence, leaves the region and
    joins again in the other."""
    backend = TimedBackend(fleet)
    spec = DrillSpec(region="local-2", bots=4, rooms=2, fault=FaultKind.BLACKHOLE)
    survivor = next(r for r in fleet.regions if r != spec.region)
    async with contextlib.AsyncExitStack() as stack:
        with_page = os.environ.get(SKIP_BROWSER_ENV) != "1"
        if with_page:
            page, bot = await page_in_room(fleet, spec.region, stack)
            watch = asyncio.create_task(chromium_back(page, bot, backend, 30.0))
            stack.callback(watch.cancel)
        report = await run_region_outage(backend, spec)
        if with_page:
            back = await asyncio.wait_for(watch, 30)
            state = await page.evaluate(PAGE_STATE)
            bot_region = bot.session.region
    print(json.dumps(report.to_json(), indent=1))
    assert report.fault == "blackhole"
    assert report.affected_bots >= 2, "a room must have lived in the blackholed region"
    assert report.sessions_dropped == 0
    assert len(report.time_to_media_s) == report.affected_bots
    assert report.time_to_detect_s is not None
    assert any("blackhole" in step for step in report.steps)
    assert not fleet.fabric or fleet.fabric.faults == [], "the drill heals what it broke"
    if not with_page:
        print(f"{SKIP_BROWSER_ENV}=1: the demo page left out of the drill")
        return
    figures = {k: v and round(v, 2) for k, v in back.items()}
    print(f"demo page in Chromium, room of the blackholed region, media again after: {figures}")
    since = backend.injected_at[1] if backend.injected_at else 0.0
    events = [f"{at / 1000 - since:+.2f} s {what}" for at, what in state.pop("events")]
    print(f"the page after the drill: {state}; its signaling from the fault on: {events[-25:]}")
    # the page's session was not dropped: it left the silent region and joined the other
    # before the drill healed the fault
    assert back["chromium_decodes_bot_s"] is not None, f"the page had no media again: {state}"
    assert back["bot_decodes_chromium_s"] is not None, f"the bot had no page video: {state}"
    assert state["signaling_timeouts"] >= 1, "the silence was not noticed"
    assert state["region"] == survivor and state["status"].startswith("joined"), state
    assert bot_region == survivor


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


async def admin_call(
    fleet: LocalFleet, method: str, path: str, body: object | None = None
) -> tuple[int, Any, float, dict[str, str]]:
    """One admin API call to a home-region gateway: status, body, seconds taken, headers."""
    gateway = next(g for g in fleet.regions[fleet.home].gateways if g.process.running())
    headers = {"Authorization": f"Bearer {fleet.spec.admin_token}"}
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=20)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.request(method, gateway.admin_url + path, json=body, headers=headers) as response,
    ):
        answer = await response.json()
        return response.status, answer, time.monotonic() - started, dict(response.headers)


async def join_once(url: str, token: str) -> str:
    """A join through a fresh socket: the answer's type (``joined`` when the join worked)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.ws_connect(url) as ws,
    ):
        await ws.send_str(encode(Join(token=token)))
        message = json.loads((await ws.receive(timeout=5)).data)
        if message.get("type") == "joined":
            await ws.send_str(json.dumps({"type": "leave"}))
        return str(message.get("type"))


async def test_a_blackholed_settings_writer_answers_in_seconds_until_a_standby_is_promoted(
    fleet: LocalFleet,
) -> None:
    """Last in the module: the writer moves to the standby region for good."""
    assert fleet.fabric is not None and fleet.postgres is not None
    home = fleet.home
    old_writer = fleet.postgres.primary
    urls = fleet.gateway_urls(home)
    bots = [
        Bot(urls, fleet.token("pg-blackhole", name), name=name, width=320, height=180, fps=15)
        for name in ("ann", "ben")
    ]
    try:
        for bot in bots:
            await bot.start()
        ann, ben = bots
        await wait_until(
            lambda: fresh_media(ann, "ben", 0) and fresh_media(ben, "ann", 0), 20, "media"
        )
        status, _, _, _ = await admin_call(fleet, "PUT", "/api/settings", {SETTING: 41})
        assert status == 200, "a write before the fault"
        fleet.fabric.apply([Blackhole(fleet.host_addresses(writer_host(home)))])
        fault_at = time.monotonic()
        answers = []
        for method, path, body in (
            ("PUT", "/api/settings", {SETTING: 42}),
            ("DELETE", f"/api/settings/{SETTING}", None),
            ("PUT", "/api/settings", {SETTING: 42}),  # the pool is not left stuck either
        ):
            status, answer, took, headers = await admin_call(fleet, method, path, body)
            print(f"{method} with the writer blackholed: {status} after {took:.2f} s: {answer}")
            assert status == 503, answer
            assert answer["error"] == "settings_writer_unavailable"
            assert "read/write node" in answer["detail"]
            assert headers.get("Retry-After") == "5"
            answers.append(took)
        status, current, took, headers = await admin_call(fleet, "GET", "/api/settings")
        print(f"GET with the writer blackholed: {status} after {took:.2f} s from the copy")
        assert status == 200 and current[SETTING] == 41
        assert "X-Settings-Age-Seconds" in headers
        # joins and the call go on without the writer
        for attempt in range(3):
            token = fleet.token(f"pg-blackhole-new-{attempt}", "joiner")
            assert await join_once(urls[attempt % len(urls)], token) == "joined"
        since = time.monotonic()
        await wait_until(
            lambda: fresh_media(ann, "ben", since) and fresh_media(ben, "ann", since), 5, "media"
        )
        # the standby region's replica is promoted; the old writer stays silent
        promoted_at = time.monotonic()
        await asyncio.to_thread(fleet.promote_standby)
        await asyncio.to_thread(fleet.follow_writer)
        attempts = 0
        while True:
            attempts += 1
            status, answer, _, _ = await admin_call(fleet, "PUT", "/api/settings", {SETTING: 43})
            if status == 200:
                break
            assert time.monotonic() - promoted_at < 60, answer
            await asyncio.sleep(0.5)
        write_back = time.monotonic() - promoted_at
        print(
            f"writer blackholed: 503 after {', '.join(f'{t:.2f}' for t in answers)} s; joins "
            f"and the call went on; after promotion the first write was accepted "
            f"{write_back:.2f} s later ({attempts} tries), "
            f"{time.monotonic() - fault_at:.1f} s after the blackhole"
        )
    finally:
        old_writer.kill()  # fenced by the promotion; and if the test failed before it
        fleet.fabric.heal()
        await asyncio.gather(*(b.close() for b in bots))
