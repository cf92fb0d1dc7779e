"""A load-balancer double on loopback that applies a planned probe (``infra.plan.probes``).

It probes each target on the planned path every planned interval, counts consecutive passes and
failures against the planned thresholds, and proxies each request to a target that is up; when
none is up it routes to all of them (fail open) or refuses the request with 503, as planned.
Targets start down, as a newly registered target does on both clouds.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from infra.plan.probes import PlannedProbe
from rtcfleet.servers.ports import LOOPBACK

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class Target:
    url: str
    up: bool = False
    passes: int = 0
    failures: int = 0
    first_up_at: float | None = None


@dataclass
class LoadBalancerDouble:
    probe: PlannedProbe
    targets: list[Target]
    refused: int = 0
    forwarded: int = 0
    rounds: int = 0
    _runner: web.AppRunner | None = None
    _task: asyncio.Task[None] | None = None
    _http: aiohttp.ClientSession | None = None
    _cycle: itertools.count[int] = field(default_factory=itertools.count)
    port: int = 0

    @classmethod
    def of(cls, probe: PlannedProbe, target_urls: list[str]) -> LoadBalancerDouble:
        return cls(probe, [Target(url.rstrip("/")) for url in target_urls])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self) -> LoadBalancerDouble:
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._task = asyncio.create_task(self._probe_loop())
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    def routable(self) -> list[Target]:
        up = [t for t in self.targets if t.up]
        if up:
            return up
        return list(self.targets) if self.probe.fail_open else []

    async def _probe_once(self, target: Target) -> None:
        assert self._http is not None
        try:
            async with self._http.get(
                target.url + self.probe.path,
                timeout=aiohttp.ClientTimeout(total=self.probe.timeout_s),
            ) as response:
                passed = response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            passed = False
        if passed:
            target.passes, target.failures = target.passes + 1, 0
            if not target.up and target.passes >= self.probe.healthy_threshold:
                target.up = True
                target.first_up_at = target.first_up_at or time.monotonic()
        else:
            target.passes, target.failures = 0, target.failures + 1
            if target.up and target.failures >= self.probe.unhealthy_threshold:
                target.up = False

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.gather(*(self._probe_once(t) for t in self.targets))
            self.rounds += 1
            await asyncio.sleep(self.probe.interval_s)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        choices = self.routable()
        if not choices:
            self.refused += 1
            return web.Response(status=503, text="no healthy backend")
        target = choices[next(self._cycle) % len(choices)]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            async with self._http.request(
                request.method,
                target.url + request.path_qs,
                headers=headers,
                data=await request.read(),
            ) as response:
                body = await response.read()
                self.forwarded += 1
                return web.Response(
                    status=response.status,
                    body=body,
                    content_type=response.content_type,
                )
        except (aiohttp.ClientError, OSError):
            return web.Response(status=502, text="backend unreachable")
