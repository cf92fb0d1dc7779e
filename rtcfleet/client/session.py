"""The client side of the signaling protocol: join, negotiate, and survive failures.

A ``ClientSession`` keeps one room session alive across two kinds of failure:
- its signaling socket drops (a gateway died): it reconnects to any gateway it knows, the one it
  used first, then the fallback URLs the join answer listed, and resumes the session from its
  last cursor; media keeps flowing meanwhile;
- its media node dies or is evacuated (``reconnect``): it closes both peer connections and
  sends ``rejoin``, and the gateway places the room on another node; a rejoin refused for now
  (``rate_limited``, ``no_media_node``) is sent again every ``REJOIN_RETRY_S`` until placed.

A path that drops packets closes nothing, so the session does not wait to be told: it pings
its gateway every ``PING_INTERVAL_S`` and gives the socket up when nothing at all arrived for
``SIGNALING_DEAD_AFTER_S``; it reconnects by racing the next gateways (a new attempt every
``CONNECT_STAGGER_S`` while earlier ones hang), so one blackholed address costs a stagger, not
a connect timeout.

The media path is watched the same way: when every remote track it was receiving has been
silent for ``MEDIA_DEAD_AFTER_S``, the session drops its peer connections and sends ``rejoin``
without waiting for the gateway's ``reconnect`` (which comes only when the node's heartbeat
goes stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCIceServer
from aiortc.exceptions import InvalidStateError

from rtcfleet.client.peer import ClientPeer
from rtcfleet.signaling import (
    PING_INTERVAL_S,
    REGION_UNREACHABLE_MEMORY_S,
    SIGNALING_DEAD_AFTER_S,
    Join,
    Leave,
    Ping,
    PublishOffer,
    Rejoin,
    SubscriberAnswer,
    encode,
)

log = logging.getLogger("rtcfleet.client")

_WS_OPTIONS: dict[str, Any] = {"timeout": aiohttp.ClientWSTimeout(ws_close=2.0)}

RECONNECT_BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0)
# a TCP handshake that has not finished in this long goes to a host that drops packets
CONNECT_TIMEOUT_S = 2.0
CONNECT_STAGGER_S = 0.25
# Audio alone brings 50 packets a second: 1.5 s of nothing from every remote track is a dead
# path or node, not jitter, loss that NACK repairs, or a keyframe wait.
MEDIA_DEAD_AFTER_S = 1.5
MEDIA_WATCH_INTERVAL_S = 0.25
# A rejoin refused for now (``rate_limited``: one per 5 s per session; ``no_media_node``: no
# node free yet) is sent again this long after, until the media is placed.
REJOIN_RETRY_S = 1.0
RETRIED_REJOIN_ERRORS = frozenset({"rate_limited", "no_media_node"})


class JoinFailed(RuntimeError):
    """The gateway refused the join; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class SessionEvents:
    """What happened to the session, for bots, tests and drills to report."""

    joined_at: float | None = None
    resumes: int = 0
    redirects: int = 0
    fresh_joins: int = 0
    # a newer join of the same identity took this session's place: the session is over
    replaced: bool = False
    media_rejoins: int = 0
    media_timeouts: int = 0
    signaling_gaps: list[float] = field(default_factory=list)
    signaling_timeouts: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    participants: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)


