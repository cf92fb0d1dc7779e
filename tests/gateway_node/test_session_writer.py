"""A session's writer task ends with the session."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway_node.sessions import Session
from rtcfleet.tokens import Grant


def writers() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("send-") and not t.done()]


async def test_a_message_offered_after_the_session_stopped_starts_no_writer() -> None:
    grant = Grant(room="r", identity="ann", can_publish=True, can_subscribe=True, expires_at=2**31)
    session = Session(session_id="s1", grant=grant, node_id="n1", ws=web.WebSocketResponse())
    session.stop()  # detached before the relay's loop offered it anything
    assert not session.offer("1-0", {"type": "participant_joined"})
    await asyncio.sleep(0)
    assert writers() == []
