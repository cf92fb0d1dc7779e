"""Soak: clients joining, publishing, leaving and resuming on the local fleet, for minutes.

Run: ``.venv/bin/python -m benchmarks.soak [--clients 200] [--minutes 5]``.

A local fleet of real processes (Redis with Sentinel, Postgres, one gateway, one media node of
one worker) on loopback. Every client is a real ``ClientSession`` in rooms of two: it joins,
publishes a real peer connection (ICE, DTLS-SRTP, VP8 at 64x48 and 2 fps, no audio, so that 200
of them and the fleet fit on two cores), subscribes to its partner, and then, until the end,
every 10-30 s either drops its signaling socket and resumes its session (``session_id`` and
``cursor``) or leaves and joins again as a new session 0.5-3 s later.

Counted: joins and their failures, publishes that reached ``connected``, resumes that got their
own session back and sessions lost (a resume answered ``session_not_found``, or none within
15 s). Memory: the resident size of every fleet process (gateway, media node supervisor and
worker, Redis and Sentinels, Postgres, summed per kind) every 10 s, and the least-squares slope
after the warm-up, in KiB per minute: flat memory has a slope near zero next to its size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from rtcfleet.client.peer import ClientPeer
from rtcfleet.client.session import ClientSession
from rtcfleet.local import FleetSpec, LocalFleet

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
SAMPLE_EVERY_S = 10.0
JOIN_TIMEOUT_S = 20.0
RESUME_TIMEOUT_S = 15.0
PUBLISH_TIMEOUT_S = 15.0
HOLD_S = (10.0, 30.0)
GAP_S = (0.5, 3.0)
START_SPREAD_S = 30.0
CLOSE_TIMEOUT_S = 15.0


@dataclass
class Tally:
    joins: int = 0
    join_failures: int = 0
    published: int = 0
    publish_failures: int = 0
    resumes: int = 0
    sessions_lost: int = 0
    leaves: int = 0
    close_timeouts: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # the first few messages of each error code, to tell them apart
    examples: dict[str, list[str]] = field(default_factory=dict)

    def error(self, code: str, message: str = "") -> None:
        self.errors[code] = self.errors.get(code, 0) + 1
        seen = self.examples.setdefault(code, [])
        if message and len(seen) < 3:
            seen.append(message[:200])


async def _until(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.1)
    return bool(check())


def _resumed_since(session: ClientSession, resumes: int) -> bool:
    return session.events.resumes > resumes


def _publishing(session: ClientSession) -> bool:
    return bool(session.peer.publisher_pc.connectionState == "connected")


def _peer_factory(name: str) -> Any:
    return lambda: ClientPeer(name, audio=False, width=64, height=48, fps=2)


async def _hold(session: ClientSession, deadline: float, tally: Tally, rng: random.Random) -> None:
    """Resume cycles until the client decides to leave (or the soak ends)."""
    while True:
        await asyncio.sleep(min(rng.uniform(*HOLD_S), max(deadline - time.monotonic(), 0)))
        if time.monotonic() >= deadline or rng.random() < 0.5:
            return
        own, before = session.session_id, session.events.resumes
        fresh_before = session.events.fresh_joins
        await session.drop_signaling()
        resumed = await _until(functools.partial(_resumed_since, session, before), RESUME_TIMEOUT_S)
        if resumed and session.session_id == own and session.events.fresh_joins == fresh_before:
            tally.resumes += 1
        else:
            tally.sessions_lost += 1
            return


async def client(index: int, url: str, fleet: LocalFleet, deadline: float, tally: Tally) -> None:
    rng = random.Random(index)
    name = f"soak-{index}"
    await asyncio.sleep(rng.uniform(0, START_SPREAD_S))
    while time.monotonic() < deadline:
        session = ClientSession(
            [url], fleet.token(f"soak-room-{index // 2}", name), peer_factory=_peer_factory(name)
        )
        try:
            try:
                await session.start(JOIN_TIMEOUT_S)
            except Exception as exc:
                tally.join_failures += 1
                tally.error(type(exc).__name__, str(exc))
                await asyncio.sleep(rng.uniform(*GAP_S))
                continue
            tally.joins += 1
            if await _until(functools.partial(_publishing, session), PUBLISH_TIMEOUT_S):
                tally.published += 1
            else:
                tally.publish_failures += 1
            await _hold(session, deadline, tally, rng)
        finally:
            for error in session.events.errors:
                tally.error(str(error.get("code")), str(error.get("message", "")))
            try:
                await asyncio.wait_for(session.close(leave=True), CLOSE_TIMEOUT_S)
            except TimeoutError:
                tally.close_timeouts += 1
            except Exception as exc:
                tally.error(f"close: {type(exc).__name__}")
            tally.leaves += 1
        await asyncio.sleep(rng.uniform(*GAP_S))


def fleet_processes(fleet: LocalFleet) -> dict[int, str]:
    """Every process of the fleet, named by role: the services by name, their children (media
    workers) under their parent's name, the servers by executable (summed per kind)."""
    named: dict[int, str] = {}
    for region in fleet.regions.values():
        for service in (*region.gateways, *region.media_nodes):
            pid = service.process.pid
            if pid is None:
                continue
            named[pid] = service.name
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(pid).children(recursive=True):
                    named[child.pid] = f"{service.name} worker"
    workdir = str(fleet.workdir)
    for proc in psutil.process_iter(["pid", "name", "cmdline", "cwd"]):
        if proc.pid in named:
            continue
        text = " ".join(proc.info["cmdline"] or []) + " " + str(proc.info["cwd"] or "")
        if workdir in text:
            named[proc.pid] = proc.info["name"] or "?"
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    named.setdefault(child.pid, proc.info["name"] or "?")
    return named


