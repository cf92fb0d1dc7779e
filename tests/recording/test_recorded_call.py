"""A call of two bots recorded through the platform into moto's S3 and Azurite, and a media
node killed in the middle of a recording."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from rtcfleet.local import LocalFleet
from tests.platform.conftest import admin, start_call, wait_until
from tests.recording.conftest import BUCKET, SEGMENT_S, ObjectStores
from tests.recording.probe import ffprobe, stamped_numbers

RECORD_S = 20.0


def backend(fleet: LocalFleet, method: str, room: str, token: str) -> tuple[int, Any]:
    """The application backend's call on the client port, with a ``can_record`` token."""
    gateway = fleet.regions[fleet.home].gateways[0]
    request = urllib.request.Request(
        f"{gateway.http_url}/v1/rooms/{room}/recording",
        method=method,
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored_manifest(stores: ObjectStores, key: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(stores.s3_get(key)))
    except Exception:
        return None


def message_types(bot: Any) -> list[str]:
    return [m["type"] for m in bot.session.events.messages]


async def test_two_bots_recorded_into_s3_and_azure_blob(
    recording_fleet: LocalFleet, object_stores: ObjectStores, tmp_path: Path
) -> None:
    fleet, room = recording_fleet, "recorded"
    bots = await start_call(fleet, room, ["alice", "bob"])
    try:
        # a participant's own token does not grant recording; the backend's does
        status, body = backend(fleet, "POST", room, fleet.token(room, "alice"))
        assert status == 403 and body["error"] == "forbidden", body
        status, body = admin(fleet, "POST", "/api/rooms/no-such-room/recording")
        assert status == 404 and body["error"] == "room_not_found", body
        status, started = backend(
            fleet, "POST", room, fleet.token(room, "backend", can_record=True)
        )
        assert status == 201, started
        sent_at_start = {bot.name: bot.frames_sent() for bot in bots}
        await wait_until(
            lambda: all("recording_started" in message_types(b) for b in bots), 10, "started"
        )
        await asyncio.sleep(RECORD_S)
        status, stopped = admin(fleet, "DELETE", f"/api/rooms/{room}/recording")
        assert status == 200 and stopped["state"] == "stopped", stopped
        sent_at_stop = {bot.name: bot.frames_sent() for bot in bots}
        await wait_until(
            lambda: all("recording_stopped" in message_types(b) for b in bots), 10, "stopped"
        )
    finally:
        await asyncio.gather(*(bot.close() for bot in bots))

    key = started["manifest_key"]
    await wait_until(
        lambda: (stored_manifest(object_stores, key) or {}).get("state") == "stopped",
        30,
        "the final manifest in S3",
    )
    manifest = stored_manifest(object_stores, key)
    assert manifest is not None
    assert json.loads(object_stores.azure_get(key)) == manifest
    assert manifest["room"] == room and manifest["stop_reason"] == "requested"
    assert {p["identity"] for p in manifest["participants"]} == {"alice", "bob"}
    assert sorted((t["participant"], t["kind"]) for t in manifest["tracks"]) == [
        ("alice", "audio"),
        ("alice", "video"),
        ("bob", "audio"),
        ("bob", "video"),
    ]
    folder = key.rsplit("/", 1)[0]
    for track in manifest["tracks"]:
        segments = track["segments"]
        total = sum(s["duration_s"] for s in segments)
        print(track["participant"], track["kind"], len(segments), "segments", f"{total:.1f} s")
        assert abs(total - RECORD_S) <= 2.0
        recorded_frames = 0
        for number, segment in enumerate(segments):
            data = object_stores.s3_get(f"{folder}/{segment['key']}")
            assert object_stores.azure_get(f"{folder}/{segment['key']}") == data
            path = tmp_path / segment["key"].replace("/", "_")
            path.write_bytes(data)
            probe = ffprobe(path)
            assert probe.errors == "", probe.errors
            assert abs(probe.duration_s - segment["duration_s"]) <= 1.0
            if 0 < number < len(segments) - 1:
                assert abs(probe.duration_s - SEGMENT_S) <= 1.0, (segment, probe)
            if track["kind"] == "audio":
                assert probe.codec == "opus"
                continue
            assert (probe.codec, probe.width, probe.height) == ("vp8", 640, 360)
            assert probe.first_is_keyframe
            numbers = stamped_numbers(path)
            sent = numbers[-1] - numbers[0] + 1
            print(f"  {segment['key']}: {probe.frames}/{sent} frames, {probe.duration_s:.2f} s")
            assert probe.frames >= 0.95 * sent
            recorded_frames += probe.frames
        sent_total = sent_at_stop[track["participant"]] - sent_at_start[track["participant"]]
        if track["kind"] == "video":
            assert recorded_frames >= 0.95 * sent_total * (total / RECORD_S) - 1
    listed = {f"{folder}/{s['key']}" for t in manifest["tracks"] for s in t["segments"]}
    in_s3 = {
        o["Key"]
        for o in object_stores.s3().list_objects_v2(Bucket=BUCKET, Prefix=folder)["Contents"]
    }
    assert in_s3 == listed | {key}


async def test_media_node_killed_mid_recording_keeps_uploaded_segments(
    recording_fleet: LocalFleet, object_stores: ObjectStores, tmp_path: Path
) -> None:
    fleet, room = recording_fleet, "killed"
    bots = await start_call(fleet, room, ["carol", "dave"])
    try:
        status, started = admin(fleet, "POST", f"/api/rooms/{room}/recording")
        assert status == 201, started
        key = started["manifest_key"]

        def uploaded_video_segments() -> int:
            manifest = stored_manifest(object_stores, key) or {"tracks": []}
            return min(
                (len(t["segments"]) for t in manifest["tracks"] if t["kind"] == "video"),
                default=0,
            )

        await wait_until(lambda: uploaded_video_segments() >= 1, 30, "a segment uploaded")
        await asyncio.sleep(SEGMENT_S / 2)
        nodes = fleet.regions[fleet.home].media_nodes
        nodes[0].process.kill()
        killed_at = time.time()
    finally:
        await asyncio.gather(*(bot.close() for bot in bots))
    # the fleet is shared by the session: a new node takes the dead one's place
    nodes.pop(0)
    fleet.start_media_node(fleet.home)

    manifest = stored_manifest(object_stores, key)
    assert manifest is not None
    # it never heard a stop: the manifest says it was recording, and up to when
    assert manifest["state"] == "recording" and manifest["stopped_at"] is None
    recorded_until = datetime.fromisoformat(manifest["recorded_until"]).timestamp()
    lost = killed_at - recorded_until
    print(f"killed {lost:.1f} s after the end of the last uploaded segment")
    assert 0 < lost <= 2 * SEGMENT_S + 1
    assert all(len(t["segments"]) >= 1 for t in manifest["tracks"] if t["kind"] == "video")
    folder = key.rsplit("/", 1)[0]
    for track in manifest["tracks"]:
        for segment in track["segments"]:
            path = tmp_path / segment["key"].replace("/", "_")
            path.write_bytes(object_stores.s3_get(f"{folder}/{segment['key']}"))
            probe = ffprobe(path)
            assert probe.errors == "" and probe.frames == segment["frames"]