class ClientSession:
    def __init__(
        self,
        urls: list[str],
        token: str,
        *,
        peer_factory: Callable[..., ClientPeer],
        reconnect_timeout: float = 30.0,
        ice_from_join: bool = False,
        media_dead_after: float = MEDIA_DEAD_AFTER_S,
    ) -> None:
        """``ice_from_join``: media uses the join answer's STUN/TURN servers (``peer_factory``
        then takes ``ice_servers=``); otherwise the peer's own configuration.
        ``media_dead_after``: the silence of every remote track that counts as dead media
        (``MEDIA_DEAD_AFTER_S`` assumes audio; a client receiving only video at a low frame
        rate waits a few of its frame intervals)."""
        if not urls:
            raise ValueError("at least one signaling URL is needed")
        self.urls = list(dict.fromkeys(urls))
        self.token = token
        self.peer_factory = peer_factory
        self.ice_from_join = ice_from_join
        self.ice_servers: list[RTCIceServer] = []
        self.peer = self._new_peer()
        self.previous_peers: list[ClientPeer] = []
        self.reconnect_timeout = reconnect_timeout
        self.media_dead_after = media_dead_after
        self.session_id: str | None = None
        self.cursor: str | None = None
        self.node_id: str | None = None
        self.region: str | None = None
        self.can_publish = False
        self.gateway_url: str | None = None
        self.events = SessionEvents()
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S)
        )
        self._background: set[asyncio.Task[Any]] = set()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._joined = asyncio.Event()
        # set once the current socket's join is answered: messages of the session wait for it,
        # since a gateway answers anything sent before ``joined`` with ``not_joined``
        self._socket_joined = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._redirect: list[str] | None = None
        self._redirect_region: str | None = None
        # region -> when this client last failed to reach it (its socket went silent, or a
        # redirect there led nowhere); sent with every join (Join.unreachable_regions)
        self._unreachable: dict[str, float] = {}
        # a rejoin was sent and no joined has answered it yet
        self._rejoin_pending = False
        # a join resuming the session was sent on this socket and not answered yet
        self._resuming = False
        # (publisher, kind) -> when the server last said it was published or unpublished, and
        # which of the two
        self._track_changed: dict[tuple[str, str], tuple[float, bool]] = {}
        # negotiation messages a dropped socket did not take, with the peer they belong to
        self._unsent: list[tuple[ClientPeer, PublishOffer | SubscriberAnswer]] = []
        self._rejoin_retrying = False

    # ---- public -----------------------------------------------------------------------------

    async def start(self, timeout: float = 15.0) -> None:
        """Connect and join; returns once the join answer arrived (media follows)."""
        self._task = asyncio.create_task(self._run(), name="client-session")
        self._spawn(self._watch_media())
        joined = asyncio.create_task(self._joined.wait())
        done, _ = await asyncio.wait(
            {joined, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if self._task in done:
            joined.cancel()
            self._task.result()
        if joined not in done:
            joined.cancel()
            raise TimeoutError("no join answer in time")

    async def close(self, leave: bool = True) -> None:
        self._closing = True
        if leave and self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(Leave())
        if self._ws is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._ws.close()
        for task in self._background:
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for peer in (*self.previous_peers, self.peer):
            await peer.close()
        await self._http.close()

    async def drop_signaling(self) -> None:
        """Close the signaling socket without ``leave``, as a lost connection would: the
        session resumes on its own with its ``session_id`` and ``cursor``."""
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()

    # ---- connection loop --------------------------------------------------------------------

    def unreachable_regions(self) -> list[str]:
        now = time.monotonic()
        return sorted(
            r for r, at in self._unreachable.items() if now - at < REGION_UNREACHABLE_MEMORY_S
        )

    def _join(self) -> Join:
        return Join(
            token=self.token,
            session_id=self.session_id,
            cursor=self.cursor,
            unreachable_regions=self.unreachable_regions(),
        )

    async def _connect_any(self, start: int) -> tuple[str, aiohttp.ClientWebSocketResponse] | None:
        """The first of the URLs (from ``start`` on, in order) that answers; a new attempt
        starts every ``CONNECT_STAGGER_S`` while the earlier ones are still hanging."""
        order = [self.urls[(start + i) % len(self.urls)] for i in range(len(self.urls))]
        attempts: dict[asyncio.Task[aiohttp.ClientWebSocketResponse], str] = {}
        won: tuple[str, aiohttp.ClientWebSocketResponse] | None = None

        async def settle(timeout: float | None) -> None:
            nonlocal won
            pending = [t for t in attempts if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for task, url in attempts.items():
                if won is None and task.done() and not task.cancelled():
                    if task.exception() is None:
                        won = (url, task.result())
                    else:
                        log.info("signaling %s unreachable: %s", url, task.exception())

        try:
            for url in order:
                attempts[asyncio.create_task(self._http.ws_connect(url, **_WS_OPTIONS))] = url
                await settle(CONNECT_STAGGER_S)
                if won is not None:
                    return won
            while won is None and any(not t.done() for t in attempts):
                await settle(None)
            return won
        finally:
            for task in attempts:
                if not task.done():
                    task.cancel()
                elif (
                    won is not None
                    and not task.cancelled()
                    and task.exception() is None
                    and task.result() is not won[1]
                ):
                    self._spawn(task.result().close())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run(self) -> None:
        attempt = 0
        dropped_at: float | None = None
        while not self._closing:
            connected = await self._connect_any(attempt % len(self.urls))
            if connected is None:
                if (
                    dropped_at is not None
                    and time.monotonic() - dropped_at > self.reconnect_timeout
                ):
                    raise ConnectionError("no gateway reachable")
                await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
                attempt += 1
                continue
            self._socket_joined.clear()
            url, self._ws = connected
            self.gateway_url = url
            if self._redirect_region is not None:
                if self._redirect is not None and url not in self._redirect:
                    # sent to a region none of whose URLs answered
                    self._unreachable[self._redirect_region] = time.monotonic()
                self._redirect_region = self._redirect = None
            join = self._join()
            self._resuming = join.session_id is not None
            await self._send(join)
            if dropped_at is not None:
                self.events.signaling_gaps.append(time.monotonic() - dropped_at)
            attempt = self.urls.index(url)
            await self._read_loop()
            if self._closing:
                return
            if self._redirect is not None:
                # the room lives in another region: join there afresh, keep the rest as fallbacks
                self.urls = list(dict.fromkeys([*self._redirect, *self.urls]))
                self.events.redirects += 1
                attempt, dropped_at = 0, None
                continue
            dropped_at = time.monotonic()
            log.info("signaling to %s dropped; resuming elsewhere", url)
            attempt += 1

    async def _ping_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(encode(Ping()))
            await asyncio.sleep(PING_INTERVAL_S)

    async def _read_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        pinger = asyncio.create_task(self._ping_loop(ws), name="signaling-ping")
        try:
            await self._read_frames(ws)
        finally:
            pinger.cancel()

    async def _read_frames(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            try:
                frame = await ws.receive(timeout=SIGNALING_DEAD_AFTER_S)
            except TimeoutError:
                # nothing, not even a pong: the path drops packets; a close handshake would
                # hang on it too, so the old socket closes in the background
                self.events.signaling_timeouts += 1
                if self.region is not None:
                    self._unreachable[self.region] = time.monotonic()
                log.info(
                    "signaling to %s silent for %.1f s", self.gateway_url, SIGNALING_DEAD_AFTER_S
                )
                self._spawn(ws.close())
                return
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            if message.get("type") == "pong":
                continue
            try:
                await self._on_message(message)
            except JoinFailed:
                raise
            except Exception:
                log.exception("handling %s failed", message.get("type"))

    async def _send(self, message: Any) -> None:
        if not isinstance(message, (Join, Leave, Ping)):
            try:
                async with asyncio.timeout(SIGNALING_DEAD_AFTER_S):
                    await self._socket_joined.wait()
            except TimeoutError:
                raise ConnectionError("signaling socket not joined") from None
        async with self._send_lock:
            if self._ws is None or self._ws.closed:
                raise ConnectionError("signaling socket is closed")
            await self._ws.send_str(encode(message))

    # ---- messages ---------------------------------------------------------------------------

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if "cursor" in message:
            self.cursor = message["cursor"]
        self.events.messages.append({"type": kind, "at": time.monotonic()})
        if kind == "joined":
            await self._on_joined(message)
        elif kind in ("publish_answer", "subscriber_offer") and self._rejoin_pending:
            # made for the connections a rejoin just closed: the new ones negotiate after joined
            log.info("%s for the media being replaced: dropped", kind)
        elif kind == "publish_answer":
            await self.peer.apply_publish_answer(message["sdp"])
        elif kind == "subscriber_offer":
            peer = self.peer
            try:
                answer = await peer.answer_subscriber_offer(message["sdp"])
            except InvalidStateError:
                if peer is self.peer:
                    raise
                answer = ""  # the media restarted meanwhile and closed that peer
            if peer is self.peer and not self._rejoin_pending:
                await self._send_for(peer, SubscriberAnswer(sdp=answer))
            else:
                # the connection it answers was replaced meanwhile (the media restarted)
                log.info("subscriber answer for replaced media: not sent")
        elif kind in ("track_published", "track_unpublished"):
            # a track that went, or one that has just come, sends nothing to be waited for
            self._track_changed[(message["publisher"], message["kind"])] = (
                time.monotonic(),
                kind == "track_published",
            )
        elif kind == "participant_joined":
            self.events.participants.add(message["identity"])
        elif kind == "participant_left":
            self.events.participants.discard(message["identity"])
        elif kind == "redirect":
            self._redirect = list(message["urls"])
            self._redirect_region = str(message["region"])
            self.session_id = self.cursor = None
            assert self._ws is not None
            await self._ws.close()
        elif kind == "session_replaced":
            # the identity joined the room elsewhere: resuming or joining again would evict
            # that newer session in turn
            self.events.replaced = True
            self._closing = True
            assert self._ws is not None
            await self._ws.close()
        elif kind == "reconnect":
            await self._restart_media()
            await self._rejoin()
        elif kind == "error":
            self.events.errors.append(message)
            if message.get("code") == "session_not_found" and self.session_id is not None:
                # resumed in a region that never knew the session (its region died): start over
                self.session_id = self.cursor = None
                self._resuming = False
                self.events.fresh_joins += 1
                await self._send(self._join())
            elif not self._joined.is_set():
                raise JoinFailed(message.get("code", "?"), message.get("message", ""))
            elif self._rejoin_pending and message.get("code") in RETRIED_REJOIN_ERRORS:
                self._spawn(self._retry_rejoin())

    async def _send_for(self, peer: ClientPeer, message: PublishOffer | SubscriberAnswer) -> None:
        """Send a negotiation message of ``peer``'s connections; one the dropped socket did not
        take goes out once the session has resumed (the server waits for it)."""
        try:
            await self._send(message)
        except ConnectionError:
            self._unsent.append((peer, message))

    async def _on_joined(self, message: dict[str, Any]) -> None:
        resume_answer, self._resuming = self._resuming, False
        new_node = message["node_id"] != self.node_id
        self.session_id = message["session_id"]
        self.region = message["region"]
        self._unreachable.pop(self.region, None)
        self.can_publish = bool(message["can_publish"])
        for url in message.get("fallback_urls", []):
            if url not in self.urls:
                self.urls.append(url)
        if message.get("resumed"):
            self.events.resumes += 1
        if self.events.joined_at is None:
            self.events.joined_at = time.monotonic()
        self._joined.set()
        self._socket_joined.set()
        if resume_answer and self._rejoin_pending:
            # the socket dropped while the media was being placed again: the rejoin's own
            # joined (replayed from the cursor) places it; sent again should it have been lost
            self._spawn(self._retry_rejoin())
            return
        self._rejoin_pending = False
        unsent, self._unsent = self._unsent, []
        if resume_answer and not new_node:
            for peer, pending in unsent:
                if peer is self.peer:
                    await self._send_for(peer, pending)
        # a resume on the same node keeps the media connections as they are
        if new_node and self.ice_from_join:
            self.ice_servers = [
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
                for server in message.get("ice_servers", [])
            ]
            if self.peer.publisher_pc.remoteDescription is None:
                # not connected yet: start over with this node's servers
                fresh, self.peer = self.peer, self._new_peer()
                await fresh.close()
        if new_node:
            if self.node_id is not None and self.peer.publisher_pc.remoteDescription is not None:
                await self._restart_media()
            self.node_id = message["node_id"]
            if self.can_publish:
                peer = self.peer
                await self._send_for(peer, PublishOffer(sdp=await peer.create_publish_offer()))

    def _new_peer(self) -> ClientPeer:
        if self.ice_from_join:
            return self.peer_factory(ice_servers=self.ice_servers)
        return self.peer_factory()

    def media_silent(self, now: float) -> bool:
        """Everything this peer was receiving from its active publishers has stopped. A track
        unpublished is not waited for, nor one published again until its first frame: that
        needs the publisher's new connection, and the session is not receiving it yet."""
        active = self.peer.active_publishers()
        heard = []
        for key, stats in self.peer.remote.items():
            changed_at, published = self._track_changed.get(key, (None, True))
            last = stats.last_frame_at
            if key[0] not in active or not published or last is None:
                continue
            if changed_at is None or last >= changed_at:
                heard.append(last)
        return bool(heard) and now - max(heard) > self.media_dead_after

    async def _watch_media(self) -> None:
        while not self._closing:
            await asyncio.sleep(MEDIA_WATCH_INTERVAL_S)
            if self.node_id is None or not self.media_silent(time.monotonic()):
                continue
            log.info(
                "media from %s silent for %.1f s: rejoining", self.node_id, self.media_dead_after
            )
            self.events.media_timeouts += 1
            try:
                await self._restart_media()
                await self._rejoin()
            except ConnectionError:
                # no signaling right now: the resume that follows places the media again
                continue

    async def _rejoin(self) -> None:
        self._rejoin_pending = True
        await self._send(Rejoin())

    async def _retry_rejoin(self) -> None:
        """Send the refused rejoin again after ``REJOIN_RETRY_S`` (one retry at a time)."""
        if self._rejoin_retrying:
            return
        self._rejoin_retrying = True
        try:
            await asyncio.sleep(REJOIN_RETRY_S)
            if self._rejoin_pending and not self._closing:
                with contextlib.suppress(ConnectionError):
                    await self._send(Rejoin())
        finally:
            self._rejoin_retrying = False

    async def _restart_media(self) -> None:
        self.events.media_rejoins += 1
        self._unsent.clear()
        old = self.peer
        self.previous_peers.append(old)
        self.peer = self._new_peer()
        self.node_id = None
        await old.close()
