"""Client signaling over WebSocket (``/v1/signal``): authentication, validation, relay.

Every frame is validated before it touches Redis or a media node; a bad frame earns an
``error`` message with a stable code and changes nothing else. The socket carries only
signaling: media flows between the client and its media node, so this socket can drop and
resume on another gateway without a gap in media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from gateway_node.app_keys import GATEWAY
from gateway_node.gateway import Gateway
from gateway_node.ice_servers import ice_servers
from gateway_node.placement import NoAvailableNodes
from gateway_node.ratelimit import TokenBucket
from gateway_node.room_placement import RoomElsewhere
from gateway_node.sessions import SESSION_CLOSE_TIMEOUT_S, WS_CLOSE_TOKEN_EXPIRED, Session
from rtcfleet import bus, tracing
from rtcfleet.node_messages import (
    AnyNodeCommand,
    NodeJoin,
    NodePublishOffer,
    NodeSubscriberAnswer,
    NodeTrickle,
)
from rtcfleet.signaling import (
    MAX_FRAME_BYTES,
    ErrorCode,
    Join,
    Joined,
    Leave,
    Ping,
    Pong,
    PublishOffer,
    Redirect,
    Rejoin,
    SignalingError,
    SubscriberAnswer,
    Trickle,
    encode,
    error,
    parse_client_message,
)
from rtcfleet.tokens import CLOCK_SKEW_SECONDS, Grant, verify_token

log = logging.getLogger("rtcfleet.gateway.signal")

# aiohttp refuses frames past this with close code 1009; below it, oversize gets `too_large`.
WS_MAX_MSG_SIZE = 4 * MAX_FRAME_BYTES
WS_HEARTBEAT_S = 15.0
RATE_LIMIT_NOTICE_INTERVAL_S = 1.0
# seconds a socket may stay open without a session (join, or a join that resumes one)
JOIN_TIMEOUT_S = 10.0
# a session places its media again at most this often, whatever number of sockets asks
REJOIN_INTERVAL_S = 5.0
# fresh joins (not resumes) of one identity in one room, whatever number of sockets sends them:
# each replaces the session before and renegotiates with everyone in the room
JOINS_PER_IDENTITY = 5
JOIN_WINDOW_S = 10.0


class SignalConnection:
    """One client socket: at most one session, validated frames, a token bucket."""

    def __init__(
        self,
        gateway: Gateway,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.gateway = gateway
        self.ws = ws
        self.transport = transport
        settings = gateway.settings
        self.bucket = TokenBucket(settings.rate_limit_per_second, settings.rate_limit_burst)
        self.violations = 0
        self._last_notice = 0.0
        self.session: Session | None = None
        self._expiry: asyncio.TimerHandle | None = None

    async def send_error(self, code: ErrorCode, message: str) -> None:
        self.gateway.metrics.errors.labels(code.value).inc()
        if not self.ws.closed:
            await self.ws.send_str(encode(error(code, message)))

    async def run(self) -> None:
        # a socket that never joins holds a connection slot for nothing: it gets a deadline
        deadline = asyncio.get_running_loop().call_later(JOIN_TIMEOUT_S, self._join_timeout)
        try:
            async for frame in self.ws:
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY) and await self.allowed():
                    if frame.type == WSMsgType.TEXT:
                        await self.on_text(frame.data)
                    else:
                        await self.send_error(
                            ErrorCode.BAD_MESSAGE, "binary frames are not accepted"
                        )
                elif frame.type == WSMsgType.ERROR:
                    break
                if self.session is not None:
                    deadline.cancel()
                if self.violations >= self.gateway.settings.rate_limit_disconnect_after:
                    await self.ws.close(code=1008, message=b"rate limit")
                    break
        finally:
            deadline.cancel()
            if self._expiry is not None:
                self._expiry.cancel()
            if self.session is not None:
                # no leave: the session lives on in Redis for a resume until its TTL
                self.gateway.relay.detach(self.session)

    def _join_timeout(self) -> None:
        if self.session is None and not self.ws.closed:
            self.gateway.spawn(self.ws.close(code=1008, message=b"join timeout"))

    def _attached(self, session: Session) -> None:
        """The socket holds ``session`` until its token expires (plus the clock skew): a
        bearer token's ``exp`` bounds what it grants, a call that is up included."""
        self.session = session
        if self._expiry is not None:
            self._expiry.cancel()
        delay = session.grant.expires_at + CLOCK_SKEW_SECONDS - time.time()
        self._expiry = asyncio.get_running_loop().call_later(
            max(delay, 0.0), lambda: self.gateway.spawn(self._expire(session))
        )

    async def _expire(self, session: Session) -> None:
        """End the session of an expired token: its media leaves the room and a resume finds
        nothing, unless another socket resumed it with a fresher token (then only this socket
        goes)."""
        if self.session is not session:
            return
        self.session = None
        self.gateway.relay.detach(session)
        try:
            record = await self.gateway.store.load(session.session_id)
            refreshed = record is not None and int(record.get("expires_at", 0)) > (
                session.grant.expires_at
            )
            if not refreshed:
                await self.gateway.store.end(session)
        except (RedisError, OSError) as exc:
            # the record is no longer kept alive here: it lapses with the session TTL
            log.warning("ending expired session %s: %s", session.session_id, exc)
        log.info("session %s ended: its token expired", session.session_id)
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            async with asyncio.timeout(SESSION_CLOSE_TIMEOUT_S):
                await self.send_error(
                    ErrorCode.TOKEN_EXPIRED, "token has expired: the session is over; join anew"
                )
        await session.disconnect(WS_CLOSE_TOKEN_EXPIRED, "token expired")

    async def allowed(self) -> bool:
        """Every frame, text or binary, spends from the socket's token bucket."""
        if self.bucket.allow():
            return True
        self.violations += 1
        now = time.monotonic()
        if now - self._last_notice >= RATE_LIMIT_NOTICE_INTERVAL_S:
            self._last_notice = now
            await self.send_error(ErrorCode.RATE_LIMITED, "slow down: message dropped")
        return False

    async def on_text(self, raw: str) -> None:
        try:
            message = parse_client_message(raw)
            self.gateway.metrics.messages.labels("in", message.type).inc()
            with self._span(message.type):
                await self.dispatch(message)
        except SignalingError as exc:
            await self.send_error(exc.code, exc.message)
        except NoAvailableNodes as exc:
            await self.send_error(ErrorCode.NO_MEDIA_NODE, str(exc))
        except (RedisError, OSError) as exc:
            log.warning("signaling backend failure: %s", exc)
            await self.send_error(ErrorCode.INTERNAL, "signaling backend unavailable, retry")

    def _span(self, message_type: str) -> AbstractContextManager[Any]:
        """Each client request but pings starts a trace (rtcfleet.tracing)."""
        if message_type == "ping" or not tracing.enabled():
            return nullcontext()
        attributes = {"rtcfleet.region": self.gateway.settings.region}
        if self.session is not None:
            attributes["rtcfleet.session"] = self.session.session_id
            attributes["rtcfleet.room"] = self.session.grant.room
        return tracing.span(
            f"signal {message_type}", kind=tracing.SpanKind.SERVER, attributes=attributes
        )

    async def dispatch(
        self, message: Join | PublishOffer | SubscriberAnswer | Trickle | Rejoin | Leave | Ping
    ) -> None:
        if isinstance(message, Ping):
            if not self.ws.closed:
                await self.ws.send_str(encode(Pong()))
            return
        if isinstance(message, Join):
            await self.join(message)
            return
        session = self.session
        if session is None:
            raise SignalingError(ErrorCode.NOT_JOINED, "send join first")
        if session.grant.expires_at + CLOCK_SKEW_SECONDS < time.time():
            # the session ends at expiry; this covers a message that beats the timer
            raise SignalingError(ErrorCode.TOKEN_EXPIRED, "token has expired; join anew")
        if isinstance(message, PublishOffer):
            if not session.grant.can_publish:
                raise SignalingError(ErrorCode.FORBIDDEN, "token does not grant publishing")
            await self.to_node(
                session,
                NodePublishOffer(
                    session=session.session_id, room=session.grant.room, sdp=message.sdp
                ),
            )
        elif isinstance(message, SubscriberAnswer):
            if not session.grant.can_subscribe:
                raise SignalingError(ErrorCode.FORBIDDEN, "token does not grant subscribing")
            await self.to_node(
                session,
                NodeSubscriberAnswer(
                    session=session.session_id, room=session.grant.room, sdp=message.sdp
                ),
            )
        elif isinstance(message, Trickle):
            await self.to_node(
                session,
                NodeTrickle(
                    session=session.session_id,
                    room=session.grant.room,
                    target=message.target,
                    candidate=message.candidate,
                ),
            )
        elif isinstance(message, Rejoin):
            await self.rejoin(session)
        elif isinstance(message, Leave):
            self.session = None
            self.gateway.relay.detach(session)
            await self.gateway.store.end(session)
            await self.ws.close()

    async def to_node(self, session: Session, command: AnyNodeCommand) -> None:
        await bus.send_to_node(self.gateway.redis, session.node_id, command)

    def _joined(
        self,
        session_id: str,
        grant: Grant,
        node_id: str,
        resumed: bool,
        node_address: str | None = None,
    ) -> Joined:
        return Joined(
            session_id=session_id,
            room=grant.room,
            identity=grant.identity,
            region=self.gateway.settings.region,
            node_id=node_id,
            resumed=resumed,
            can_publish=grant.can_publish,
            can_subscribe=grant.can_subscribe,
            participants=[],
            ice_servers=ice_servers(self.gateway.settings, grant.identity, node_address),
            fallback_urls=self.gateway.settings.client_fallback_urls(),
        )

    async def join(self, message: Join) -> None:
        if self.session is not None:
            raise SignalingError(ErrorCode.ALREADY_JOINED, "this socket already has a session")
        grant = verify_token(message.token, self.gateway.settings.api_secrets())
        started = time.perf_counter()
        if message.session_id:
            await self.resume(message, grant)
            return
        if await self.gateway.store.count_join(grant, JOIN_WINDOW_S) > JOINS_PER_IDENTITY:
            raise SignalingError(
                ErrorCode.RATE_LIMITED,
                f"at most {JOINS_PER_IDENTITY} joins per {JOIN_WINDOW_S:.0f} s per identity"
                " in a room",
            )
        try:
            with tracing.child_span("placement", attributes={"rtcfleet.room": grant.room}):
                node = await self.gateway.placement.place(
                    grant.room, unreachable=frozenset(message.unreachable_regions)
                )
                tracing.set_attributes(node=node.node_id, node_region=node.registration.region)
        except RoomElsewhere as elsewhere:
            await self.ws.send_str(encode(Redirect(region=elsewhere.region, urls=elsewhere.urls)))
            return
        gateway = self.gateway
        session_id = gateway.store.new_id()
        tracing.set_attributes(session=session_id, room=grant.room, node=node.node_id)
        await gateway.store.save(session_id, grant, node.node_id)
        session = Session(
            session_id=session_id,
            grant=grant,
            node_id=node.node_id,
            ws=self.ws,
            transport=self.transport,
        )
        self._attached(session)
        await gateway.relay.attach(session)
        # the join answer first in the session's stream, before anything the node says
        joined = self._joined(
            session_id, grant, node.node_id, resumed=False, node_address=node.registration.public_ip
        )
        await bus.send_to_session(gateway.redis, session_id, joined.model_dump(mode="json"))
        await self.to_node(session, self._node_join(session_id, grant))
        gateway.metrics.join_seconds.observe(time.perf_counter() - started)

    @staticmethod
    def _node_join(session_id: str, grant: Grant) -> NodeJoin:
        return NodeJoin(
            session=session_id,
            room=grant.room,
            identity=grant.identity,
            can_publish=grant.can_publish,
            can_subscribe=grant.can_subscribe,
        )

    async def resume(self, message: Join, grant: Grant) -> None:
        """Reattach a session after its socket dropped, replaying what the client missed."""
        assert message.session_id is not None
        gateway = self.gateway
        record = await gateway.store.load(message.session_id)
        if record is None:
            raise SignalingError(ErrorCode.SESSION_NOT_FOUND, "session expired; join anew")
        if record.get("identity") != grant.identity or record.get("room") != grant.room:
            raise SignalingError(ErrorCode.UNAUTHORIZED, "token does not match the session")
        previous = gateway.relay.sessions.get(message.session_id)
        if previous is not None:
            # the same session reconnecting to this gateway: the old socket is dead
            gateway.relay.detach(previous)
            await previous.ws.close()
        node_id = record["node_id"]
        session = Session(
            session_id=message.session_id,
            grant=grant,
            node_id=node_id,
            ws=self.ws,
            cursor=message.cursor or "0-0",
            transport=self.transport,
        )
        # a fresher token extends the session, on whichever gateway its old socket is
        await gateway.store.extend(message.session_id, grant.expires_at)
        self._attached(session)
        placed = await gateway.registry.get(node_id)
        address = placed.registration.public_ip if placed is not None else None
        joined = self._joined(session.session_id, grant, node_id, True, address)
        await self.ws.send_str(encode(joined))
        await gateway.relay.attach(session)
        gateway.metrics.resumes.inc()

    async def rejoin(self, session: Session) -> None:
        """Place the session's media again after its node died; same session, new node."""
        gateway = self.gateway
        # one rejoin per interval per session, across every socket and gateway of the region
        first = await gateway.redis.set(
            bus.session_rejoin_key(session.session_id),
            "1",
            nx=True,
            px=int(REJOIN_INTERVAL_S * 1000),
        )
        if not first:
            raise SignalingError(
                ErrorCode.RATE_LIMITED, f"one rejoin per {REJOIN_INTERVAL_S:.0f} s per session"
            )
        async with session.lock:
            avoid = None
            if not session.reconnect_sent and await gateway.monitor.node_suspect(session.node_id):
                # the client found its media dead on its own, and the node went quiet too
                avoid = session.node_id
                log.info("node %s suspected by session %s", avoid, session.session_id)
            # the session belongs to this region: its media is placed here
            with tracing.child_span("placement", attributes={"rtcfleet.room": session.grant.room}):
                node = await gateway.placement.place(
                    session.grant.room, look_elsewhere=False, avoid=avoid
                )
                tracing.set_attributes(node=node.node_id, node_region=node.registration.region)
            session.node_id = node.node_id
            session.reconnect_sent = False
            session.placed_at = time.time()
            await gateway.store.save(session.session_id, session.grant, node.node_id)
            joined = self._joined(
                session.session_id,
                session.grant,
                node.node_id,
                resumed=True,
                node_address=node.registration.public_ip,
            )
            await bus.send_to_session(
                gateway.redis, session.session_id, joined.model_dump(mode="json")
            )
            await self.to_node(session, self._node_join(session.session_id, session.grant))


async def signal_handler(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    ws = web.WebSocketResponse(max_msg_size=WS_MAX_MSG_SIZE, heartbeat=WS_HEARTBEAT_S)
    await ws.prepare(request)
    connection = SignalConnection(gateway, ws, request.transport)
    # the client may go while an answer is on its way: its socket ends there, quietly
    with contextlib.suppress(ConnectionResetError):
        await connection.run()
    return ws