def sample(fleet: LocalFleet) -> dict[str, int]:
    """Resident bytes per process kind."""
    totals: dict[str, int] = defaultdict(int)
    for pid, name in fleet_processes(fleet).items():
        with contextlib.suppress(psutil.Error):
            totals[name] += psutil.Process(pid).memory_info().rss
    return dict(totals)


def slope_kib_per_min(points: list[tuple[float, int]]) -> float | None:
    if len(points) < 3:
        return None
    xs = [t / 60 for t, _ in points]
    ys = [rss / 1024 for _, rss in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else None


async def memory_watch(
    fleet: LocalFleet,
    started: float,
    deadline: float,
    series: dict[str, list[tuple[float, int]]],
    tally: Tally,
) -> None:
    while time.monotonic() < deadline:
        at = time.monotonic() - started
        for name, rss in (await asyncio.to_thread(sample, fleet)).items():
            series[name].append((at, rss))
        print(f"{at:6.0f} s {asdict(tally)}", flush=True)
        await asyncio.sleep(SAMPLE_EVERY_S)


async def run(clients: int, minutes: float, warmup_s: float) -> dict[str, Any]:
    # two workers: 200 clients publish 200 streams, more than one worker's default capacity
    fleet = LocalFleet(
        FleetSpec(regions=1, gateways=1, media=1, workers_per_node=2, log_level="WARNING")
    )
    await asyncio.to_thread(fleet.start)
    print(f"fleet in {fleet.workdir}", flush=True)
    tally = Tally()
    series: dict[str, list[tuple[float, int]]] = defaultdict(list)
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        url = fleet.regions[fleet.home].gateways[0].signal_url
        started = time.monotonic()
        deadline = started + minutes * 60
        watch = asyncio.create_task(memory_watch(fleet, started, deadline, series, tally))
        await asyncio.gather(*(client(i, url, fleet, deadline, tally) for i in range(clients)))
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        # every session ended with `leave`: what the platform still holds for them
        await asyncio.sleep(2.0)
        after = await asyncio.to_thread(sample, fleet)
        log_errors = [
            line
            for path in sorted((fleet.workdir / "logs").glob("*"))
            for line in path.read_text(errors="replace").splitlines()
            if "Traceback" in line or " ERROR " in line
        ]
    finally:
        await asyncio.to_thread(fleet.remove)
    memory = {}
    for name, points in sorted(series.items()):
        steady = [(t, rss) for t, rss in points if t >= warmup_s]
        slope = slope_kib_per_min(steady)
        memory[name] = {
            "rss_mib_after_warmup": round(steady[0][1] / 2**20, 1) if steady else None,
            "rss_mib_end": round(points[-1][1] / 2**20, 1),
            "rss_mib_after_all_left": round(after.get(name, 0) / 2**20, 1),
            "slope_kib_per_min": round(slope, 1) if slope is not None else None,
            "samples": len(points),
        }
    return {
        "benchmark": "soak",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "clients": clients,
        "minutes": minutes,
        "warmup_s": warmup_s,
        "media": "VP8 64x48 at 2 fps per client, no audio; rooms of two",
        "tally": asdict(tally),
        "memory": memory,
        "log_errors": log_errors[:20],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before slopes count")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.clients < 2 or args.clients > 1000 or not 0 < args.minutes <= 60:
        parser.error("--clients 2..1000 and --minutes up to 60")
    result = asyncio.run(run(args.clients, args.minutes, args.warmup))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
