"""Soak: clients joining, publishing, leaving and resuming on the local fleet, for minutes.

Run: ``.venv/bin/python -m benchmarks.soak [--clients 200] [--minutes 5] [--census 30]``.

A local fleet of real processes (Redis with Sentinel, Postgres, one gateway, one media node of
two workers) on loopback. Every client is a real ``ClientSession`` in rooms of two: it joins,
publishes a real peer connection (ICE, DTLS-SRTP, VP8 at 64x48 and 2 fps, no audio, so that 200
of them and the fleet fit on two cores), subscribes to its partner, and then, until the end,
every 10-30 s either drops its signaling socket and resumes its session (``session_id`` and
``cursor``) or leaves and joins again as a new session 0.5-3 s later.

Counted: joins and their failures, publishes that reached ``connected``, resumes that got their
own session back, sessions lost (a resume answered ``session_not_found``, or none within 15 s),
and every error a client was sent, by code and cause. Memory, every 10 s: the resident size of
every fleet process (gateway, media node supervisor, each worker, Redis and Sentinels, Postgres,
summed per kind), Redis's own ``used_memory`` and its keys by kind (sessions, session streams,
node inboxes, room claims...) with a sampled ``MEMORY USAGE`` per key; and, with ``--census``,
the gateway's and each worker's own maps and object counts (``rtcfleet.memory_census``). Slopes
are least-squares fits after the warm-up, per minute: flat memory has a slope near zero next to
its size. The warm-up lasts until every client has started and the state of the first sessions
to end has expired (``rtcfleet.bus.STATE_TTLS_SECONDS``): before that, Redis holds more keys
every minute by design.
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
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from rtcfleet import bus, memory_census
from rtcfleet.client.peer import ClientPeer
from rtcfleet.client.session import MEDIA_DEAD_AFTER_S as AUDIO_MEDIA_DEAD_AFTER_S
from rtcfleet.client.session import ClientSession
from rtcfleet.local import FleetSpec, LocalFleet
from rtcfleet.redis_url import connect

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
SAMPLE_EVERY_S = 10.0
JOIN_TIMEOUT_S = 20.0
RESUME_TIMEOUT_S = 15.0
PUBLISH_TIMEOUT_S = 15.0
HOLD_S = (10.0, 30.0)
GAP_S = (0.5, 3.0)
START_SPREAD_S = 30.0
CLOSE_TIMEOUT_S = 15.0
FPS = 2
# no audio: media counts as dead after a few frame intervals of silence, not the 1.5 s that
# assumes audio's 50 packets a second (docs/signaling.md, "Noticing a dead path")
MEDIA_DEAD_AFTER_S = max(AUDIO_MEDIA_DEAD_AFTER_S, 4 / FPS)


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
    # rejoins a client sent on its own when its media went silent; sockets it gave up as silent
    media_rejoins: int = 0
    signaling_timeouts: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # each error code by its message, names and ids left out, to tell the causes apart
    causes: dict[str, int] = field(default_factory=dict)

    def error(self, code: str, message: str = "") -> None:
        self.errors[code] = self.errors.get(code, 0) + 1
        cause = f"{code}: {VARYING.sub('*', message)[:120]}"
        self.causes[cause] = self.causes.get(cause, 0) + 1


# the parts of an error message that name a client or a session
VARYING = re.compile(r"soak-\d+|[0-9a-f]{32}")


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
    return lambda: ClientPeer(name, audio=False, width=64, height=48, fps=FPS)


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
            [url],
            fleet.token(f"soak-room-{index // 2}", name),
            peer_factory=_peer_factory(name),
            media_dead_after=MEDIA_DEAD_AFTER_S,
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
            tally.media_rejoins += session.events.media_timeouts
            tally.signaling_timeouts += session.events.signaling_timeouts
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
    workers, numbered in pid order, and multiprocessing's resource tracker) under their
    parent's name, the servers by executable (summed per kind)."""
    named: dict[int, str] = {}
    for region in fleet.regions.values():
        for service in (*region.gateways, *region.media_nodes):
            pid = service.process.pid
            if pid is None:
                continue
            named[pid] = service.name
            with contextlib.suppress(psutil.Error):
                children = sorted(psutil.Process(pid).children(recursive=True), key=lambda c: c.pid)
                workers = 0
                for child in children:
                    with contextlib.suppress(psutil.Error):
                        if "resource_tracker" in " ".join(child.cmdline()):
                            named[child.pid] = f"{service.name} resource tracker"
                            continue
                    workers += 1
                    named[child.pid] = f"{service.name} worker {workers}"
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
    """Resident bytes per process kind, and (``<kind> unique``) the bytes no other process
    shares: Postgres backends count the shared buffers they touch in their resident size, so
    only their unique size shows what they keep for themselves."""
    totals: dict[str, int] = defaultdict(int)
    for pid, name in fleet_processes(fleet).items():
        with contextlib.suppress(psutil.Error):
            memory = psutil.Process(pid).memory_full_info()
            totals[name] += memory.rss
            totals[f"{name} unique"] += memory.uss
    return dict(totals)


