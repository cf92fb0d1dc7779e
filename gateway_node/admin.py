"""Admin console and API on port 9090, behind the admin token (and the admin allow-list).

Settings are written through the Postgres read/write node, in the home region, over the
private network from every region (docs/health.md); media nodes and gateways pick them up
from their region's replica. When the writer does not answer, a write gets 503 naming the
cause and a read gets the gateway's last copy with its age: nothing else waits for it.
"""

from __future__ import annotations

import hmac
import json
import time
from html import escape
from typing import Any

from aiohttp import BasicAuth, web
from aiohttp.typedefs import Handler

from gateway_node.app_keys import GATEWAY
from gateway_node.registry import UnknownNode
from gateway_node.settings_writer import WRITER_ERRORS
from infra.spec import (
    LIVENESS_PATH,
    READINESS_PATH,
    REGION_HEALTH_PATH,
    REGISTRATION_READINESS_PATH,
)
from rtcfleet import bus, settings_store
from rtcfleet.nodes import NodeState
from rtcfleet.settings_store import SettingsError

# the admin load balancer's health check reaches these without a token
UNAUTHENTICATED_PATHS = frozenset(
    {LIVENESS_PATH, READINESS_PATH, REGISTRATION_READINESS_PATH, REGION_HEALTH_PATH}
)


def _given_token(request: web.Request) -> str:
    """The token from ``Authorization``: Bearer for the API, Basic (any user) for a browser.

    Never from the query string, where it would land in access logs and browser history.
    """
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ")
    if header.startswith("Basic "):
        try:
            return BasicAuth.decode(header).password
        except ValueError:
            return ""
    return ""


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in UNAUTHENTICATED_PATHS:
        return await handler(request)
    expected = request.app[GATEWAY].settings.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(_given_token(request).encode(), expected):
        # the challenge lets a browser open the console by asking for the token once
        return web.json_response(
            {"error": "unauthorized"},
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="rtcfleet admin", charset="UTF-8"'},
        )
    return await handler(request)


def writer_unavailable(exc: BaseException, timeout: float) -> web.Response:
    detail = str(exc) or f"no answer within {timeout:.0f} s"
    return web.json_response(
        {
            "error": "settings_writer_unavailable",
            "detail": f"the settings database's read/write node is unreachable: {detail}",
        },
        status=503,
        headers={"Retry-After": "5"},
    )


async def get_settings(request: web.Request) -> web.Response:
    """From the writer when it answers, else the last copy (``X-Settings-Age-Seconds`` says)."""
    gateway = request.app[GATEWAY]
    try:
        current = await gateway.writer.run(settings_store.load)
    except WRITER_ERRORS:
        age = gateway.platform.age()
        if age is None:
            no_copy = ConnectionError("no copy of the settings read yet")
            return writer_unavailable(no_copy, gateway.writer.timeout)
        return web.json_response(
            gateway.platform.platform.model_dump(),
            headers={"X-Settings-Age-Seconds": f"{age:.1f}"},
        )
    gateway.platform.stored(current)
    return web.json_response(current.model_dump())


async def put_settings(request: web.Request) -> web.Response:
    try:
        changes = await request.json()
    except ValueError:
        return web.json_response({"error": "bad_json"}, status=400)
    if not isinstance(changes, dict) or not changes:
        return web.json_response({"error": "expected a JSON object of settings"}, status=400)
    gateway = request.app[GATEWAY]
    try:
        new = await gateway.writer.run(lambda conn: settings_store.update(conn, changes))
    except SettingsError as exc:
        return web.json_response({"error": "invalid_setting", "detail": str(exc)}, status=400)
    except WRITER_ERRORS as exc:
        return writer_unavailable(exc, gateway.writer.timeout)
    gateway.platform.stored(new)
    return web.json_response(new.model_dump())


async def delete_setting(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    gateway = request.app[GATEWAY]
    try:
        new = await gateway.writer.run(lambda conn: settings_store.delete(conn, key))
    except SettingsError as exc:
        return web.json_response({"error": "unknown_setting", "detail": str(exc)}, status=404)
    except WRITER_ERRORS as exc:
        return writer_unavailable(exc, gateway.writer.timeout)
    gateway.platform.stored(new)
    return web.json_response(new.model_dump())


def _node_state(node: NodeState, fresh: bool) -> str:
    if node.lost_at is not None:
        return "lost"  # a gateway found its process gone (gateway_node.node_monitor)
    if not fresh:
        return "stale"
    return "draining" if node.draining else "healthy"


async def _nodes(request: web.Request) -> list[dict[str, Any]]:
    gateway = request.app[GATEWAY]
    now = time.time()
    out = []
    for node in await gateway.registry.nodes():
        fresh = gateway.registry.is_fresh(node, now)
        out.append(
            {
                "node_id": node.node_id,
                "region": node.registration.region,
                "public_ip": node.registration.public_ip,
                "state": _node_state(node, fresh),
                "heartbeat_age_seconds": round(now - node.heartbeat_at, 2),
                "utilization": round(node.utilization, 3),
                "load": node.load.model_dump(exclude={"room_participants"}),
                "settings": None if node.settings is None else node.settings.model_dump(),
            }
        )
    return out


async def _rooms(request: web.Request) -> list[dict[str, Any]]:
    gateway = request.app[GATEWAY]
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
    node_id = request.match_info["node_id"]
    try:
        await request.app[GATEWAY].registry.request_drain(node_id)
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
    gateway = request.app[GATEWAY]
    nodes = await _nodes(request)
    for node in nodes:
        node.update(node.pop("load"))
        node.pop("settings")
    rooms = await _rooms(request)
    copy = gateway.platform.to_json()
    settings_json = json.dumps(copy["values"], indent=2) + (
        f"\n(read {copy['age_seconds']} s ago"
        + (f"; {copy['last_error']})" if copy["last_error"] else ")")
    )
    replication = gateway.replication.last.to_json()
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
    app.router.add_delete("/api/settings/{key}", delete_setting)
    app.router.add_get("/api/nodes", list_nodes)
    app.router.add_get("/api/rooms", list_rooms)
    app.router.add_post("/api/nodes/{node_id}/drain", drain_node)
