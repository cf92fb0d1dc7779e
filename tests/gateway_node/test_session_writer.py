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


class SendsOnRelease:
    """A socket whose sends complete only when the test says, to land a stop on a send."""

    closed = False

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []

    async def send_str(self, text: str) -> None:
        sent = asyncio.get_running_loop().create_future()
        self.pending.append(sent)
        await sent


async def test_a_stop_landing_as_a_send_completes_still_ends_the_writer() -> None:
    grant = Grant(room="r", identity="ann", can_publish=True, can_subscribe=True, expires_at=2**31)
    ws = SendsOnRelease()
    session = Session(session_id="s2", grant=grant, node_id="n1", ws=ws)  # type: ignore[arg-type]
    assert session.offer("1-0", {"type": "participant_joined"})
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(ws.pending) == 1, "the writer is sending"
    # the send completes and the session stops in the same turn of the loop
    ws.pending[0].set_result(None)
    session.stop()
    for _ in range(5):
        await asyncio.sleep(0)
    assert writers() == [], "a stopped session's writer is still waiting for messages"