def slope_per_min(points: list[tuple[float, int]]) -> float | None:
    """The least-squares slope of (seconds, value) points, in value per minute."""
    if len(points) < 3:
        return None
    xs = [t / 60 for t, _ in points]
    ys = [float(value) for _, value in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else None


def key_kind(key: str) -> str:
    """What a key of the region's Redis holds (``rtcfleet.bus`` and the gateway's keys)."""
    rest = key.removeprefix(bus.PREFIX)
    for pattern, kind in KEY_KINDS:
        if pattern.fullmatch(rest):
            return kind
    return "other"


KEY_KINDS = [
    (re.compile(r"sess:[^:]+"), "session"),
    (re.compile(r"sess:[^:]+:out"), "session stream"),
    (re.compile(r"sess:[^:]+:out:bytes"), "session stream byte count"),
    (re.compile(r"sess:[^:]+:rejoin"), "session rejoin mark"),
    (re.compile(r"node:[^:]+"), "node record"),
    (re.compile(r"node:[^:]+:in"), "node inbox"),
    (re.compile(r"node:[^:]+:in:bytes"), "node inbox byte count"),
    (re.compile(r"node:[^:]+:rooms"), "node room map"),
    (re.compile(r"node:[^:]+:drain"), "node drain request"),
    (re.compile(r"room:.+"), "room claim"),
    (re.compile(r"room-region:.+"), "room reservation"),
    (re.compile(r"joins:.+"), "identity join count"),
    (re.compile(r"gw:[^:]+(:wake)?"), "gateway"),
    (re.compile(r"(nodes|gateways)"), "index"),
]
# keys per kind whose MEMORY USAGE is asked, to give each kind a size
USAGE_SAMPLE = 20


REDIS_MEMORY_PARTS = (
    "used_memory_dataset",
    "used_memory_overhead",
    "mem_replication_backlog",
    "mem_clients_normal",
    "mem_clients_slaves",
    "used_memory_scripts",
)


async def redis_census(redis: aioredis.Redis) -> dict[str, Any]:
    """Redis's own count of its memory, and its keys by kind with a sampled size per key."""
    info = await redis.info("memory")
    keys: dict[str, list[str]] = defaultdict(list)
    async for key in redis.scan_iter(match=f"{bus.PREFIX}*", count=1000):
        keys[key_kind(key)].append(key)
    kinds = {}
    for kind, names in sorted(keys.items()):
        sizes = [await redis.memory_usage(k) for k in names[:USAGE_SAMPLE]]
        known = [size for size in sizes if size]
        kinds[kind] = {
            "keys": len(names),
            "bytes_per_key": round(sum(known) / len(known)) if known else None,
        }
    return {
        "used_memory": int(info["used_memory"]),
        "used_memory_rss": int(info["used_memory_rss"]),
        # where Redis's own count goes besides the keys: a backlog that fills to its size,
        # client buffers, cached scripts
        "parts": {name: int(info.get(name, 0)) for name in REDIS_MEMORY_PARTS},
        "keys": kinds,
    }


async def memory_watch(
    fleet: LocalFleet,
    started: float,
    deadline: float,
    series: dict[str, list[tuple[float, int]]],
    redis_series: list[tuple[float, dict[str, Any]]],
    tally: Tally,
) -> None:
    redis = connect(fleet.regions[fleet.home].redis.url)
    try:
        while time.monotonic() < deadline:
            at = time.monotonic() - started
            for name, rss in (await asyncio.to_thread(sample, fleet)).items():
                series[name].append((at, rss))
            try:
                redis_series.append((at, await redis_census(redis)))
            except (RedisError, OSError) as exc:
                print(f"redis census failed: {exc}", flush=True)
            print(f"{at:6.0f} s {asdict(tally)}", flush=True)
            await asyncio.sleep(SAMPLE_EVERY_S)
    finally:
        await redis.aclose()


CENSUS_LINE = re.compile(
    r"^[^ ]+: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ .*"
    + re.escape(memory_census.MARK)
    + r" (\S+) (\{.*\})$"
)


def census_lines(logs: list[str], started_wall: float) -> dict[str, list[tuple[float, Any]]]:
    """Each process's memory census lines (``rtcfleet.memory_census``), by seconds into the run."""
    found: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    for line in logs:
        match = CENSUS_LINE.match(line)
        if match is None:
            continue
        stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").timestamp()
        found[match[2]].append((stamp - started_wall, json.loads(match[3])))
    return found


RECORD_START = re.compile(r"^[^ ]+: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")


def error_records(lines: list[str]) -> list[str]:
    """Each ERROR record or traceback with the lines that continue it (the task or frame a
    one-line message names is on the next line)."""
    records: list[list[str]] = []
    keep = False
    for line in lines:
        if RECORD_START.match(line):
            keep = " ERROR " in line or "Traceback" in line
            if keep:
                records.append([line])
        elif keep:
            records[-1].append(line.split(": ", 1)[-1])
        elif "Traceback" in line:
            keep = True
            records.append([line])
    return ["\n".join(record) for record in records]


def c_heap_slopes(reports: list[tuple[float, Any]], warmup_s: float) -> dict[str, float | None]:
    """KiB per minute after warm-up of the C heap in use and of what its allocator keeps free."""
    slopes: dict[str, float | None] = {}
    for key in ("in_use", "free_kept"):
        points = [(t, c["c_heap"][key]) for t, c in reports if c.get("c_heap")]
        slope = steady_slope(points, warmup_s)
        slopes[f"c_heap_{key}_kib_per_min"] = round(slope / 1024, 1) if slope is not None else None
    return slopes


def mib_parts(census: dict[str, Any]) -> dict[str, float]:
    return {name: round(value / 2**20, 2) for name, value in census["parts"].items()}


def first_after(points: list[tuple[float, Any]], at: float) -> tuple[float, Any] | None:
    return next(((t, item) for t, item in points if t >= at), None)


def steady_slope(points: list[tuple[float, int]], warmup_s: float) -> float | None:
    return slope_per_min([(t, v) for t, v in points if t >= warmup_s])


async def run(clients: int, minutes: float, warmup_s: float, census_s: float) -> dict[str, Any]:
    census_env = {memory_census.ENV: str(census_s)} if census_s else {}
    # two workers: 200 clients publish 200 streams, more than one worker's default capacity
    fleet = LocalFleet(
        FleetSpec(
            regions=1,
            gateways=1,
            media=1,
            workers_per_node=2,
            log_level="WARNING",
            media_env=census_env,
            gateway_env=census_env,
        )
    )
    await asyncio.to_thread(fleet.start)
    print(f"fleet in {fleet.workdir}", flush=True)
    tally = Tally()
    series: dict[str, list[tuple[float, int]]] = defaultdict(list)
    redis_series: list[tuple[float, dict[str, Any]]] = []
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        url = fleet.regions[fleet.home].gateways[0].signal_url
        started, started_wall = time.monotonic(), time.time()
        deadline = started + minutes * 60
        watch = asyncio.create_task(
            memory_watch(fleet, started, deadline, series, redis_series, tally)
        )
        await asyncio.gather(*(client(i, url, fleet, deadline, tally) for i in range(clients)))
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        load_end = [round(x, 2) for x in os.getloadavg()]
        # every session ended with `leave`: what the platform still holds for them
        await asyncio.sleep(2.0)
        after = await asyncio.to_thread(sample, fleet)
        redis = connect(fleet.regions[fleet.home].redis.url)
        try:
            redis_after = await redis_census(redis)
        finally:
            await redis.aclose()
        # each log line after its log's name, which names the process
        lines = [
            f"{path.stem}: {line}"
            for path in sorted((fleet.workdir / "logs").glob("*"))
            for line in path.read_text(errors="replace").splitlines()
        ]
    finally:
        await asyncio.to_thread(fleet.remove)
    log_errors = error_records(lines)
    memory = {}
    for name, points in sorted(series.items()):
        steady = [(t, rss) for t, rss in points if t >= warmup_s]
        slope = slope_per_min(steady)
        memory[name] = {
            "rss_mib_after_warmup": round(steady[0][1] / 2**20, 1) if steady else None,
            "rss_mib_end": round(points[-1][1] / 2**20, 1),
            "rss_mib_after_all_left": round(after.get(name, 0) / 2**20, 1),
            "slope_kib_per_min": round(slope / 1024, 1) if slope is not None else None,
            "samples": len(points),
            "rss_mib_every_minute": [
                round(rss / 2**20, 1) for _, rss in points[:: max(round(60 / SAMPLE_EVERY_S), 1)]
            ],
        }
    used = [(t, c["used_memory"]) for t, c in redis_series]
    used_slope = steady_slope(used, warmup_s)
    warm = first_after(redis_series, warmup_s)
    censuses = {}
    for name, reports in sorted(census_lines(lines, started_wall).items()):
        first = first_after(reports, warmup_s)
        blocks_slope = steady_slope([(t, c["blocks"]) for t, c in reports], warmup_s)
        censuses[name] = {
            "after_warmup": first[1] if first else None,
            "end": reports[-1][1],
            "allocated_blocks_per_min": round(blocks_slope) if blocks_slope is not None else None,
            **c_heap_slopes(reports, warmup_s),
            # (seconds, MiB in use, MiB kept free): a leak climbs, a cache levels off
            "c_heap_mib": [
                [
                    round(t),
                    round(c["c_heap"]["in_use"] / 2**20, 2),
                    round(c["c_heap"]["free_kept"] / 2**20, 2),
                ]
                for t, c in reports
                if c.get("c_heap")
            ],
        }
    return {
        "benchmark": "soak",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_end": load_end,
        },
        "clients": clients,
        "minutes": minutes,
        "warmup_s": warmup_s,
        "warmup_from": (
            f"clients start within {START_SPREAD_S:.0f} s; the longest state TTL "
            f"(rtcfleet.bus.STATE_TTLS_SECONDS) is {max(bus.STATE_TTLS_SECONDS.values())} s"
        ),
        "media": "VP8 64x48 at 2 fps per client, no audio; rooms of two",
        "tally": asdict(tally),
        "memory": memory,
        "redis": {
            "used_memory_mib_after_warmup": (
                round(warm[1]["used_memory"] / 2**20, 2) if warm else None
            ),
            "used_memory_mib_end": round(used[-1][1] / 2**20, 2) if used else None,
            "used_memory_slope_kib_per_min": (
                round(used_slope / 1024, 1) if used_slope is not None else None
            ),
            "parts_mib_after_warmup": mib_parts(warm[1]) if warm else None,
            "parts_mib_end": mib_parts(redis_series[-1][1]) if redis_series else None,
            "keys_after_warmup": warm[1]["keys"] if warm else None,
            "keys_end": redis_series[-1][1]["keys"] if redis_series else None,
            "keys_after_all_left": redis_after["keys"],
            "used_memory_mib_after_all_left": round(redis_after["used_memory"] / 2**20, 2),
        },
        "census": censuses,
        "log_errors": log_errors[:20],
    }


def default_warmup() -> float:
    """Until every client has started and the state of the first sessions that ended has
    expired: only then do the region's keys reach the count a steady load keeps."""
    return START_SPREAD_S + max(bus.STATE_TTLS_SECONDS.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument(
        "--warmup",
        type=float,
        default=default_warmup(),
        help="seconds before slopes count (default: the clients' start spread plus the "
        "longest state TTL)",
    )
    parser.add_argument(
        "--census",
        type=float,
        default=0.0,
        help="seconds between the memory census lines of the gateway and the media workers "
        "(rtcfleet.memory_census; 0: none)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.clients < 2 or args.clients > 1000 or not 0 < args.minutes <= 60:
        parser.error("--clients 2..1000 and --minutes up to 60")
    if args.warmup >= args.minutes * 60 - 3 * SAMPLE_EVERY_S:
        parser.error(f"--minutes too short for a {args.warmup:.0f} s warm-up and a slope")
    result = asyncio.run(run(args.clients, args.minutes, args.warmup, args.census))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
