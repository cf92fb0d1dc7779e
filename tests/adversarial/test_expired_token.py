"""An expired token: its session ends at expiry, and nothing revives it with that token.

The tokens here expired ``CLOCK_SKEW_SECONDS - GRACE_S`` seconds before the test starts: the
gateway still accepts them (the tolerated clock skew), so the sessions are joined while their
token is valid, and the skew runs out ``GRACE_S`` seconds later. No test waits out a whole
token lifetime or the skew.
"""

from __future__ import annotations

import time
import uuid

import aiohttp

from rtcfleet.local import LocalFleet
from rtcfleet.tokens import CLOCK_SKEW_SECONDS
from tests.adversarial.conftest import (
    Attacker,
    HonestCall,
    assert_unharmed,
    publish_offer_sdp,
    signal_url,
)

# seconds of validity left to the expiring tokens when minted: enough to join and publish
GRACE_S = 5.0
TTL_S = 60
# the close code of a session whose token expired (docs/signaling.md)
CLOSED_EXPIRED = 4002


def expiring_token(fleet: LocalFleet, room: str, identity: str) -> tuple[str, float]:
    """A token the gateway accepts for about ``GRACE_S`` more seconds, and when that ends."""
    issued = int(time.time() + GRACE_S - CLOCK_SKEW_SECONDS - TTL_S)
    token = fleet.token(room, identity, ttl_seconds=TTL_S, now=issued)
    return token, issued + TTL_S + CLOCK_SKEW_SECONDS


async def joined_publisher(url: str, token: str) -> tuple[Attacker, str]:
    """A socket whose session publishes (the node answered its offer); and its session id."""
    socket = await Attacker.connect(url)
    joined = await socket.join(token)
    await socket.send({"type": "publish_offer", "sdp": await publish_offer_sdp()})
    await socket.receive_type("publish_answer", timeout=15)
    return socket, str(joined["session_id"])


async def refused(url: str, message: dict[str, object]) -> str:
    """The error code a fresh socket gets for ``message`` (``joined`` if it was accepted)."""
    socket = await Attacker.connect(url)
    try:
        await socket.send(message)
        reply = await socket.receive_type_of(("joined", "error"), timeout=10)
        return str(reply.get("code", reply["type"]))
    finally:
        await socket.close()


async def test_a_session_ends_with_its_token_and_cannot_be_revived(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    url = signal_url(fleet)
    room = f"expiring-{uuid.uuid4().hex[:8]}"
    mark = honest.mark()
    watcher = await Attacker.connect(url)
    sockets = [watcher]
    try:
        await watcher.join(fleet.token(room, "wanda"))
        eve_token, ends = expiring_token(fleet, room, "eve")
        finn_token, _ = expiring_token(fleet, room, "finn")
        eve, eve_session = await joined_publisher(url, eve_token)
        sockets.append(eve)
        finn_old, finn_session = await joined_publisher(url, finn_token)
        sockets.append(finn_old)
        assert time.time() < ends, "the expiring sessions were set up before their tokens lapsed"

        # finn refreshes before expiry: a resume with a fresh token on a new socket
        finn = await Attacker.connect(url)
        sockets.append(finn)
        resumed = await finn.join(fleet.token(room, "finn"), session_id=finn_session)
        assert resumed["resumed"] is True and resumed["session_id"] == finn_session

        # eve kept her socket: at expiry plus the skew the gateway ends her session
        notice = await eve.receive_type("error", timeout=GRACE_S + 10)
        ended_at = time.time()
        assert notice["code"] == "token_expired", notice
        assert ended_at >= ends, f"ended {ends - ended_at:.2f} s before the token lapsed"
        closed = await eve.ws.receive(timeout=5)
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == CLOSED_EXPIRED, closed
        print(f"eve's session ended {ended_at - ends:.2f} s after her token's skew ran out")

        # her media left the room; finn's, on the fresh token, did not
        left = [
            m["identity"]
            for m in await watcher.drain_messages(quiet=1.5)
            if m["type"] == "participant_left"
        ]
        assert left == ["eve"], left
        await finn.send({"type": "ping"})
        assert (await finn.receive_type("pong"))["type"] == "pong"

        # nothing brings eve's session back with her token, and the session itself is gone
        assert await refused(url, {"type": "join", "token": eve_token}) == "token_expired"
        assert (
            await refused(url, {"type": "join", "token": eve_token, "session_id": eve_session})
            == "token_expired"
        )
        fresh = fleet.token(room, "eve")
        assert (
            await refused(url, {"type": "join", "token": fresh, "session_id": eve_session})
            == "session_not_found"
        )
        # and a socket without a session cannot act on one
        assert await refused(url, {"type": "rejoin"}) == "not_joined"

        await assert_unharmed(fleet, honest, mark)
    finally:
        for socket in sockets:
            await socket.close()
