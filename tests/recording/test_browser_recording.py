"""A Chromium participant (the demo page) recorded: its VP8 and Opus land in the store as
segments that play, and the page hears the recording start and stop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rtcfleet.local import LocalFleet
from tests.browser.chromium import Browser
from tests.browser.conftest import chromium  # noqa: F401  (the fixture)
from tests.platform.conftest import admin, wait_until
from tests.recording.conftest import ObjectStores
from tests.recording.probe import ffprobe

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

ROOM = "browser-recorded"
RECORD_S = 6.0
LOADED = "document.readyState === 'complete' && !!window.rtcfleetDemo"
JOIN_CLICK = "document.querySelector('#join button[type=submit]').click()"
OUTBOUND_FRAMES = """(async () => {
  let found = null;
  if (!pubPc) return null;
  (await pubPc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video" && s.framesEncoded > 0) found = s;
  });
  return found && {frames: found.framesSent, width: found.frameWidth, height: found.frameHeight};
})()"""


async def test_a_chromium_participant_is_recorded(
    recording_fleet: LocalFleet,
    object_stores: ObjectStores,
    chromium: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    fleet = recording_fleet
    fleet.wait_ready(60)
    gateway = fleet.regions[fleet.home].gateways[0]
    browser = await Browser(chromium).start()
    try:
        token = fleet.token(ROOM, "chromium")
        page = await browser.open(f"{gateway.http_url}/demo?room={ROOM}#token={token}")
        await page.wait_for(LOADED, 10, "the demo script")
        await page.evaluate(JOIN_CLICK)
        await page.wait_for("window.rtcfleetDemo?.joined", 30, "the page to join")
        await page.wait_for(OUTBOUND_FRAMES, 30, "Chromium sending video")
        status, started = admin(fleet, "POST", f"/api/rooms/{ROOM}/recording")
        assert status == 201, started
        recording_id = started["recording_id"]
        await page.wait_for(f"window.rtcfleetDemo.recording === '{recording_id}'", 10, "started")
        before = await page.evaluate(OUTBOUND_FRAMES)
        await asyncio.sleep(RECORD_S)
        after = await page.evaluate(OUTBOUND_FRAMES)
        status, stopped = admin(fleet, "DELETE", f"/api/rooms/{ROOM}/recording")
        assert status == 200, stopped
        await page.wait_for("window.rtcfleetDemo.recording === null", 10, "stopped")
        assert not await page.evaluate("window.rtcfleetDemo.errors.length")
    finally:
        await browser.close()

    key = started["manifest_key"]

    def manifest() -> dict | None:
        try:
            return dict(json.loads(object_stores.s3_get(key)))
        except Exception:
            return None

    await wait_until(lambda: (manifest() or {}).get("state") == "stopped", 30, "the manifest")
    recorded = manifest()
    assert recorded is not None
    tracks = {t["kind"]: t for t in recorded["tracks"] if t["participant"] == "chromium"}
    assert set(tracks) == {"audio", "video"}
    folder = key.rsplit("/", 1)[0]
    frames = 0
    for kind, track in tracks.items():
        assert track["segments"], f"no {kind} segment"
        for segment in track["segments"]:
            path = tmp_path / segment["key"].replace("/", "_")
            path.write_bytes(object_stores.azure_get(f"{folder}/{segment['key']}"))
            probe = ffprobe(path)
            print(kind, segment["key"], probe)
            assert probe.errors == "", probe.errors
            assert probe.codec == ("vp8" if kind == "video" else "opus")
            assert probe.frames == segment["frames"]
            if kind == "video":
                assert probe.first_is_keyframe
                # Chromium adapts its resolution as its bandwidth estimate grows: a segment
                # has the size sent when it began, one of the sizes seen during the window
                widths = sorted((before["width"], after["width"]))
                assert probe.width is not None and probe.height is not None, probe
                assert widths[0] <= probe.width <= widths[1], (probe, before, after)
                assert probe.width * 9 == probe.height * 16, probe
                frames += probe.frames
    sent = after["frames"] - before["frames"]
    print(f"Chromium sent {sent} frames while recorded; the segments hold {frames}")
    assert frames >= 0.9 * sent
