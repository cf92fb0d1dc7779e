"""Abuse of the protocol's edges by one token: frames, join deadline, claims, joins and rejoins
from many sockets."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import jwt

from gateway_node.signal import JOIN_TIMEOUT_S, JOINS_PER_IDENTITY
from rtcfleet.local import LocalFleet
from tests.adversarial.conftest import (
    Attacker,
    HonestCall,
    assert_unharmed,
    logs,
    signal_url,
)


async def closed_within(attacker: Attacker, seconds: float) -> int | None:
    """The close code if the gateway closes the socket within ``seconds``, else None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame = await attacker.ws.receive(timeout=deadline - time.monotonic())
        except TimeoutError:
            return None
        if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return attacker.ws.close_code or 0
    return None


async def test_a_binary_flood_is_rate_limited_and_disconnected(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    attacker = await Attacker.connect(signal_url(fleet))
    try:
        await attacker.join(fleet.token("binary", "mallory"))
        mark = honest.mark()
        for _ in range(2000):
            if attacker.ws.closed:
                break
            try:
                await attacker.ws.send_bytes(b"\x00" * 1024)
            except (ConnectionError, RuntimeError):
                break
        code = await closed_within(attacker, 5)
        await assert_unharmed(fleet, honest, mark)
        assert code == 1008, f"a binary flood was not disconnected (close code {code})"
    finally:
        await attacker.close()


async def test_a_silent_socket_is_closed_at_the_join_deadline(fleet: LocalFleet) -> None:
    attacker = await Attacker.connect(signal_url(fleet))
    try:
        code = await closed_within(attacker, JOIN_TIMEOUT_S + 5)
        assert code == 1008, "a socket without a join stayed open"
    finally:
        await attacker.close()


async def test_deeply_nested_json_gets_bad_json(fleet: LocalFleet, honest: HonestCall) -> None:
    attacker = await Attacker.connect(signal_url(fleet))
    try:
        mark = honest.mark()
        for _ in range(20):
            await attacker.send_raw("[" * 60_000)
        answers = [await attacker.receive() for _ in range(20)]
        await assert_unharmed(fleet, honest, mark)
        assert {a.get("code") for a in answers} == {"bad_json"}, answers[:2]
        assert "RecursionError" not in logs(fleet)
    finally:
        await attacker.close()


def forged(fleet: LocalFleet, **claims: object) -> str:
    """A token signed with the fleet's real key, carrying whatever claims the backend put in."""
    now = int(time.time())
    body = {"iss": fleet.spec.api_key, "iat": now, "nbf": now, "exp": now + 600} | claims
    return jwt.encode(
        body, fleet.spec.api_secret, algorithm="HS256", headers={"kid": fleet.spec.api_key}
    )


async def test_token_claims_outside_the_schema_are_refused(fleet: LocalFleet) -> None:
    cases = {
        "crlf identity": forged(fleet, room="claims", identity="eve\r\na=inject"),
        "long room": forged(fleet, room="r" * 500, identity="eve"),
        "string grant": forged(fleet, room="claims", identity="eve", can_publish="false"),
        "year-long token": forged(
            fleet, room="claims", identity="eve", exp=int(time.time()) + 365 * 86400
        ),
    }
    answers = {}
    for case, token in cases.items():
        attacker = await Attacker.connect(signal_url(fleet))
        try:
            await attacker.send({"type": "join", "token": token})
            answers[case] = (await attacker.receive()).get("code", "joined")
        finally:
            await attacker.close()
    assert answers == dict.fromkeys(cases, "unauthorized"), answers


async def test_rejoin_storms_are_limited_per_session(fleet: LocalFleet, honest: HonestCall) -> None:
    token = fleet.token("rejoin", "mallory")
    first = await Attacker.connect(signal_url(fleet))
    sockets = [first]
    try:
        joined = await first.join(token)
        for _ in range(4):
            other = await Attacker.connect(signal_url(fleet))
            sockets.append(other)
        mark = honest.mark()
        # every socket resumes the session in turn and asks for a rejoin many times
        answers: list[str] = []
        for attacker in sockets[1:]:
            await attacker.join(token, session_id=joined["session_id"])
            for _ in range(10):
                await attacker.send({"type": "rejoin"})
            await asyncio.sleep(0.3)
            answers += [m.get("code") or m["type"] for m in await attacker.drain_messages()]
        await assert_unharmed(fleet, honest, mark)
        refused = answers.count("rate_limited")
        assert refused >= 39, f"{40 - refused} of 40 rejoins within a second were accepted"
    finally:
        for attacker in sockets:
            await attacker.close()


async def test_one_token_on_many_sockets_joins_a_bounded_number_of_times(
    fleet: LocalFleet, honest: HonestCall
) -> None:
    """Each fresh join of an identity replaces its session before and renegotiates with
    everyone in the room: one token opening socket after socket into the honest call's room
    gets only a few of them, however many sockets it opens."""
    token = fleet.token(honest.room, "mallory")
    sockets: list[Attacker] = []
    try:
        mark = honest.mark()
        answers = []
        for _ in range(4 * JOINS_PER_IDENTITY):
            attacker = await Attacker.connect(signal_url(fleet))
            sockets.append(attacker)
            await attacker.send({"type": "join", "token": token})
            answer = await attacker.receive_type_of(("joined", "error"))
            answers.append(answer.get("code") or answer["type"])
        await assert_unharmed(fleet, honest, mark)
        assert answers.count("joined") <= JOINS_PER_IDENTITY, answers
        assert set(answers) == {"joined", "rate_limited"}, answers
    finally:
        for attacker in sockets:
            await attacker.close()
