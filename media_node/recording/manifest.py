"""The manifest of one recording: what a later step needs to compose the tracks.

It is written again after every segment (and uploaded after the segments it names), so a
recording cut short by a node that died still has a manifest saying how far it got: its
``state`` stays ``recording`` and ``recorded_until`` is the end of the last whole segment.
Times are wall-clock (UTC) as the media node saw them; within a track, segment offsets come
from RTP timestamps.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, Field

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

RecordingState = Literal["recording", "stopped"]
StopReason = Literal["requested", "room_ended", "node_stopped", "error"]


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def key_part(name: str) -> str:
    """A room or participant name as one path component of an object key and a spool path:
    percent-encoded, dots included, so no name can be ``..`` or hide a ``/``."""
    return quote(name, safe="@+-_").replace(".", "%2E")


class Segment(BaseModel):
    index: int
    # relative to the recording's folder (``<prefix><room>/<recording id>/``)
    key: str
    bytes: int
    started_at: datetime
    # from the recording's start to this segment's first frame, and its media length
    start_offset_s: float
    duration_s: float
    frames: int
    keyframes: int
    # the publisher's RTP timestamps of the first and last frame (32-bit, as sent)
    rtp_timestamp_first: int
    rtp_timestamp_last: int


class Gap(BaseModel):
    """Media the recording does not hold, and why."""

    start_offset_s: float
    reason: Literal["spool_full"]


class Track(BaseModel):
    track_id: str
    participant: str
    kind: Literal["audio", "video"]
    codec: Literal["VP8", "opus"]
    clock_rate: int
    width: int | None = None
    height: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    frames_lost: int = 0
    segments: list[Segment] = Field(default_factory=list)
    gaps: list[Gap] = Field(default_factory=list)


class Participant(BaseModel):
    identity: str
    joined_at: datetime
    left_at: datetime | None = None


class Manifest(BaseModel):
    version: int = MANIFEST_VERSION
    recording_id: str
    room: str
    node_id: str
    state: RecordingState = "recording"
    started_at: datetime
    stopped_at: datetime | None = None
    stop_reason: StopReason | None = None
    updated_at: datetime
    # the end of the last whole segment of any track: where a cut-short recording stopped
    recorded_until: datetime | None = None
    segment_s: float
    participants: list[Participant] = Field(default_factory=list)
    tracks: list[Track] = Field(default_factory=list)

    def write(self, path: Path) -> None:
        """Replace the file at ``path`` in one step: a reader (the uploader) never sees half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.model_dump(mode="json"), indent=1))
        os.replace(temporary, path)
