"""Liveness, readiness and region health: each depends only on what its judge should act on."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from gateway_node import health
from gateway_node.app import GATEWAY, create_apps
from gateway_node.settings import GatewaySettings
from infra.spec import (
    LIVENESS_PATH,
    READINESS_PATH,
    REGION_HEALTH_PATH,
    REGISTRATION_READINESS_PATH,
)
from rtcfleet import bus
from rtcfleet.servers import RedisServer, ReplicatedPostgres, free_port
from rtcfleet.tasks import cancel_and_wait
from tests.gateway_node.conftest import (
    ADMIN_TOKEN,
    API_KEY,
    API_SECRET,
    CLUSTER_SECRET,
    GatewayUnderTest,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@contextlib.asynccontextmanager
async def gateway(
    redis_url: str, postgres_dsn: str, settings_refresh: float = 0.2
) -> AsyncIterator[GatewayUnderTest]:
    settings = GatewaySettings(
        gateway_id=f"gw-{uuid.uuid4().hex[:6]}",
        region="test",
        redis_url=redis_url,
        postgres_dsn=postgres_dsn,
        settings_refresh_seconds=settings_refresh,
        api_keys={API_KEY: API_SECRET},
        cluster_secret=CLUSTER_SECRET,
        admin_token=ADMIN_TOKEN,
    )
    client_app, admin_app = create_apps(settings)
    client, admin = TestClient(TestServer(client_app)), TestClient(TestServer(admin_app))
    await client.start_server()
    await admin.start_server()
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield GatewayUnderTest(client, admin, client_app[GATEWAY], redis)
    finally:
        await admin.close()
        await client.close()
        await redis.aclose()


@contextlib.asynccontextmanager
async def hung_server() -> AsyncIterator[int]:
    """A port that accepts connections and never answers: a hung Postgres or Redis."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


