"""Admin console and API on port 9090, behind the admin token (and the admin allow-list).

Settings are written through the Postgres read/write node; media nodes pick them up from
their replica.
"""

from __future__ import annotations

import hmac
import json
import time
from html import escape
from typing import Any

from aiohttp import web

from rtcfleet import bus, settings_store
from rtcfleet.settings_store import SettingsError


def _gateway(request: web.Request):  # type: ignore[no-untyped-def]
    from gateway_node.app import GATEWAY

    return request.app[GATEWAY]


# the admin load balancer's health check reaches these without a token
UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz"})


@web.middleware
async def admin_auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
    if request.path in UNAUTHENTICATED_PATHS:
        return await handler(request)
    expected = _gateway(request).settings.admin_token.get_secret_value().encode()
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
    # the console page is opened in a browser: the token may come as ?token=
    given = given or request.query.get("token", "")
    if not hmac.compare_digest(given.encode(), expected):
        return web.json_response({"error": "unauthorized"}, status=401)
    return await handler(request)


async def get_settings(request: web.Request) -> web.Response:
    async with _gateway(request).postgres.acquire() as conn:
        current = await settings_store.load(conn)
    return web.json_response(current.model_dump())


async def put_settings(request: web.Request) -> web.Response:
    try:
        changes = await request.json()
    except ValueError:
        return web.json_response({"error": "bad_json"}, status=400)
    if not isinstance(changes, dict) or not changes:
        return web.json_response({"error": "expected a JSON object of settings"}, status=400)
    try:
        async with _gateway(request).postgres.acquire() as conn:
            new = await settings_store.update(conn, changes)
    except SettingsError as exc:
        return web.json_response({"error": "invalid_setting", "detail": str(exc)}, status=400)
    return web.json_response(new.model_dump())


async def _nodes(request: web.Request) -> list[dict[str, Any]]:
    gateway = _gateway(request)
    now = time.time()
    out = []
    for node in await gateway.registry.nodes():
        fresh = gateway.registry.is_fresh(node, now)
        out.append(
            {
                "node_id": node.node_id,
                "region": node.registration.region,
                "public_ip": node.registration.public_ip,
                "state": "stale" if not fresh else "draining" if node.draining else "healthy",
                "heartbeat_age_seconds": round(now - node.heartbeat_at, 2),
                "utilization": round(node.utilization, 3),
                "load": node.load.model_dump(exclude={"room_participants"}),
                "settings": None if node.settings is None else node.settings.model_dump(),
            }
        )
    return out


async def _rooms(request: web.Request) -> list[dict[str, Any]]:
    gateway = _gateway(request)
    rooms = []
    for node in await gateway.registry.nodes():
        if not gateway.registry.is_fresh(node):
            continue
        hosted = await gateway.redis.hgetall(bus.node_rooms_key(node.node_id))
        for room, participants in sorted(hosted.items()):
            rooms.append({"room": room, "node_id": node.node_id, "participants": int(participants)})
    return rooms


async def list_nodes(request: web.Request) -> web.Response:
    return web.json_response(await _nodes(request))


async def list_rooms(request: web.Request) -> web.Response:
    return web.json_response(await _rooms(request))


async def drain_node(request: web.Request) -> web.Response:
    from gateway_node.registry import UnknownNode

    node_id = request.match_info["node_id"]
    try:
        await _gateway(request).registry.request_drain(node_id)
    except UnknownNode:
        return web.json_response({"error": "unknown_node"}, status=404)
    return web.json_response({"node_id": node_id, "drain": "requested"}, status=202)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


async def console(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    nodes = await _nodes(request)
    for node in nodes:
        node.update(node.pop("load"))
        node.pop("settings")
    rooms = await _rooms(request)
    replication = gateway.replication.last.to_json()
    try:
        async with gateway.postgres.acquire() as conn:
            settings_json = json.dumps((await settings_store.load(conn)).model_dump(), indent=2)
    except ConnectionError as exc:
        settings_json = f"unavailable: {exc}"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rtcfleet admin — {escape(gateway.settings.region)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head>
<body><h1>rtcfleet — region {escape(gateway.settings.region)}</h1>
<p>gateway {escape(gateway.id)}</p>
<h2>Media nodes</h2>{
        _table(
            nodes,
            [
                "node_id",
                "region",
                "state",
                "rooms",
                "participants",
                "forwarded_streams",
                "cpu_percent",
                "heartbeat_age_seconds",
            ],
        )
    }
<h2>Rooms</h2>{_table(rooms, ["room", "node_id", "participants"])}
<h2>Settings</h2><pre>{escape(settings_json)}</pre>
<h2>Settings replication</h2>{_table([replication], ["kind", "connected", "lag_seconds", "error"])}
</body></html>"""
    return web.Response(text=page, content_type="text/html")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", console)
    app.router.add_get("/api/settings", get_settings)
    app.router.add_put("/api/settings", put_settings)
    app.router.add_patch("/api/settings", put_settings)
    app.router.add_get("/api/nodes", list_nodes)
    app.router.add_get("/api/rooms", list_rooms)
    app.router.add_post("/api/nodes/{node_id}/drain", drain_node)
