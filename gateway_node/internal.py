"""Internal API for media nodes (``/internal/``): registration, heartbeats, drain state.

Only the private network reaches it, through the media-signaling load balancer, and every call
carries the cluster secret: a leaked client token cannot register a rogue node.
"""

from __future__ import annotations

import hmac
import logging
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from gateway_node.app_keys import GATEWAY
from gateway_node.registry import UnknownNode
from rtcfleet.nodes import DrainReport, Heartbeat, NodeRegistration

log = logging.getLogger("rtcfleet.gateway.internal")
Body = TypeVar("Body", NodeRegistration, Heartbeat, DrainReport)


@web.middleware
async def cluster_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/internal/"):
        gateway = request.app[GATEWAY]
        expected = f"Bearer {gateway.settings.cluster_secret.get_secret_value()}"
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return web.json_response({"error": "unauthorized"}, status=401)
    return await handler(request)


async def _body(request: web.Request, model: type[Body]) -> Body:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        raise web.HTTPBadRequest(
            text=exc.json(include_url=False), content_type="application/json"
        ) from None


async def register(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    registration = await _body(request, NodeRegistration)
    state = await gateway.registry.register(registration)
    return web.json_response(
        {
            "node_id": state.node_id,
            "stale_after_seconds": gateway.settings.node_stale_seconds,
            "heartbeat_interval_seconds": gateway.heartbeat_interval,
        }
    )


async def heartbeat(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    node_id = request.match_info["node_id"]
    gateway.metrics.node_heartbeat_bytes.observe(len(await request.read()))
    beat = await _body(request, Heartbeat)
    try:
        state = await gateway.registry.heartbeat(node_id, beat)
    except UnknownNode:
        return web.json_response({"error": "unknown_node", "register": True}, status=404)
    return web.json_response({"drain": state.draining})


async def drained(request: web.Request) -> web.Response:
    """A media node's account of its drain, as it leaves: into the region's metrics."""
    gateway = request.app[GATEWAY]
    report = await _body(request, DrainReport)
    node_id = request.match_info["node_id"]
    labels = (report.cloud, report.notice)
    gateway.metrics.node_drain_seconds.labels(*labels).observe(report.seconds)
    gateway.metrics.node_drain_rooms_left.labels(*labels).inc(report.rooms_left)
    log.info("media node %s drained: %s", node_id, report.model_dump_json())
    return web.json_response({"node_id": node_id})


async def room_lookup(request: web.Request) -> web.Response:
    """Another region asks whether this region hosts a room before placing it itself.

    When this region is the room's home, "not here" also reserves the room for the asker
    (``?for=<region>``), unless a third region holds it: then the answer names that region.
    """
    gateway = request.app[GATEWAY]
    room = request.match_info["room"]
    placement = gateway.placement
    node = await placement.local_owner(room)
    asker = request.query.get("for")
    if node is None and asker in gateway.settings.peer_regions and placement.is_home(room):
        holder = await placement.reserve(room, asker, stale=gateway.settings.region)
        elsewhere = placement.redirect_to(holder) if holder != asker else None
        if elsewhere is not None:
            return web.json_response(
                {"room": room, "found": True, "region": holder, "signal_urls": elsewhere.urls}
            )
    if node is None:
        return web.json_response({"room": room, "found": False}, status=404)
    urls = [gateway.settings.public_url] if gateway.settings.public_url else []
    return web.json_response(
        {
            "room": room,
            "found": True,
            "region": gateway.settings.region,
            "node_id": node.node_id,
            "signal_urls": urls,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/internal/rooms/{room}", room_lookup)
    app.router.add_post("/internal/nodes/register", register)
    app.router.add_post("/internal/nodes/{node_id}/heartbeat", heartbeat)
    app.router.add_post("/internal/nodes/{node_id}/drained", drained)
