"""The gateway's health signals, each for one kind of judge (docs/health.md).

- Liveness answers from the event loop and reads nothing else: a node group that replaces
  machines on it replaces only machines whose process is gone or stuck, never a whole region
  because its Redis or the settings database is away.
- Readiness asks the region's Redis and the region's media capacity, never Postgres and never
  another region. Registration readiness asks Redis only: a media node must be able to register
  through a load balancer that routes on it before any media node exists.
- Region health places a probe through the filters a join uses and has the chosen media node
  answer over the region's bus. It runs on a fixed cadence in the background, so however many
  DNS checkers ask, the region's nodes see one probe per interval per gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway_node.metrics import GatewayMetrics
from gateway_node.placement import placeable
from gateway_node.registry import NodeRegistry
from gateway_node.settings import GatewaySettings
from rtcfleet import bus
from rtcfleet.node_messages import NodeProbe
from rtcfleet.tasks import cancel_and_wait

log = logging.getLogger("rtcfleet.gateway.health")

READINESS_TIMEOUT_S = 1.0
REGION_CHECK_INTERVAL_S = 1.0
REGION_PROBE_TIMEOUT_S = 2.0
# media nodes asked per probe: one that died within its staleness bound does not turn the
# region red while another answers
REGION_PROBE_NODES = 2
# a verdict older than this many intervals means the check itself is stuck: red
STALE_VERDICT_INTERVALS = 4
PROBE_OP = "probe"


class RegionView(Protocol):
    """What the health signals read of a gateway (``gateway_node.gateway.Gateway``)."""

    id: str
    settings: GatewaySettings
    metrics: GatewayMetrics

    @property
    def redis(self) -> aioredis.Redis: ...

    @property
    def registry(self) -> NodeRegistry: ...


async def readiness(gateway: RegionView, *, registration: bool = False) -> list[str]:
    """Reasons this gateway should not get traffic now; empty when it is ready."""
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_S):
            await gateway.redis.ping()
            if registration:
                return []
            nodes = await gateway.registry.nodes()
    except (TimeoutError, RedisError, OSError) as exc:
        return [f"redis unreachable: {exc or type(exc).__name__}"]
    if not placeable(nodes, time.time(), gateway.settings.node_stale_seconds):
        return ["no media node can take a new room"]
    return []


async def probe_region(gateway: RegionView) -> list[str]:
    """Place a probe as a join would and have the chosen nodes answer; reasons when none does."""
    redis = gateway.redis
    nodes = await gateway.registry.nodes()
    candidates = placeable(nodes, time.time(), gateway.settings.node_stale_seconds)
    if not candidates:
        return ["no media node can take a new room"]
    candidates.sort(key=lambda n: (round(n.utilization, 3), n.load.rooms, n.node_id))
    probes = {
        f"probe-{gateway.id}-{uuid.uuid4().hex[:8]}": node.node_id
        for node in candidates[:REGION_PROBE_NODES]
    }
    asked = {bus.session_stream(probe_id): node_id for probe_id, node_id in probes.items()}
    cursors = dict.fromkeys(asked, "0-0")
    answered: dict[str, int] = {}
    deadline = time.monotonic() + REGION_PROBE_TIMEOUT_S
    try:
        for probe_id, node_id in probes.items():
            await bus.send_to_node(redis, node_id, NodeProbe(probe=probe_id))
        while (left := deadline - time.monotonic()) > 0 and len(answered) < len(asked):
            waiting = {s: c for s, c in cursors.items() if asked[s] not in answered}
            for stream, items in await bus.read_streams(redis, waiting, max(1, int(left * 1000))):
                for cursor, fields in items:
                    cursors[stream] = cursor
                    ready = int(bus.decode_entry(fields).get("workers_ready", 0))
                    answered[asked[stream]] = ready
                    if ready > 0:
                        return []
    finally:
        await redis.delete(*asked, *(bus.stream_bytes_key(stream) for stream in asked))
    return [
        f"media node {node_id} has no worker ready"
        if node_id in answered
        else f"media node {node_id} did not answer a probe within {REGION_PROBE_TIMEOUT_S} s"
        for node_id in asked.values()
    ]


@dataclass
class RegionVerdict:
    healthy: bool
    reasons: list[str]
    checked_at: float
    took_s: float


@dataclass
class RegionHealth:
    """The last region probe's verdict, renewed every ``interval`` seconds in the background."""

    gateway: RegionView
    interval: float = REGION_CHECK_INTERVAL_S
    verdict: RegionVerdict | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="region-health")

    async def stop(self) -> None:
        """Let a probe in flight finish (it is bounded) rather than cancel it inside a Redis
        command, which would leave its connection in an unknown state."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            async with asyncio.timeout(REGION_PROBE_TIMEOUT_S * 2 + 1):
                await asyncio.shield(task)
        except TimeoutError:
            await cancel_and_wait([task], REGION_PROBE_TIMEOUT_S)

    async def check(self) -> RegionVerdict:
        started = time.monotonic()
        try:
            async with asyncio.timeout(REGION_PROBE_TIMEOUT_S * 2):
                reasons = await probe_region(self.gateway)
        except (TimeoutError, RedisError, OSError, ValueError) as exc:
            reasons = [f"region probe failed: {exc or type(exc).__name__}"]
        verdict = RegionVerdict(not reasons, reasons, time.time(), time.monotonic() - started)
        if self.verdict is not None and self.verdict.healthy != verdict.healthy:
            log.warning("region health %s: %s", "green" if verdict.healthy else "red", reasons)
        self.verdict = verdict
        self.gateway.metrics.region_healthy.set(1 if verdict.healthy else 0)
        return verdict

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            await self.check()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._stopping.wait()

    def current(self) -> tuple[bool, list[str]]:
        """The verdict as a judge should read it: a verdict that stopped being renewed is red."""
        if self.verdict is None:
            return False, ["no region probe has finished yet"]
        age = time.time() - self.verdict.checked_at
        if age > self.interval * STALE_VERDICT_INTERVALS + REGION_PROBE_TIMEOUT_S:
            return False, [f"the last region probe finished {age:.0f} s ago"]
        return self.verdict.healthy, self.verdict.reasons
