"""Starting and stopping a room's recording, room-level: the admin API (port 9090, admin
token) and the application backend (client port, a join token with the ``can_record`` grant
for that room). Both reach the media node that hosts the room through its command stream and
wait for its answer (``rtcfleet.node_messages.RecordingAnswer``).
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from aiohttp import web
from pydantic import TypeAdapter, ValidationError
from redis.exceptions import RedisError

from gateway_node.app_keys import GATEWAY
from gateway_node.gateway import Gateway
from rtcfleet import bus
from rtcfleet.node_messages import NodeRecording, RecordingAnswer
from rtcfleet.signaling import Name, SignalingError
from rtcfleet.tokens import verify_token

# a node answers from its event loop; past this the gateway says it did not
ANSWER_TIMEOUT_S = 5.0
# how each refusal of a node maps onto HTTP
ERROR_STATUS = {"room_not_found": 404, "not_recording": 409, "recording_not_configured": 503}
_room_name: TypeAdapter[str] = TypeAdapter(Name)


def _gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def _room(request: web.Request) -> str:
    try:
        return _room_name.validate_python(request.match_info["room"])
    except ValidationError:
        raise web.HTTPBadRequest(
            text='{"error": "bad_room", "detail": "not a room name"}',
            content_type="application/json",
        ) from None


async def ask_node(gateway: Gateway, room: str, action: Literal["start", "stop"]) -> web.Response:
    """Send the command to the room's node and turn its answer into the HTTP response."""
    try:
        node = await gateway.placement.local_owner(room)
        if node is None:
            return web.json_response(
                {"error": "room_not_found", "detail": f"no media node of this region hosts {room}"},
                status=404,
            )
        reply = uuid.uuid4().hex
        stream = bus.session_stream(reply)
        command = NodeRecording(room=room, action=action, node_id=node.node_id, reply=reply)
        try:
            await bus.send_to_node(gateway.redis, node.node_id, command)
            answer = await _await_answer(gateway, stream)
        finally:
            await gateway.redis.delete(stream, bus.stream_bytes_key(stream))
    except (RedisError, OSError) as exc:
        return web.json_response({"error": "redis_unavailable", "detail": str(exc)}, status=503)
    if answer is None:
        return web.json_response(
            {"error": "node_timeout", "detail": f"{node.node_id} did not answer"}, status=504
        )
    body = answer.model_dump(mode="json", exclude_none=True, exclude={"type"})
    if not answer.ok:
        return web.json_response(body, status=ERROR_STATUS.get(answer.error or "", 409))
    return web.json_response(body, status=201 if action == "start" else 200)


async def _await_answer(gateway: Gateway, stream: str) -> RecordingAnswer | None:
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while (left := deadline - time.monotonic()) > 0:
        entries = await bus.read_streams(
            gateway.redis, {stream: "0-0"}, max(1, int(left * 1000)), count=1
        )
        for _, items in entries:
            for _, fields in items:
                try:
                    return RecordingAnswer.model_validate(bus.decode_entry(fields))
                except (ValidationError, ValueError):
                    return None
    return None


# ---- admin API (behind admin_auth) ----


async def admin_start(request: web.Request) -> web.Response:
    return await ask_node(_gateway(request), _room(request), "start")


async def admin_stop(request: web.Request) -> web.Response:
    return await ask_node(_gateway(request), _room(request), "stop")


def add_admin_routes(app: web.Application) -> None:
    app.router.add_post("/api/rooms/{room}/recording", admin_start)
    app.router.add_delete("/api/rooms/{room}/recording", admin_stop)


# ---- application backend (client port, can_record token) ----


def _may_record(request: web.Request, room: str) -> web.Response | None:
    """None when the bearer token grants recording of ``room``; else the refusal."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return web.json_response({"error": "unauthorized"}, status=401)
    try:
        grant = verify_token(
            header.removeprefix("Bearer "), _gateway(request).settings.api_secrets()
        )
    except SignalingError as exc:
        return web.json_response({"error": str(exc.code), "detail": exc.message}, status=401)
    if not grant.can_record or grant.room != room:
        return web.json_response(
            {"error": "forbidden", "detail": f"the token does not grant recording of {room}"},
            status=403,
        )
    return None


async def backend_start(request: web.Request) -> web.Response:
    room = _room(request)
    refusal = _may_record(request, room)
    return refusal or await ask_node(_gateway(request), room, "start")


async def backend_stop(request: web.Request) -> web.Response:
    room = _room(request)
    refusal = _may_record(request, room)
    return refusal or await ask_node(_gateway(request), room, "stop")


def add_backend_routes(app: web.Application) -> None:
    app.router.add_post("/v1/rooms/{room}/recording", backend_start)
    app.router.add_delete("/v1/rooms/{room}/recording", backend_stop)
