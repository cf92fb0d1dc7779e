"""Application factories: the client app (8080) and the admin app (9090) share one Gateway.

Tests run both in-process with ``aiohttp.test_utils``; ``rtcfleet gateway`` runs the same
factories as a process.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway_node import admin, demo, health, internal, recording_api
from gateway_node.access_log import RedactingAccessLogger
from gateway_node.app_keys import DETAILED, GATEWAY
from gateway_node.gateway import Gateway
from gateway_node.settings import GatewaySettings
from gateway_node.signal import signal_handler
from infra.spec import (
    LIVENESS_PATH,
    READINESS_PATH,
    REGION_HEALTH_PATH,
    REGISTRATION_READINESS_PATH,
)


def _verdict(request: web.Request, ok: bool, reasons: list[str], key: str) -> web.Response:
    body: dict[str, object] = {key: ok}
    if request.app[DETAILED]:
        body["reasons"] = reasons
    return web.json_response(body, status=200 if ok else 503)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: answered by the event loop alone, whatever Redis or Postgres are doing."""
    return web.json_response({"alive": True, "gateway_id": request.app[GATEWAY].id})


async def readyz(request: web.Request) -> web.Response:
    reasons = await health.readiness(request.app[GATEWAY])
    return _verdict(request, not reasons, reasons, "ready")


async def readyz_registration(request: web.Request) -> web.Response:
    reasons = await health.readiness(request.app[GATEWAY], registration=True)
    return _verdict(request, not reasons, reasons, "ready")


async def regionz(request: web.Request) -> web.Response:
    healthy, reasons = request.app[GATEWAY].region_health.current()
    return _verdict(request, healthy, reasons, "healthy")


def _add_health_routes(app: web.Application) -> None:
    app.router.add_get(LIVENESS_PATH, healthz)
    app.router.add_get(READINESS_PATH, readyz)
    app.router.add_get(REGISTRATION_READINESS_PATH, readyz_registration)
    app.router.add_get(REGION_HEALTH_PATH, regionz)


async def stats(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    nodes = await gateway.registry.nodes()
    by_state = {"healthy": 0, "draining": 0, "stale": 0}
    rooms = participants = 0
    for node in nodes:
        if not gateway.registry.is_fresh(node):
            by_state["stale"] += 1
            continue
        by_state["draining" if node.draining else "healthy"] += 1
        rooms += node.load.rooms
        participants += node.load.participants
    gateways = await gateway.gateways()
    settings, replication = gateway.platform.to_json(), gateway.replication.last.to_json()
    if not request.app[DETAILED]:
        # an error names the database's host and how it failed: for operators, on the admin port
        settings.pop("last_error")
        replication.pop("error")
    return web.json_response(
        {
            "region": gateway.settings.region,
            "gateway_id": gateway.id,
            "clients": {
                "this_gateway": len(gateway.relay.sessions),
                "region": sum(g.get("clients", 0) for g in gateways),
                "by_gateway": {g["gateway_id"]: g.get("clients", 0) for g in gateways},
            },
            "rooms": rooms,
            "participants": participants,
            "media_nodes": by_state,
            "settings": settings,
            "settings_replication": replication,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[GATEWAY].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_apps(settings: GatewaySettings) -> tuple[web.Application, web.Application]:
    """The client app owns the Gateway's lifetime; the admin app borrows it."""
    gateway = Gateway(settings)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.close()

    client = web.Application(middlewares=[internal.cluster_auth])
    client[GATEWAY] = gateway
    client[DETAILED] = False
    client.cleanup_ctx.append(lifetime)
    _add_health_routes(client)
    client.router.add_get("/stats", stats)
    client.router.add_get("/metrics", metrics)
    client.router.add_get("/v1/signal", signal_handler)
    demo.add_routes(client)
    recording_api.add_backend_routes(client)
    internal.add_routes(client)

    admin_app = web.Application(middlewares=[admin.admin_auth])
    admin_app[GATEWAY] = gateway
    admin_app[DETAILED] = True
    _add_health_routes(admin_app)
    admin_app.router.add_get("/stats", stats)
    admin.add_routes(admin_app)
    recording_api.add_admin_routes(admin_app)
    return client, admin_app


async def serve(settings: GatewaySettings) -> None:
    """Run both ports until SIGTERM/SIGINT; the load balancer drains sockets to other gateways."""
    client, admin_app = create_apps(settings)
    runners = [
        web.AppRunner(app, access_log_class=RedactingAccessLogger) for app in (client, admin_app)
    ]
    for runner in runners:
        await runner.setup()
    await web.TCPSite(runners[0], settings.host, settings.client_port).start()
    await web.TCPSite(runners[1], settings.host, settings.admin_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for runner in reversed(runners):
        await runner.cleanup()
