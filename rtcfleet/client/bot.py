"""A bot participant: joins a room, publishes synthetic audio and video, counts what it gets.

Tests, benchmarks and drills use it as their client; ``rtcfleet bot`` runs one from a shell.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rtcfleet.client.peer import ClientPeer
from rtcfleet.client.session import ClientSession


class Bot:
    def __init__(
        self,
        urls: list[str],
        token: str,
        *,
        name: str = "bot",
        width: int = 640,
        height: int = 360,
        fps: int = 30,
        relay_only: bool = False,
    ) -> None:
        """``relay_only``: media only through the TURN servers the join answer names."""
        self.name = name
        self.session = ClientSession(
            urls,
            token,
            peer_factory=lambda **ice: ClientPeer(
                name, width=width, height=height, fps=fps, relay_only=relay_only, **ice
            ),
            ice_from_join=relay_only,
        )
        self.started_at = time.monotonic()

    async def start(self, timeout: float = 15.0) -> None:
        self.started_at = time.monotonic()
        await self.session.start(timeout)

    async def close(self) -> None:
        await self.session.close()

    @property
    def peer(self) -> ClientPeer:
        return self.session.peer

    def frames_sent(self) -> int:
        """Frames of video this bot's current publisher track has produced."""
        track = self.peer.video_track
        return int(getattr(track, "frames_sent", 0)) if track is not None else 0

    def time_to_first_frame(self) -> float | None:
        firsts = [s.first_frame_at for s in self.peer.remote.values() if s.first_frame_at]
        return min(firsts) - self.started_at if firsts else None

    def report(self) -> dict[str, Any]:
        tracks = []
        now = time.monotonic()
        for (publisher, kind), stats in sorted(self.peer.remote.items()):
            numbers = stats.sequence_numbers
            expected = (max(numbers) - min(numbers) + 1) if numbers else 0
            last = stats.last_frame_at
            tracks.append(
                {
                    "publisher": publisher,
                    "kind": kind,
                    "frames_decoded": stats.frames_decoded,
                    "frames_expected": expected,
                    "frames_lost": max(expected - len(numbers), 0),
                    "longest_gap_s": round(stats.longest_gap_s, 3),
                    "gaps_over_half_s": stats.notable_gaps_s[-50:],
                    # a freeze still going on when the report is made
                    "since_last_frame_s": round(now - last, 3) if last is not None else None,
                    "width": stats.width,
                    "height": stats.height,
                }
            )
        events = self.session.events
        return {
            "name": self.name,
            "session_id": self.session.session_id,
            "region": self.session.region,
            "node_id": self.session.node_id,
            "gateway": self.session.gateway_url,
            "time_to_first_frame_s": self.time_to_first_frame(),
            "resumes": events.resumes,
            "media_rejoins": events.media_rejoins,
            "signaling_timeouts": events.signaling_timeouts,
            "media_timeouts": events.media_timeouts,
            "errors": [e.get("code") for e in events.errors],
            "tracks": tracks,
        }


async def run_bot(urls: list[str], token: str, seconds: float, name: str = "bot") -> dict[str, Any]:
    bot = Bot(urls, token, name=name)
    await bot.start()
    try:
        await asyncio.sleep(seconds)
        return bot.report()
    finally:
        await bot.close()