class FreezableProxy:
    """A TCP relay to a real server that can stop relaying: the server hangs, as one paused or
    behind a dropped link does, after the gateway has connected to it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if self.frozen.is_set():
                    await asyncio.Event().wait()
                writer.write(data)
                await writer.drain()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()


async def answer_probes(redis: aioredis.Redis, node_id: str, workers: int = 1) -> None:
    """A media node's side of the region probe: read the inbox, answer on the probe's stream."""
    cursor = "$"
    while True:
        for _, entries in await bus.read_streams(redis, {bus.node_inbox(node_id): cursor}, 500):
            for entry_id, fields in entries:
                cursor = entry_id
                command = bus.decode_entry(fields)
                if command.get("op") == health.PROBE_OP:
                    await bus.send_to_session(
                        redis, command["probe"], {"type": "probe", "workers_ready": workers}
                    )


async def test_liveness_holds_while_redis_and_postgres_hang() -> None:
    async with (
        hung_server() as port,
        gateway(
            f"redis://127.0.0.1:{port}/0", f"postgresql://postgres@127.0.0.1:{port}/postgres"
        ) as gw,
    ):
        for app in (gw.client, gw.admin):
            started = time.monotonic()
            response = await app.get(LIVENESS_PATH)
            assert response.status == 200 and (time.monotonic() - started) < 0.5
        started = time.monotonic()
        response = await gw.admin.get(READINESS_PATH)
        assert response.status == 503
        # readiness is bounded: a load balancer's probe gets its answer before it times out
        assert time.monotonic() - started < health.READINESS_TIMEOUT_S + 1
        assert "redis unreachable" in (await response.json())["reasons"][0]
        assert (await gw.admin.get(REGISTRATION_READINESS_PATH)).status == 503


async def test_readiness_asks_redis_and_media_capacity_never_postgres(
    redis_server: RedisServer,
) -> None:
    await aioredis.Redis.from_url(redis_server.url).flushdb()
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    async with gateway(redis_server.url, dead) as gw:
        # no media node yet: not ready for joins, ready for registrations
        assert (await gw.client.get(READINESS_PATH)).status == 503
        assert (await gw.client.get(REGISTRATION_READINESS_PATH)).status == 200
        await gw.register_node("node-a")
        response = await gw.client.get(READINESS_PATH)
        assert response.status == 200, await response.text()


async def test_public_port_answers_verdicts_without_details(redis_server: RedisServer) -> None:
    await aioredis.Redis.from_url(redis_server.url).flushdb()
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    async with gateway(redis_server.url, dead) as gw:
        public = await (await gw.client.get(READINESS_PATH)).json()
        detailed = await (await gw.admin.get(READINESS_PATH)).json()
        assert public == {"ready": False}
        assert detailed == {"ready": False, "reasons": ["no media node can take a new room"]}
        assert await (await gw.client.get(REGION_HEALTH_PATH)).json() == {"healthy": False}


async def test_region_health_needs_a_placed_node_that_answers(redis_server: RedisServer) -> None:
    await aioredis.Redis.from_url(redis_server.url).flushdb()
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    async with gateway(redis_server.url, dead) as gw:
        region = gw.gateway.region_health
        verdict = await region.check()
        assert verdict.reasons == ["no media node can take a new room"]
        # registered and heartbeating, but nothing reads its bus: a dead SFU behind a live
        # heartbeat must not pass
        await gw.register_node("node-a")
        verdict = await region.check()
        assert not verdict.healthy and "did not answer" in verdict.reasons[0]
        answering = asyncio.create_task(answer_probes(gw.redis, "node-a"))
        try:
            await asyncio.sleep(0.2)
            verdict = await region.check()
            assert verdict.healthy, verdict.reasons
            assert (await gw.admin.get(REGION_HEALTH_PATH)).status == 200
            assert verdict.took_s < 1.0
            # the probe leaves nothing behind in Redis
            assert await gw.redis.keys("rtc:sess:probe-*") == []
        finally:
            answering.cancel()
        # a node that answers with no worker ready cannot carry a call
        answering = asyncio.create_task(answer_probes(gw.redis, "node-a", workers=0))
        try:
            await asyncio.sleep(0.2)
            verdict = await region.check()
            assert verdict.reasons == ["media node node-a has no worker ready"]
        finally:
            answering.cancel()


async def test_a_verdict_that_stops_being_renewed_is_red(redis_server: RedisServer) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    async with gateway(redis_server.url, dead) as gw:
        region = health.RegionHealth(gw.gateway)
        region.verdict = health.RegionVerdict(True, [], time.time() - 60, 0.01)
        healthy, reasons = region.current()
        assert not healthy and "ago" in reasons[0]


@pytest.mark.parametrize("fault", ["refused", "hung"])
async def test_admin_write_without_the_writer_is_503_naming_the_cause(
    redis_server: RedisServer, postgres: ReplicatedPostgres, fault: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if fault == "hung":
            proxy = FreezableProxy(postgres.primary.port)
            port = await stack.enter_async_context(proxy)
        else:
            port = free_port()
        gw = await stack.enter_async_context(
            gateway(redis_server.url, f"postgresql://postgres@127.0.0.1:{port}/postgres")
        )
        if fault == "hung":
            # connected and writing, then the writer hangs
            response = await gw.admin.put(
                "/api/settings", json={"max_participants_per_room": 50}, headers=ADMIN
            )
            for _ in range(100):
                if response.status == 200:
                    break
                await asyncio.sleep(0.1)
                response = await gw.admin.put(
                    "/api/settings", json={"max_participants_per_room": 50}, headers=ADMIN
                )
            assert response.status == 200
            proxy.frozen.set()
        started = time.monotonic()
        response = await gw.admin.put(
            "/api/settings", json={"max_participants_per_room": 7}, headers=ADMIN
        )
        took = time.monotonic() - started
        body = await response.json()
        assert response.status == 503, body
        assert body["error"] == "settings_writer_unavailable"
        assert "read/write node" in body["detail"]
        assert took < 3.0 + 1.0  # the writer's bound, not a client's timeout
        assert (await gw.client.get(LIVENESS_PATH)).status == 200


async def test_settings_copy_age_is_shown_and_survives_a_lost_database(
    redis_server: RedisServer, postgres: ReplicatedPostgres
) -> None:
    async with gateway(redis_server.url, postgres.primary.dsn, settings_refresh=60) as gw:
        deadline = time.monotonic() + 10
        while gw.gateway.platform.age() is None:
            assert time.monotonic() < deadline, gw.gateway.platform.last_error
            await asyncio.sleep(0.05)
        stats = await (await gw.client.get("/stats")).json()
        assert 0 <= stats["settings"]["age_seconds"] < 5
        assert stats["settings"]["values"]["max_participants_per_room"] >= 2
        metrics = await (await gw.client.get("/metrics")).text()
        age = next(
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("rtcfleet_gateway_settings_age_seconds ")
        )
        assert 0 <= age < 5
        # the database goes away: the copy stays, it ages, and the reason is shown
        await asyncio.sleep(0.5)
        assert not await gw.gateway.platform.refresh(f"postgresql://x@127.0.0.1:{free_port()}/x")
        stats = await (await gw.admin.get("/stats", headers=ADMIN)).json()
        assert stats["settings"]["last_error"].startswith("settings database unreachable")
        public = await (await gw.client.get("/stats")).json()
        assert "last_error" not in public["settings"], "the public port names the database"
        assert "error" not in public["settings_replication"]
        assert stats["settings"]["age_seconds"] >= 0.4
        assert stats["settings"]["values"]["max_participants_per_room"] >= 2


async def test_a_gateway_shuts_down_when_a_loop_lost_its_cancel(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop whose cancel a Redis command swallowed goes on to its next round: the gateway's
    shutdown must end it anyway, not wait on it forever."""
    rounds: list[int] = []

    async def monitor_losing_its_first_cancel(self: object) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        while True:
            rounds.append(1)
            await asyncio.sleep(0.05)

    monkeypatch.setattr(
        "gateway_node.node_monitor.NodeMonitor.run", monitor_losing_its_first_cancel
    )
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    stack = contextlib.AsyncExitStack()
    gw = await stack.enter_async_context(gateway(redis_server.url, dead))
    assert (await gw.client.get(LIVENESS_PATH)).status == 200
    closing = asyncio.create_task(stack.aclose())
    # waited on without cancelling it: a cancel from here would end the loop in its place
    done, _ = await asyncio.wait({closing}, timeout=20)
    if not done:  # leave no loop behind for the next test's event loop to wait on
        monitors = [task for task in asyncio.all_tasks() if task.get_name() == "monitor"]
        await cancel_and_wait([closing, *monitors], 5.0)
    assert done, "the gateway's shutdown waits on a loop that lost its cancel"
    assert rounds, "the monitor's first cancel was not lost"
