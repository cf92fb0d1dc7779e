"""Health, readiness, stats and metrics: what load balancers and operators read."""

from __future__ import annotations

import asyncio
import json

from gateway_node.settings import ENV_PREFIX, GatewaySettings
from rtcfleet.config_file import describe_errors
from tests.gateway_node.conftest import GatewayUnderTest


async def wait_for_postgres(gw: GatewayUnderTest) -> None:
    for _ in range(100):
        if gw.gateway.writer.connected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("gateway never connected to Postgres")


async def test_readyz_needs_a_fresh_media_node(gw: GatewayUnderTest) -> None:
    await wait_for_postgres(gw)
    assert (await gw.client.get("/healthz")).status == 200
    response = await gw.client.get("/readyz")
    assert response.status == 503
    # the reasons are for operators, on the admin port only
    assert (await response.json()) == {"ready": False}
    response = await gw.admin.get("/readyz")
    assert "no media node can take a new room" in (await response.json())["reasons"]
    await gw.register_node("node-a")
    response = await gw.client.get("/readyz")
    assert response.status == 200, await response.text()
    # the admin load balancer checks the same thing on the admin port, without a token
    assert (await gw.admin.get("/readyz")).status == 200
    assert (await gw.admin.get("/api/nodes")).status == 401


async def test_stats_count_clients_rooms_and_nodes(gw: GatewayUnderTest) -> None:
    await gw.register_node("node-a")
    await gw.register_node("node-b")
    assert (await gw.admin.post("/api/nodes/node-b/drain", headers=admin())).status == 202
    await gw.register_node_heartbeat("node-b")
    ws = await gw.signal()
    await ws.send_str(json.dumps({"type": "join", "token": gw.token("room-1", "alice")}))
    assert json.loads((await ws.receive()).data)["type"] == "joined"
    stats = await (await gw.client.get("/stats")).json()
    assert stats["clients"]["this_gateway"] == 1
    assert stats["media_nodes"] == {"healthy": 1, "draining": 1, "stale": 0}
    metrics = await (await gw.client.get("/metrics")).text()
    assert "rtcfleet_gateway_clients 1.0" in metrics
    assert 'rtcfleet_gateway_messages_total{direction="in",type="join"} 1.0' in metrics
    await ws.close()


async def test_unknown_node_drain_and_bad_cluster_secret(gw: GatewayUnderTest) -> None:
    assert (await gw.admin.post("/api/nodes/ghost/drain", headers=admin())).status == 404
    response = await gw.client.post(
        "/internal/nodes/register", data="{}", headers={"Authorization": "Bearer nope"}
    )
    assert response.status == 401
    assert (await gw.redis.keys("rtc:node:*")) == []


def admin() -> dict[str, str]:
    from tests.gateway_node.conftest import ADMIN_TOKEN

    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_bad_settings_name_the_environment_variable(monkeypatch) -> None:
    monkeypatch.setenv("RTCFLEET_GATEWAY_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("RTCFLEET_GATEWAY_POSTGRES_DSN", "postgresql://x@127.0.0.1/x")
    monkeypatch.setenv("RTCFLEET_GATEWAY_API_KEYS", '{"k": "' + "s" * 40 + '"}')
    monkeypatch.setenv("RTCFLEET_GATEWAY_CLUSTER_SECRET", "short")
    monkeypatch.setenv("RTCFLEET_GATEWAY_ADMIN_TOKEN", "a" * 20)
    monkeypatch.setenv("RTCFLEET_GATEWAY_CLIENT_PORT", "99999")
    try:
        GatewaySettings()
    except Exception as exc:
        text = describe_errors(exc, ENV_PREFIX)  # type: ignore[arg-type]
    else:
        raise AssertionError("bad settings were accepted")
    assert "RTCFLEET_GATEWAY_CLUSTER_SECRET: Value error, must be at least 16 characters" in text
    assert "RTCFLEET_GATEWAY_CLIENT_PORT:" in text
