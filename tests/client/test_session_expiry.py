"""A client whose session ended with its token stops: no resume with a token that is refused."""

from __future__ import annotations

from rtcfleet.client.session import ClientSession
from tests.client.test_session_rejoin import Peer, Socket, joined


async def test_a_session_ended_by_its_token_is_not_resumed() -> None:
    session = ClientSession(["ws://127.0.0.1:1/v1/signal"], "token", peer_factory=Peer)  # type: ignore[arg-type]
    socket = Socket()
    session._ws = socket  # type: ignore[assignment]
    try:
        await session._on_message(joined("media-a"))
        session._joined.set()
        await session._on_message(
            {"type": "error", "code": "token_expired", "message": "token has expired"}
        )
        # the run loop ends instead of resuming, and the socket is closed at once
        assert session._closing and socket.closed
        assert socket.sent == []
        assert session.events.errors[-1]["code"] == "token_expired"
    finally:
        await session.close(leave=False)
