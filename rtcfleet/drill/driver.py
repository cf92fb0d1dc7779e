"""The region-outage drill: baseline, inject, measure, restore — the same for every target.

Measured from the moment of the fault:
- time to detect: the region's entry point stops passing its region health check (what DNS
  sees: a room placed on a media node that answers, end to end);
- time until a new join lands in a surviving region (a probe joins through the global
  fallback order, the dead region first, until one is answered elsewhere);
- time until each bot that was in the dead region has media again (p50, max);
- sessions dropped (bots without media at the end of the bound), settings writes lost (writes
  the admin API acknowledged before the fault but not readable after it), and the replication
  lag at the moment of the fault, of every region's settings copy;
- time until every surviving region reads fresh settings again: a setting written through the
  admin API after the fault, until each surviving region's media nodes all report it.

Before the fault the drill waits (bounded) for the standby to replay the last acknowledged
write, so a loss it reports is the failover's, not the drill's haste; if the standby does not
catch up in time, the fault goes in anyway and the report says how many writes were lost.

The fault is a kill, a blackhole or a partition (``FaultKind``). A partition lasts
``partition_s``: nothing should be detected and nobody should lose media, and two bots join one
new room, one through each side, while both sides' state is read every 100 ms: a room hosted
by two regions at once is a split brain, and the report counts the samples that saw one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from rtcfleet.client.bot import Bot
from rtcfleet.drill.backend import DrillBackend, FaultKind
from rtcfleet.signaling import Join, encode

PROBE_INTERVAL_S = 0.1
SPLIT_BRAIN_SAMPLE_S = 0.1
SETTINGS_KEY = "max_participants_per_room"
# written after the fault; distinct from the default and from the baseline's 100, 101, ...
FRESH_VALUE = 60


@dataclass
class DrillSpec:
    region: str
    bots: int = 6
    rooms: int = 3
    recovery_timeout_s: float = 60.0
    settings_writes: int = 20
    # how long to wait for the standby to replay the last write before injecting the fault
    replication_wait_s: float = 10.0
    bot_width: int = 320
    bot_height: int = 180
    bot_fps: int = 15
    restore: bool = True
    fault: FaultKind = FaultKind.KILL
    partition_s: float = 30.0


@dataclass
class DrillReport:
    target: str
    region: str
    home_region_killed: bool
    fault: str = FaultKind.KILL.value
    steps: list[str] = field(default_factory=list)
    time_to_detect_s: float | None = None
    time_to_new_joins_s: float | None = None
    time_to_media_s: list[float] = field(default_factory=list)
    affected_bots: int = 0
    sessions_dropped: int = 0
    settings_writes_acknowledged: int = 0
    # None when the value read after the fault is neither the last value before the drill's
    # writes nor one of them
    settings_writes_lost: int | None = None
    standby_replayed_before_fault: bool = False
    settings_write_after_failover_s: float | None = None
    replication_lag_at_fault: dict[str, float] = field(default_factory=dict)
    split_brain: dict[str, Any] = field(default_factory=dict)
    replication_at_fault: dict[str, dict[str, Any]] = field(default_factory=dict)
    # per surviving region: seconds from the fault until its media nodes all applied the
    # setting written after it (and from that write's acknowledgement)
    settings_fresh_s: dict[str, float] = field(default_factory=dict)
    settings_fresh_after_write_s: dict[str, float] = field(default_factory=dict)
    replication_after_recovery: dict[str, dict[str, Any]] = field(default_factory=dict)

    surviving_regions: list[str] = field(default_factory=list)

    @property
    def settings_fresh_everywhere_s(self) -> float | None:
        """Until the last surviving region has fresh settings; None when one never did."""
        if not self.settings_fresh_s or set(self.surviving_regions) - set(self.settings_fresh_s):
            return None
        return max(self.settings_fresh_s.values())

    @property
    def time_to_media_p50_s(self) -> float | None:
        return statistics.median(self.time_to_media_s) if self.time_to_media_s else None

    @property
    def time_to_media_max_s(self) -> float | None:
        return max(self.time_to_media_s) if self.time_to_media_s else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["time_to_media_p50_s"] = self.time_to_media_p50_s
        data["time_to_media_max_s"] = self.time_to_media_max_s
        data["settings_fresh_everywhere_s"] = self.settings_fresh_everywhere_s
        return data


class _Admin:
    def __init__(self, http: aiohttp.ClientSession, backend: DrillBackend) -> None:
        self.http, self.backend = http, backend

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.backend.admin_token()}"}

    async def write(self, region: str, changes: dict[str, Any]) -> bool:
        try:
            async with self.http.put(
                self.backend.admin_url(region) + "/api/settings",
                json=changes,
                headers=self._headers(),
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def nodes(self, region: str) -> list[dict[str, Any]] | None:
        try:
            async with self.http.get(
                self.backend.admin_url(region) + "/api/nodes", headers=self._headers()
            ) as response:
                return list(await response.json()) if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def applied_everywhere(self, region: str, key: str, value: Any) -> bool:
        """Every healthy media node of the region reports ``key`` at ``value``."""
        nodes = await self.nodes(region)
        healthy = [n for n in nodes or [] if n.get("state") == "healthy"]
        return bool(healthy) and all((n.get("settings") or {}).get(key) == value for n in healthy)

    async def read(self, region: str) -> dict[str, Any] | None:
        try:
            async with self.http.get(
                self.backend.admin_url(region) + "/api/settings", headers=self._headers()
            ) as response:
                return dict(await response.json()) if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None


def _receives_all(
    bot: Bot, publishers: list[str], since: float, fresh_since: float | None = None
) -> bool:
    for publisher in publishers:
        stats = bot.peer.received(publisher, "video")
        if stats is None or stats.last_frame_at is None or stats.first_frame_at is None:
            return False
        if fresh_since is not None:
            if stats.last_frame_at < fresh_since:
                return False
            continue
        if stats.first_frame_at < since or len(stats.sequence_numbers) < 3:
            return False
    return True


async def _probe_join(backend: DrillBackend, regions: list[str], token: str) -> str | None:
    """One signaling-only join through ``regions`` in order, as the protocol asks of a client:
    a region none of whose URLs answer is named in the next joins' ``unreachable_regions``.
    The region that answered ``joined``, if any."""
    unreachable: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        for region in regions:
            reached = False
            for url in backend.signal_urls(region):
                try:
                    async with http.ws_connect(url) as ws:
                        reached = True
                        join = Join(token=token, unreachable_regions=unreachable)
                        await ws.send_str(encode(join))
                        frame = await ws.receive(timeout=2)
                        if frame.type != aiohttp.WSMsgType.TEXT:
                            continue
                        message = json.loads(frame.data)
                        if message.get("type") == "joined":
                            await ws.send_str(json.dumps({"type": "leave"}))
                            return str(message["region"])
                        break  # redirected or refused: on to the next region
                except (aiohttp.ClientError, TimeoutError, OSError):
                    continue
            if not reached:
                unreachable.append(region)
    return None


def write_values(value_before: int | None, count: int) -> range:
    """Distinct values for the drill's writes, none equal to the value already stored, so the
    value read after the fault tells which writes survived."""
    start = 100
    if value_before is not None and start <= value_before < start + count:
        start += count
    return range(start, start + count)


def writes_lost(seen: int, value_before: int | None, acknowledged: list[int]) -> int | None:
    """Acknowledged writes after the one the surviving side reads; all of them if it reads the
    value from before the drill; None if what it reads is neither."""
    if seen in acknowledged:
        return len(acknowledged) - 1 - acknowledged.index(seen)
    if seen == value_before:
        return len(acknowledged)
    return None


async def run_region_outage(backend: DrillBackend, spec: DrillSpec) -> DrillReport:
    regions = backend.regions()
    if spec.region not in regions:
        raise ValueError(f"unknown region {spec.region!r}; the deployment has {regions}")
    if len(regions) < 2:
        raise ValueError("a region-outage drill needs at least two regions")
    if spec.fault not in backend.faults:
        raise ValueError(
            f"the {backend.target} backend injects {sorted(backend.faults)}, not {spec.fault}"
        )
    partition = spec.fault is FaultKind.PARTITION
    survivors = [r for r in regions if r != spec.region]
    killed_home = spec.region == backend.home()
    report = DrillReport(
        backend.target, spec.region, killed_home, spec.fault.value, surviving_regions=survivors
    )

    # ---- baseline: bots in rooms spread over the regions, settings written ---------------------
    bots: list[tuple[Bot, str, list[str]]] = []
    per_room = max(spec.bots // spec.rooms, 2)
    for room_index in range(spec.rooms):
        room = f"drill-{room_index}"
        region = regions[room_index % len(regions)]
        urls = backend.signal_urls(region) + [
            u for r in regions if r != region for u in backend.signal_urls(r)
        ]
        names = [f"{room}-bot{i}" for i in range(per_room)]
        for name in names:
            bot = Bot(
                urls,
                backend.token(room, name),
                name=name,
                width=spec.bot_width,
                height=spec.bot_height,
                fps=spec.bot_fps,
            )
            bots.append((bot, room, [n for n in names if n != name]))
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    admin = _Admin(http, backend)
    try:
        for bot, _, _ in bots:
            await bot.start()
        deadline = time.monotonic() + spec.recovery_timeout_s
        while not all(_receives_all(b, others, 0) for b, _, others in bots):
            if time.monotonic() > deadline:
                missing = [
                    f"{b.name} ({b.session.region}/{b.session.node_id}: {sorted(b.peer.remote)})"
                    for b, _, others in bots
                    if not _receives_all(b, others, 0)
                ]
                raise TimeoutError(f"baseline: no media for {', '.join(missing)}")
            await asyncio.sleep(0.1)
        writer_region = survivors[0] if killed_home else backend.home()
        before = await admin.read(writer_region)
        value_before = int(before[SETTINGS_KEY]) if before is not None else None
        acknowledged: list[int] = []
        for value in write_values(value_before, spec.settings_writes):
            if await admin.write(writer_region, {SETTINGS_KEY: value}):
                acknowledged.append(value)
        report.settings_writes_acknowledged = len(acknowledged)
        report.standby_replayed_before_fault = await backend.wait_standby_replayed(
            spec.replication_wait_s
        )
        report.replication_lag_at_fault = await backend.replication_lag()
        report.replication_at_fault = await backend.region_replication()
        affected = [(b, others) for b, _, others in bots if b.session.region == spec.region]
        report.affected_bots = len(affected)

        # ---- inject ---------------------------------------------------------------------------
        fault_at = time.monotonic()
        report.steps += await backend.inject(spec.region, spec.fault)
        if killed_home and not partition:
            report.steps += await backend.fail_over_database()

        # ---- measure --------------------------------------------------------------------------
        async def detect() -> None:
            while await backend.region_healthy(spec.region):
                await asyncio.sleep(PROBE_INTERVAL_S)
            report.time_to_detect_s = time.monotonic() - fault_at

        async def new_joins() -> None:
            attempt = 0
            while True:
                attempt += 1
                token = backend.token("drill-probe", f"probe-{attempt}")
                answered = await _probe_join(backend, [spec.region, *survivors], token)
                if answered is not None and answered != spec.region:
                    report.time_to_new_joins_s = time.monotonic() - fault_at
                    return
                await asyncio.sleep(PROBE_INTERVAL_S)

        async def media_again(bot: Bot, others: list[str]) -> None:
            while not _receives_all(bot, others, fault_at):
                await asyncio.sleep(0.05)
            report.time_to_media_s.append(time.monotonic() - fault_at)

        async def settings_write() -> None:
            while not await admin.write(survivors[0], {SETTINGS_KEY: FRESH_VALUE}):
                await asyncio.sleep(PROBE_INTERVAL_S)
            written_at = time.monotonic()
            report.settings_write_after_failover_s = written_at - fault_at
            await asyncio.gather(*(fresh(region, written_at) for region in survivors))

        async def fresh(region: str, written_at: float) -> None:
            while not await admin.applied_everywhere(region, SETTINGS_KEY, FRESH_VALUE):
                await asyncio.sleep(PROBE_INTERVAL_S)
            now = time.monotonic()
            report.settings_fresh_s[region] = round(now - fault_at, 3)
            report.settings_fresh_after_write_s[region] = round(now - written_at, 3)

        media = [media_again(b, o) for b, o in affected]
        if partition:
            # the partition holds for its whole length whatever finishes first
            tasks = [asyncio.ensure_future(m) for m in media]
            await _split_brain(backend, spec, report)
            pending = {t for t in tasks if not t.done()}
            # nobody had to reconnect: what counts is whether media still flows at the end
            now = time.monotonic()
            report.time_to_media_s = [
                0.0 for b, o in affected if _receives_all(b, o, 0, fresh_since=now - 1.0)
            ]
        else:
            tasks = [asyncio.ensure_future(m) for m in (detect(), new_joins(), *media)]
            _, pending = await asyncio.wait(tasks, timeout=spec.recovery_timeout_s)
        for task in pending:
            task.cancel()
        report.sessions_dropped = report.affected_bots - len(report.time_to_media_s)

        # settings: what the surviving side reads, against what was acknowledged
        current = await admin.read(survivors[0])
        if current is not None:
            report.settings_writes_lost = writes_lost(
                int(current[SETTINGS_KEY]), value_before, acknowledged
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(spec.recovery_timeout_s):
                await settings_write()
        report.replication_after_recovery = await backend.region_replication()
    finally:
        await asyncio.gather(*(b.close() for b, _, _ in bots), return_exceptions=True)
        await http.close()

    # ---- restore --------------------------------------------------------------------------------
    if spec.restore:
        report.steps += await backend.restore(spec.region, spec.fault)
    return report


async def _split_brain(backend: DrillBackend, spec: DrillSpec, report: DrillReport) -> None:
    """For ``spec.partition_s``: two bots join one new room, one through each side, while
    every region's own state is read every 100 ms."""
    regions = backend.regions()
    other = next(r for r in regions if r != spec.region)
    room = "drill-split"
    pair = [
        Bot(backend.signal_urls(side), backend.token(room, f"split-{side}"), name=f"split-{side}",
            width=spec.bot_width, height=spec.bot_height, fps=spec.bot_fps)
        for side in (spec.region, other)
    ]  # fmt: skip
    started = time.monotonic()
    samples = both = 0
    first_both: float | None = None
    hosts: dict[str, set[str]] = {r: set() for r in regions}
    joins = [asyncio.ensure_future(bot.start()) for bot in pair]
    try:
        while time.monotonic() - started < spec.partition_s:
            sampled_at = time.monotonic()
            owners = await asyncio.gather(*(backend.room_owner(r, room) for r in regions))
            samples += 1
            for region, owner in zip(regions, owners, strict=True):
                if owner is not None:
                    hosts[region].add(owner)
            if sum(owner is not None for owner in owners) > 1:
                both += 1
                if first_both is None:
                    first_both = time.monotonic() - started
            await asyncio.sleep(max(0.0, SPLIT_BRAIN_SAMPLE_S - (time.monotonic() - sampled_at)))
    finally:
        results = await asyncio.gather(*joins, return_exceptions=True)
        report.split_brain = {
            "room": room,
            "seconds": round(time.monotonic() - started, 2),
            "samples": samples,
            "samples_live_in_two_regions": both,
            "first_seen_in_two_regions_s": first_both,
            "owners_seen": {r: sorted(n) for r, n in hosts.items()},
            "bots": [
                {
                    "name": bot.name,
                    "joined_region": bot.session.region,
                    "error": None if not isinstance(result, BaseException) else repr(result),
                }
                for bot, result in zip(pair, results, strict=True)
            ],
        }
        await asyncio.gather(*(bot.close() for bot in pair), return_exceptions=True)
