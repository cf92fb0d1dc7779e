"""A client whose media must move keeps asking until it is placed, resends what a dropped
socket did not take, and calls its media dead only when published tracks fall silent."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from rtcfleet.client import session as client_session
from rtcfleet.client.peer import RemoteTrackStats
from rtcfleet.client.session import ClientSession


class Peer:
    async def close(self) -> None:
        pass


class Socket:
    """The signaling socket, recording what the client sends."""

    closed = False

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(json.loads(text)["type"])

    async def close(self) -> None:
        self.closed = True


def joined(node: str) -> dict[str, Any]:
    return {
        "type": "joined",
        "session_id": "s" * 32,
        "region": "local-1",
        "node_id": node,
        "can_publish": False,
        "resumed": True,
    }


async def test_a_refused_rejoin_is_sent_again_until_a_node_takes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_session, "REJOIN_RETRY_S", 0.05)
    session = ClientSession(["ws://127.0.0.1:1/v1/signal"], "token", peer_factory=Peer)  # type: ignore[arg-type]
    socket = Socket()
    session._ws = socket  # type: ignore[assignment]
    try:
        await session._on_message(joined("media-a"))
        await session._on_message({"type": "reconnect", "reason": "media_node_evacuated"})
        assert socket.sent == ["rejoin"]
        # the old node's last negotiation, read after the reconnect: not for the new peer
        await session._on_message({"type": "publish_answer", "sdp": "v=0 stale"})
        await session._on_message({"type": "subscriber_offer", "sdp": "v=0 stale"})
        assert socket.sent == ["rejoin"]
        for code in ("rate_limited", "no_media_node"):
            await session._on_message({"type": "error", "code": code, "message": "later"})
            await asyncio.sleep(0.15)
        assert socket.sent == ["rejoin"] * 3
        await session._on_message(joined("media-b"))
        assert session.node_id == "media-b"
        # placed: an error now (a flood's rate_limited, say) sends no rejoin
        await session._on_message({"type": "error", "code": "rate_limited", "message": "slow"})
        await asyncio.sleep(0.15)
        assert socket.sent == ["rejoin"] * 3
    finally:
        await session.close(leave=False)


class PublishingPeer(Peer):
    async def create_publish_offer(self) -> str:
        return "v=0 offer"


def placed(node: str) -> dict[str, Any]:
    return joined(node) | {"can_publish": True}


def publishing_session() -> ClientSession:
    return ClientSession(["ws://127.0.0.1:1/v1/signal"], "token", peer_factory=PublishingPeer)  # type: ignore[arg-type]


def resumed_on(session: ClientSession, socket: Socket) -> None:
    """What the connection loop does on a new socket: a join that resumes the session."""
    session._ws = socket  # type: ignore[assignment]
    session._socket_joined.clear()
    session._resuming = True


async def test_an_offer_the_dropped_socket_did_not_take_goes_out_after_the_resume() -> None:
    session = publishing_session()
    dropped = Socket()
    dropped.closed = True
    session._ws = dropped  # type: ignore[assignment]
    try:
        await session._on_message(placed("media-a"))
        assert dropped.sent == []
        socket = Socket()
        resumed_on(session, socket)
        await session._on_message(placed("media-a"))
        assert socket.sent == ["publish_offer"]
    finally:
        await session.close(leave=False)


async def test_a_resume_while_media_is_placed_again_waits_for_the_placement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The resume's joined names the session's node but places nothing: publishing there
    would offer to connections the rejoin closed."""
    monkeypatch.setattr(client_session, "REJOIN_RETRY_S", 0.05)
    session = publishing_session()
    first = Socket()
    session._ws = first  # type: ignore[assignment]
    try:
        await session._on_message(placed("media-a"))
        await session._on_message({"type": "reconnect", "reason": "media_node_lost"})
        assert first.sent == ["publish_offer", "rejoin"]
        socket = Socket()
        resumed_on(session, socket)
        await session._on_message(placed("media-a"))
        await asyncio.sleep(0.15)
        assert socket.sent == ["rejoin"]  # sent again, should the first have been lost
        await session._on_message(placed("media-b"))
        assert socket.sent == ["rejoin", "publish_offer"]
        assert session.node_id == "media-b"
    finally:
        await session.close(leave=False)


class ReceivingPeer(Peer):
    """A peer receiving bob's video, last decoded ``silent_for`` seconds ago."""

    def __init__(self, silent_for: float = 3.0) -> None:
        stats = RemoteTrackStats("bob", "video", "t1")
        stats.last_frame_at = time.monotonic() - silent_for
        self.remote = {("bob", "video"): stats}

    def active_publishers(self) -> set[str]:
        return {"bob"}


async def test_media_is_dead_only_when_tracks_still_published_are_silent() -> None:
    """A publisher that unpublished (it left, or it is rejoining) is not waited for, nor one
    that published again until its first frame arrives."""
    peer: Any = ReceivingPeer
    session = ClientSession(
        ["ws://127.0.0.1:1/v1/signal"], "token", peer_factory=peer, media_dead_after=2.0
    )
    try:
        now = time.monotonic()
        assert session.media_silent(now)
        track = {"publisher": "bob", "kind": "video", "track_id": "t1"}
        await session._on_message({"type": "track_unpublished", **track})
        assert not session.media_silent(now + 1.0)
        await session._on_message({"type": "track_published", **track, "track_id": "t2"})
        assert not session.media_silent(now + 5.0)  # not receiving it yet
        stats = RemoteTrackStats("bob", "video", "t2")
        stats.last_frame_at = time.monotonic()
        session.peer.remote[("bob", "video")] = stats  # its first frame
        assert not session.media_silent(stats.last_frame_at + 1.5)
        assert session.media_silent(stats.last_frame_at + 2.5)
    finally:
        await session.close(leave=False)
