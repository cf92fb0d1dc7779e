"""A local fleet of real processes (Redis, Postgres, gateways, media nodes) for platform tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

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


def receives_from(bot: Bot, publishers: list[str]) -> bool:
    for publisher in publishers:
        stats = bot.peer.received(publisher, "video")
        if stats is None or len(stats.sequence_numbers) < 5:
            return False
    return True
