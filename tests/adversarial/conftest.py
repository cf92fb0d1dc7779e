"""Attacks through the real protocol against a fleet of real processes.

One region with one gateway and one media node of one worker: every attack lands on the same
gateway, node and worker as the honest call it must not hurt. Each test keeps an honest
two-party call running during its attack and checks afterwards that the call decoded at least
90 % of its frames in that window and that a new join on the gateway got ``joined`` within 2 s.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from rtcfleet.client.bot import Bot
from rtcfleet.local import FleetSpec, LocalFleet
from tests.platform.conftest import receives_from, wait_until

KEPT_FRAMES = 0.9
NEW_JOIN_SECONDS = 2.0
# the shortest window the honest call is judged over: 2 s of its 15 fps video
MIN_WINDOW_FRAMES = 30


@pytest.fixture(scope="package")
def fleet() -> Iterator[LocalFleet]:
    fleet = LocalFleet(FleetSpec(regions=1, gateways=1, media=1, workers_per_node=1)).start()
    print(f"fleet in {fleet.workdir}")
    yield fleet
    fleet.remove()


def signal_url(fleet: LocalFleet) -> str:
    return fleet.regions[fleet.home].gateways[0].signal_url


def redis_url(fleet: LocalFleet) -> str:
    return fleet.regions[fleet.home].redis.url


def logs(fleet: LocalFleet) -> str:
    """Every fleet process's log so far, for asserting that nothing raised uncaught."""
    return "\n".join(
        path.read_text(errors="replace") for path in sorted((fleet.workdir / "logs").glob("*"))
    )


@dataclass
class Mark:
    sent: dict[str, int]


class HonestCall:
    """Two bots in their own room, each decoding the other, at a size cheap to decode."""

    def __init__(self, fleet: LocalFleet) -> None:
        room = self.room = f"honest-{uuid.uuid4().hex[:8]}"
        self.names = ["hana", "ivan"]
        self.bots = [
            Bot([signal_url(fleet)], fleet.token(room, n), name=n, width=320, height=180, fps=15)
            for n in self.names
        ]

    async def start(self) -> None:
        for bot in self.bots:
            await bot.start()
        for bot in self.bots:
            others = [n for n in self.names if n != bot.name]
            await wait_until(functools.partial(receives_from, bot, others), 30, f"{bot.name} media")

    def mark(self) -> Mark:
        return Mark({bot.name: bot.frames_sent() for bot in self.bots})

    async def kept_since(self, mark: Mark) -> float:
        """The smallest share of frames sent since ``mark`` that the other side decoded, over
        at least ``MIN_WINDOW_FRAMES`` frames: an attack the gateway ends in a few
        milliseconds leaves a window of one frame, still in flight, which measures nothing."""
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and any(
            bot.frames_sent() - mark.sent[bot.name] < MIN_WINDOW_FRAMES for bot in self.bots
        ):
            await asyncio.sleep(0.1)
        end = {bot.name: bot.frames_sent() - 1 for bot in self.bots}
        await asyncio.sleep(1.0)  # frames in flight at the end of the window arrive
        shares = []
        for receiver in self.bots:
            for sender in self.names:
                if sender == receiver.name:
                    continue
                stats = receiver.peer.received(sender, "video")
                sent = end[sender] - mark.sent[sender] + 1
                got = stats.received_between(mark.sent[sender], end[sender]) if stats else 0
                shares.append(got / max(sent, 1))
        return min(shares)

    async def close(self) -> None:
        await asyncio.gather(*(bot.close() for bot in self.bots), return_exceptions=True)


@pytest.fixture
async def honest(fleet: LocalFleet) -> AsyncIterator[HonestCall]:
    call = HonestCall(fleet)
    try:
        await call.start()
        yield call
    finally:
        await call.close()


