"""The client side of the signaling protocol: join, negotiate, and survive failures.

A ``ClientSession`` keeps one room session alive across two kinds of failure:
- its signaling socket drops (a gateway died): it reconnects to any gateway it knows, the one it
  used first, then the fallback URLs the join answer listed, and resumes the session from its
  last cursor; media keeps flowing meanwhile;
- its media node dies (``reconnect``): it closes both peer connections and sends ``rejoin``,
  and the gateway places the room on another node.
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

from rtcfleet.client.peer import ClientPeer
from rtcfleet.signaling import (
    Join,
    Leave,
    PublishOffer,
    Rejoin,
    SubscriberAnswer,
    encode,
)

log = logging.getLogger("rtcfleet.client")

RECONNECT_BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0)


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
    media_rejoins: int = 0
    signaling_gaps: list[float] = field(default_factory=list)
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
    ) -> None:
        """``ice_from_join``: media uses the join answer's STUN/TURN servers (``peer_factory``
        then takes ``ice_servers=``); otherwise the peer's own configuration."""
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
        self.session_id: str | None = None
        self.cursor: str | None = None
        self.node_id: str | None = None
        self.region: str | None = None
        self.can_publish = False
        self.gateway_url: str | None = None
        self.events = SessionEvents()
        self._http = aiohttp.ClientSession()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._joined = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._redirect: list[str] | None = None

    # ---- public -----------------------------------------------------------------------------

    async def start(self, timeout: float = 15.0) -> None:
        """Connect and join; returns once the join answer arrived (media follows)."""
        self._task = asyncio.create_task(self._run(), name="client-session")
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
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for peer in (*self.previous_peers, self.peer):
            await peer.close()
        await self._http.close()

    # ---- connection loop --------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        dropped_at: float | None = None
        while not self._closing:
            url = self.urls[attempt % len(self.urls)]
            try:
                self._ws = await self._http.ws_connect(
                    url, heartbeat=5.0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0)
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.info("signaling %s unreachable: %s", url, exc)
                if (
                    dropped_at is not None
                    and time.monotonic() - dropped_at > self.reconnect_timeout
                ):
                    raise ConnectionError("no gateway reachable") from exc
                await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
                attempt += 1
                continue
            self.gateway_url = url
            await self._send(Join(token=self.token, session_id=self.session_id, cursor=self.cursor))
            if dropped_at is not None:
                self.events.signaling_gaps.append(time.monotonic() - dropped_at)
            attempt = self.urls.index(url)
            await self._read_loop()
            if self._closing:
                return
            if self._redirect is not None:
                # the room lives in another region: join there afresh, keep the rest as fallbacks
                self.urls = list(dict.fromkeys([*self._redirect, *self.urls]))
                self._redirect = None
                self.events.redirects += 1
                attempt, dropped_at = 0, None
                continue
            dropped_at = time.monotonic()
            log.info("signaling to %s dropped; resuming elsewhere", url)
            attempt += 1

    async def _read_loop(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            try:
                await self._on_message(message)
            except JoinFailed:
                raise
            except Exception:
                log.exception("handling %s failed", message.get("type"))

    async def _send(self, message: Any) -> None:
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
        elif kind == "publish_answer":
            await self.peer.apply_publish_answer(message["sdp"])
        elif kind == "subscriber_offer":
            answer = await self.peer.answer_subscriber_offer(message["sdp"])
            await self._send(SubscriberAnswer(sdp=answer))
        elif kind == "participant_joined":
            self.events.participants.add(message["identity"])
        elif kind == "participant_left":
            self.events.participants.discard(message["identity"])
        elif kind == "redirect":
            self._redirect = list(message["urls"])
            self.session_id = self.cursor = None
            assert self._ws is not None
            await self._ws.close()
        elif kind == "reconnect":
            await self._restart_media()
            await self._send(Rejoin())
        elif kind == "error":
            self.events.errors.append(message)
            if message.get("code") == "session_not_found" and self.session_id is not None:
                # resumed in a region that never knew the session (its region died): start over
                self.session_id = self.cursor = None
                self.events.fresh_joins += 1
                await self._send(Join(token=self.token))
            elif not self._joined.is_set():
                raise JoinFailed(message.get("code", "?"), message.get("message", ""))

    async def _on_joined(self, message: dict[str, Any]) -> None:
        new_node = message["node_id"] != self.node_id
        self.session_id = message["session_id"]
        self.region = message["region"]
        self.can_publish = bool(message["can_publish"])
        for url in message.get("fallback_urls", []):
            if url not in self.urls:
                self.urls.append(url)
        if message.get("resumed"):
            self.events.resumes += 1
        if self.events.joined_at is None:
            self.events.joined_at = time.monotonic()
        self._joined.set()
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
                await self._send(PublishOffer(sdp=await self.peer.create_publish_offer()))

    def _new_peer(self) -> ClientPeer:
        if self.ice_from_join:
            return self.peer_factory(ice_servers=self.ice_servers)
        return self.peer_factory()

    async def _restart_media(self) -> None:
        self.events.media_rejoins += 1
        old = self.peer
        self.previous_peers.append(old)
        self.peer = self._new_peer()
        self.node_id = None
        await old.close()
