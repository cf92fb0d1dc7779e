"""A gateway in-process (both apps) on the suite's real Redis and Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from gateway_node.app import GATEWAY, create_apps
from gateway_node.gateway import Gateway
from gateway_node.settings import GatewaySettings
from rtcfleet.nodes import Heartbeat, NodeLoad, NodeRegistration
from rtcfleet.servers import RedisServer, ReplicatedPostgres
from rtcfleet.tokens import mint_token

API_KEY, API_SECRET = "test-key", "test-secret-0123456789abcdef-0123456789"
CLUSTER_SECRET = "cluster-secret-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"


@dataclass
class GatewayUnderTest:
    client: TestClient
    admin: TestClient
    gateway: Gateway
    redis: aioredis.Redis

    def token(self, room: str, identity: str, **grants: object) -> str:
        return mint_token(API_KEY, API_SECRET, room=room, identity=identity, **grants)  # type: ignore[arg-type]

    async def register_node(self, node_id: str, region: str = "test") -> None:
        """A node registered and heartbeating through the real internal API."""
        headers = {"Authorization": f"Bearer {CLUSTER_SECRET}"}
        registration = NodeRegistration(
            node_id=node_id, region=region, workers=1, capacity_streams=100
        )
        response = await self.client.post(
            "/internal/nodes/register", data=registration.model_dump_json(), headers=headers
        )
        assert response.status == 200
        beat = Heartbeat(load=NodeLoad())
        response = await self.client.post(
            f"/internal/nodes/{node_id}/heartbeat", data=beat.model_dump_json(), headers=headers
        )
        assert response.status == 200

    async def register_node_heartbeat(self, node_id: str) -> None:
        beat = Heartbeat(load=NodeLoad())
        response = await self.client.post(
            f"/internal/nodes/{node_id}/heartbeat",
            data=beat.model_dump_json(),
            headers={"Authorization": f"Bearer {CLUSTER_SECRET}"},
        )
        assert response.status == 200

    async def signal(self) -> aiohttp.ClientWebSocketResponse:
        return await self.client.ws_connect("/v1/signal")


@pytest.fixture
async def gw(
    redis_server: RedisServer, postgres: ReplicatedPostgres
) -> AsyncIterator[GatewayUnderTest]:
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await redis.flushdb()
    settings = GatewaySettings(
        gateway_id=f"gw-{uuid.uuid4().hex[:6]}",
        region="test",
        redis_url=redis_server.url,
        postgres_dsn=postgres.primary.dsn,
        api_keys={API_KEY: API_SECRET},
        cluster_secret=CLUSTER_SECRET,
        admin_token=ADMIN_TOKEN,
        rate_limit_per_second=20,
        rate_limit_burst=20,
        rate_limit_disconnect_after=100,
    )
    client_app, admin_app = create_apps(settings)
    client = TestClient(TestServer(client_app))
    admin = TestClient(TestServer(admin_app))
    await client.start_server()
    await admin.start_server()
    try:
        yield GatewayUnderTest(client, admin, client_app[GATEWAY], redis)
    finally:
        await admin.close()
        await client.close()
        await redis.aclose()