class Attacker:
    """A raw signaling socket: sends whatever it is told, reads only when asked."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws

    @classmethod
    async def connect(cls, url: str) -> Attacker:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, max_msg_size=0)
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        await self.ws.send_str(text)

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = await self.ws.receive(timeout=timeout)
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {frame.type.name} {frame.data!r}")
        value = json.loads(frame.data)
        assert isinstance(value, dict)
        return value

    async def receive_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.receive(max(deadline - time.monotonic(), 0.01))
            if message.get("type") == kind:
                return message

    async def receive_type_of(self, kinds: tuple[str, ...], timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.receive(max(deadline - time.monotonic(), 0.01))
            if message.get("type") in kinds:
                return message

    async def drain_types(self, quiet: float = 0.5) -> list[str]:
        """The types of every message waiting, until none comes for ``quiet`` seconds."""
        kinds = []
        while True:
            try:
                kinds.append(str((await self.receive(quiet)).get("type")))
            except TimeoutError:
                return kinds

    async def drain_messages(self, quiet: float = 0.5) -> list[dict[str, Any]]:
        """Every message waiting, until none comes for ``quiet`` seconds."""
        messages = []
        while True:
            try:
                messages.append(await self.receive(quiet))
            except TimeoutError:
                return messages

    async def join(self, token: str, **extra: Any) -> dict[str, Any]:
        await self.send({"type": "join", "token": token, **extra})
        return await self.receive_type("joined")

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


async def new_join_seconds(fleet: LocalFleet) -> float:
    """How long a new participant waits for ``joined`` on the gateway (inf if it never comes)."""
    attacker = await Attacker.connect(signal_url(fleet))
    try:
        started = time.monotonic()
        token = fleet.token(f"newcomer-{uuid.uuid4().hex[:8]}", "newcomer")
        try:
            await attacker.join(token)
        except (TimeoutError, ConnectionError):
            return float("inf")
        elapsed = time.monotonic() - started
        await attacker.send({"type": "leave"})
        return elapsed
    finally:
        await attacker.close()


async def assert_unharmed(fleet: LocalFleet, call: HonestCall, mark: Mark) -> None:
    join_s = await new_join_seconds(fleet)
    kept = await call.kept_since(mark)
    print(f"new join {join_s:.2f} s; honest call kept {kept:.1%} of its frames")
    assert join_s <= NEW_JOIN_SECONDS, f"a new join waited {join_s:.2f} s for joined"
    assert kept >= KEPT_FRAMES, f"the honest call decoded {kept:.1%} of its frames"


async def publish_offer_sdp(tracks: tuple[str, ...] = ("audio", "video")) -> str:
    """A real aiortc publisher offer (sendonly, one m-line per kind in ``tracks``)."""
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.rtcconfiguration import RTCBundlePolicy

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        for kind in tracks:
            pc.addTransceiver(kind, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def flood_sdp(base: str, sections: int, *, first_mid: int = 0, video_codec: str = "") -> str:
    """An offer of ``sections`` minimal audio m-lines built on the transport of a real offer
    (``base``); with ``video_codec``, one more video m-line offering only that codec."""
    lines = base.split("\r\n")
    first_media = next(i for i, line in enumerate(lines) if line.startswith("m="))
    session = [line for line in lines[:first_media] if not line.startswith("a=group:BUNDLE")]
    transport = [
        line
        for line in lines[first_media:]
        if line.startswith(("a=ice-ufrag", "a=ice-pwd", "a=fingerprint:sha-256", "a=setup"))
    ]
    mids = [str(first_mid + i) for i in range(sections + (1 if video_codec else 0))]
    out = [*session, "a=group:BUNDLE " + " ".join(mids)]
    for index, mid in enumerate(mids):
        video = video_codec and index == len(mids) - 1
        codec = f"96 {video_codec}/90000" if video else "96 opus/48000/2"
        out += [
            f"m={'video' if video else 'audio'} 9 UDP/TLS/RTP/SAVPF 96",
            "c=IN IP4 0.0.0.0",
            f"a=mid:{mid}",
            "a=sendonly",
            f"a=msid:flood t{mid}",
            f"a=rtpmap:{codec}",
            "a=rtcp-mux",
            *transport,
        ]
    return "\r\n".join(out) + "\r\n"
