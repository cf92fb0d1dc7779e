"""A local fleet of real processes (Redis, Postgres, gateways, media nodes) for platform tests."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from rtcfleet.client.bot import Bot
from rtcfleet.local import FleetSpec, LocalFleet


@pytest.fixture(scope="module")
def fleet() -> Iterator[LocalFleet]:
    """One region, two gateways, two media nodes of one worker each."""
    fleet = LocalFleet(FleetSpec(regions=1, gateways=2, media=2, workers_per_node=1)).start()
    yield fleet
    fleet.remove()


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until true; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def admin(
    fleet: LocalFleet,
    method: str,
    path: str,
    body: object | None = None,
    token: str | None = None,
    region: str | None = None,
) -> tuple[int, Any]:
    """One call to the admin API of a live gateway of ``region`` (home by default)."""
    gateway = next(g for g in fleet.regions[region or fleet.home].gateways if g.process.running())
    request = urllib.request.Request(
        gateway.admin_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": f"Bearer {fleet.spec.admin_token if token is None else token}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def start_call(fleet: LocalFleet, room: str, names: list[str], **video: Any) -> list[Bot]:
    """Bots joined to ``room`` through the home region's gateways, each decoding every other;
    the caller closes them. On failure the bots already started are closed here."""
    urls = [g.signal_url for g in fleet.regions[fleet.home].gateways]
    bots = [Bot(urls, fleet.token(room, name), name=name, **video) for name in names]
    try:
        for bot in bots:
            await bot.start()
        for bot in bots:
            others = [n for n in names if n != bot.name]
            await wait_until(partial(receives_from, bot, others), 30, f"{bot.name}'s media")
    except BaseException:
        await asyncio.gather(*(bot.close() for bot in bots), return_exceptions=True)
        raise
    return bots


def receives_from(bot: Bot, publishers: list[str]) -> bool:
    for publisher in publishers:
        stats = bot.peer.received(publisher, "video")
        if stats is None or len(stats.sequence_numbers) < 5:
            return False
    return True
