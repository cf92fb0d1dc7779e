"""Headless Chromium on the demo page and an aiortc bot in one room, through a gateway and a
media node of a local fleet: each decodes the other, and Chromium's upstream ramps past
1.5 Mbit/s on transport-wide congestion control feedback."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from rtcfleet.client.bot import Bot
from rtcfleet.local import LocalFleet
from tests.browser.chromium import Browser, Page
from tests.platform.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

ROOM = "browser-1"
TARGET_BPS = 1_500_000
RAMP_BUDGET_S = 12.0  # from the page's join; REMB alone needed ~28 s (8 %/s from 300 kbit/s)
WINDOW_S = 5.0

OUTBOUND_VIDEO = """(async () => {
  let found = null;
  if (!pubPc) return null;
  (await pubPc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") {
      found = {bytes: s.bytesSent, at: s.timestamp, width: s.frameWidth, height: s.frameHeight,
               fps: s.framesPerSecond, limitation: s.qualityLimitationReason};
    }
  });
  return found;
})()"""

BOT_TILE = """(() => {
  const tile = document.querySelector('.tile.remote[data-identity="bot"]');
  if (!tile) return null;
  const video = tile.querySelector("video");
  const quality = video.getVideoPlaybackQuality();
  return {width: video.videoWidth, height: video.videoHeight, frames: quality.totalVideoFrames,
          name: tile.querySelector(".name").textContent,
          stats: tile.querySelector(".stats").textContent};
})()"""

LOADED = "document.readyState === 'complete' && !!window.rtcfleetDemo"
JOIN_CLICK = "document.querySelector('#join button[type=submit]').click()"
REFUSED = "window.rtcfleetDemo.status.startsWith('refused') && window.rtcfleetDemo.status"


async def outbound(page: Page) -> dict[str, Any]:
    sample = await page.evaluate(OUTBOUND_VIDEO)
    assert sample is not None, "Chromium has no outbound video"
    return dict(sample)


async def ramp(page: Page, started: float) -> tuple[float | None, list[float]]:
    """Seconds from `started` until a one-second sample reaches the target (None if never
    within the budget), and the samples."""
    samples: list[float] = []
    await page.wait_for(OUTBOUND_VIDEO, RAMP_BUDGET_S, "Chromium's outbound video")
    last = await outbound(page)
    while time.monotonic() - started < RAMP_BUDGET_S:
        await asyncio.sleep(1.0)
        now = await outbound(page)
        bps = 8 * (now["bytes"] - last["bytes"]) * 1000 / max(now["at"] - last["at"], 1)
        samples.append(round(bps))
        last = now
        if bps >= TARGET_BPS:
            return time.monotonic() - started, samples
    return None, samples


async def test_chromium_and_a_bot_see_each_other_through_the_platform(
    fleet: LocalFleet, chromium: str, camera: Path, artifacts: Path
) -> None:
    gateway = fleet.regions[fleet.home].gateways[0]
    bot = Bot([gateway.signal_url], fleet.token(ROOM, "bot"), name="bot")
    await bot.start()
    browser = await Browser(chromium, (f"--use-file-for-fake-video-capture={camera}",)).start()
    ramping: asyncio.Task[tuple[float | None, list[float]]] | None = None
    try:
        token = fleet.token(ROOM, "chromium")
        # a link naming another origin's signaling URL is refused at Join
        elsewhere = "ws://127.0.0.2:9/v1/signal"
        page = await browser.open(f"{gateway.http_url}/demo?signal={elsewhere}#token={token}")
        await page.wait_for(LOADED, 10, "the demo script")
        await page.evaluate(JOIN_CLICK)
        status = await page.wait_for(REFUSED, 10, "the foreign signaling URL refused")
        assert elsewhere in status and await page.evaluate("window.rtcfleetDemo.joined") is None

        url = f"{gateway.http_url}/demo?room={ROOM}&video=960x540#token={token}"
        page = await browser.open(url)
        await page.wait_for(LOADED, 10, "the demo script")
        # the token leaves the address bar and history; nothing joins or publishes before Join
        assert token not in await page.evaluate("location.href")
        await asyncio.sleep(2.0)
        assert await page.evaluate("window.rtcfleetDemo.status") == "idle"
        await page.evaluate(JOIN_CLICK)
        joined = await page.wait_for("window.rtcfleetDemo?.joined", 30, "the page to join")
        assert joined["room"] == ROOM and joined["identity"] == "chromium"
        ramping = asyncio.create_task(ramp(page, time.monotonic()))

        # the bot decodes Chromium's camera and microphone
        await wait_until(
            lambda: (bot.peer.received("chromium", "video") or _none).frames_decoded >= 60,
            30,
            "the bot decoding 60 of Chromium's frames",
        )
        video = bot.peer.received("chromium", "video")
        audio = bot.peer.received("chromium", "audio")
        assert video is not None and (video.width or 0) > 0 and (video.height or 0) > 0
        assert audio is not None and audio.frames_decoded > 0

        # Chromium shows the bot's video: size and advancing frames read back from the page
        first = await page.wait_for(
            f"(() => {{ const t = {BOT_TILE}; return t && t.width > 0 && t.frames > 0 && t; }})()",
            30,
            "the bot's video on the page",
        )
        await asyncio.sleep(2.0)
        second = await page.evaluate(BOT_TILE)
        assert (second["width"], second["height"]) == (640, 360)
        assert second["frames"] >= first["frames"] + 30, (first, second)
        assert second["name"] == "bot" and "Mbit/s" in second["stats"]

        # Chromium's upstream through the media node
        reached_after, samples = await ramping
        start = await outbound(page)
        await asyncio.sleep(WINDOW_S)
        end = await outbound(page)
        bitrate = 8 * (end["bytes"] - start["bytes"]) * 1000 / (end["at"] - start["at"])
        (artifacts / "demo.png").write_bytes(await page.screenshot())
        figures = {
            "outbound_video_bps": round(bitrate),
            "seconds_to_target": reached_after and round(reached_after, 1),
            "ramp_samples_bps": samples,
            "resolution": [end["width"], end["height"]],
            "frames_per_second": end["fps"],
            "quality_limitation": end["limitation"],
            "bot_decoded_frames": bot.peer.received("chromium", "video").frames_decoded,  # type: ignore[union-attr]
            "page_frames_shown": second["frames"],
        }
        (artifacts / "demo.json").write_text(json.dumps(figures, indent=2))
        print(f"Chromium upstream through the media node: {json.dumps(figures)}")
        assert reached_after is not None, f"no 1.5 Mbit/s within {RAMP_BUDGET_S} s: {samples}"
        assert bitrate >= TARGET_BPS, f"Chromium sent {bitrate / 1e6:.2f} Mbit/s"
        assert not await page.evaluate("window.rtcfleetDemo.errors.length")
    finally:
        if ramping is not None:
            ramping.cancel()
        await browser.close()
        await bot.close()


class _NoStats:
    frames_decoded = 0


_none = _NoStats()
