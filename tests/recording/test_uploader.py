"""The uploader against stores that fail: retried with backoff, a manifest never ahead of its
segments, files leave the spool only when every store has them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from media_node.recording.manifest import MANIFEST_NAME
from media_node.recording.settings import RecordingSettings
from media_node.recording.uploader import Uploader


class FlakyStore:
    def __init__(self, name: str, failures: int = 0) -> None:
        self.name = name
        self.failures = failures
        self.objects: dict[str, bytes] = {}
        self.calls: list[str] = []

    def put(self, key: str, path: Path, content_type: str) -> None:
        self.calls.append(key)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store unreachable")
        self.objects[key] = path.read_bytes()


def write_recording(root: Path, segments: int, state: str = "recording") -> Path:
    folder = root / "recordings" / "room" / "rec-1"
    for index in range(1, segments + 1):
        path = folder / "alice" / "video-1" / f"{index:05d}.webm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"segment %d" % index)
    keys = [{"key": f"alice/video-1/{i:05d}.webm"} for i in range(1, segments + 1)]
    manifest = {"state": state, "tracks": [{"segments": keys}]}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


async def test_failed_uploads_are_retried_and_the_manifest_waits_for_its_segments(
    tmp_path: Path,
) -> None:
    now = [0.0]
    s3, azure = FlakyStore("s3", failures=2), FlakyStore("azure")
    uploader = Uploader(
        RecordingSettings(bucket="b", spool_dir=tmp_path, upload_backoff_max_s=4),
        [s3, azure],
        clock=lambda: now[0],
    )
    folder = write_recording(tmp_path, segments=2)
    manifest_key = "recordings/room/rec-1/manifest.json"

    # both segments fail on S3: they wait out their backoff; the manifest names them, so it
    # waits too, on every store
    assert await uploader.upload_pending() == 3
    assert manifest_key not in s3.objects and manifest_key not in azure.objects
    assert await uploader.upload_pending() == 3
    assert len(s3.calls) == 2, "retried before its backoff ran out"
    now[0] += 10
    assert await uploader.upload_pending() == 0
    assert set(s3.objects) == set(azure.objects)
    assert s3.objects[manifest_key] == (folder / MANIFEST_NAME).read_bytes()
    assert not list(folder.rglob("*.webm")), "uploaded segments left the spool"
    # a live manifest stays (the worker rewrites it); a stopped one leaves after its upload
    assert (folder / MANIFEST_NAME).exists()
    write_recording(tmp_path, segments=0, state="stopped")
    assert await uploader.upload_pending() == 0
    assert json.loads(s3.objects[manifest_key])["state"] == "stopped"
    assert not (tmp_path / "recordings").exists(), "empty folders pruned"


def test_settings_name_what_is_missing_or_unsafe(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="RTCFLEET_RECORDING_BUCKET is required"):
        RecordingSettings(store="s3", container_url="https://a.blob.core.windows.net/c")
    with pytest.raises(ValidationError, match="prefix"):
        RecordingSettings(bucket="b", prefix="../elsewhere/")
    both = RecordingSettings(bucket="b", container_url="https://a.blob.core.windows.net/c")
    assert both.uses("s3") and both.uses("azure-blob")
    only = RecordingSettings(
        store="azure-blob", bucket="b", container_url="https://a.blob.core.windows.net/c"
    )
    assert only.enabled and not only.uses("s3")
    assert not RecordingSettings(spool_dir=tmp_path).enabled
