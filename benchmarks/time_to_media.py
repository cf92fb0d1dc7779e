"""Time to media: from a bot opening its signaling WebSocket to its first decoded remote frame.

Run: ``.venv/bin/python -m benchmarks.time_to_media [--joins 50]``.

A local fleet of real processes (Redis, Postgres, one gateway, one media node) on loopback. Two
cases, each over ``--joins`` joins through the gateway:

- live room: a publisher bot is already in the room; a new bot joins, is timed to its first
  decoded frame of that publisher, and leaves;
- new room: two bots open their sockets at the same moment for a room nobody is in; each is
  timed to its first decoded frame of the other (placement, both publisher connections, both
  subscriber offers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from rtcfleet.client.bot import Bot
from rtcfleet.local import FleetSpec, LocalFleet

RESULTS = Path(__file__).resolve().parent / "results" / "time_to_media.json"
TIMEOUT_S = 20.0


async def first_frame(bot: Bot, publisher: str, timeout: float = TIMEOUT_S) -> float:
    """Seconds from the bot's start (its socket opening) to its first decoded frame of
    `publisher`'s video."""
    deadline = time.monotonic() + timeout
    while True:
        stats = bot.peer.received(publisher, "video")
        if stats is not None and stats.first_frame_at is not None:
            return stats.first_frame_at - bot.started_at
        if time.monotonic() > deadline:
            raise TimeoutError(f"{bot.name} decoded nothing from {publisher} in {timeout} s")
        await asyncio.sleep(0.005)


async def live_room(fleet: LocalFleet, url: str, joins: int) -> tuple[list[float], int]:
    anchor = Bot([url], fleet.token("live", "anchor"), name="anchor")
    await anchor.start()
    times: list[float] = []
    failures = 0
    try:
        await asyncio.sleep(2.0)
        for i in range(joins):
            bot = Bot([url], fleet.token("live", f"viewer-{i}"), name=f"viewer-{i}")
            try:
                await bot.start()
                times.append(await first_frame(bot, "anchor"))
            except (TimeoutError, RuntimeError):
                failures += 1
            finally:
                await bot.close()
    finally:
        await anchor.close()
    return times, failures


async def new_rooms(fleet: LocalFleet, url: str, joins: int) -> tuple[list[float], int]:
    times: list[float] = []
    failures = 0
    for i in range(0, joins, 2):
        room = f"new-{i}"
        pair = [Bot([url], fleet.token(room, n), name=n) for n in ("a", "b")]
        try:
            await asyncio.gather(*(bot.start() for bot in pair))
            got = await asyncio.gather(
                first_frame(pair[0], "b"), first_frame(pair[1], "a"), return_exceptions=True
            )
            for value in got:
                if isinstance(value, float):
                    times.append(value)
                else:
                    failures += 1
        except (TimeoutError, RuntimeError):
            failures += 2
        finally:
            await asyncio.gather(*(bot.close() for bot in pair))
    return times, failures


def summary(times: list[float], failures: int) -> dict[str, Any]:
    ms = sorted(1000 * t for t in times)
    if len(ms) < 2:
        return {"joins": len(ms), "failures": failures}
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "joins": len(ms),
        "failures": failures,
        "p50_ms": round(cuts[49]),
        "p90_ms": round(cuts[89]),
        "p99_ms": round(cuts[98]),
        "min_ms": round(ms[0]),
        "max_ms": round(ms[-1]),
    }


async def run(joins: int) -> dict[str, Any]:
    fleet = LocalFleet(FleetSpec(regions=1, gateways=1, media=1, log_level="WARNING"))
    await asyncio.to_thread(fleet.start)
    try:
        url = fleet.regions[fleet.home].gateways[0].signal_url
        load_before = [round(x, 2) for x in os.getloadavg()]
        live = summary(*await live_room(fleet, url, joins))
        print(f"live room: {json.dumps(live)}", flush=True)
        new = summary(*await new_rooms(fleet, url, joins))
        print(f"new rooms: {json.dumps(new)}", flush=True)
    finally:
        await asyncio.to_thread(fleet.remove)
    return {
        "benchmark": "time_to_media",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "path": "bot -> gateway (WebSocket) -> Redis -> media node worker; media over loopback",
        "live_room": live,
        "new_room": new,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--joins", type=int, default=50)
    args = parser.parse_args()
    result = asyncio.run(run(max(2, args.joins)))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for case in ("live_room", "new_room"):
        figures = result[case]
        print(
            f"{case}: p50 {figures.get('p50_ms')} ms, p99 {figures.get('p99_ms')} ms "
            f"over {figures['joins']} joins ({figures['failures']} failed)"
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
