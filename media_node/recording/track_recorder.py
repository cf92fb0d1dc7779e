"""One published track written into segments as its packets arrive.

A ``TrackRecorder`` sits among the track's subscriber streams (``PublishedTrack.downtracks``)
and gets the same packets, still encoded. Each segment of a video track starts on a keyframe:
``KEYFRAME_LEAD_S`` before a segment is due, the publisher is asked for one (PLI), and the
segment is cut when it arrives.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiortc.rtp import RtpPacket

from media_node.fanout import OutgoingPacket
from media_node.recording import manifest
from media_node.recording.frames import EncodedFrame, FrameAssembler, vp8_frame_size
from media_node.recording.webm import WebmSegment

log = logging.getLogger(__name__)

KEYFRAME_LEAD_S = 0.25
CLOCK_RATES = {"video": 90_000, "audio": 48_000}
CODECS = {"video": "VP8", "audio": "opus"}


class KeyframeSource(Protocol):
    """The published track, as a recorder sees it."""

    track_id: str
    publisher: str
    kind: str

    def request_keyframe(self) -> bool: ...


@dataclass
class SpoolBudget:
    """The bound on the spool folder, shared by every recorder of the node's workers: a new
    segment starts only while the folder holds less than ``max_bytes``."""

    root: Path
    max_bytes: int
    recheck_s: float = 1.0
    _checked_at: float = -1e9
    _used: int = 0

    def used(self) -> int:
        now = time.monotonic()
        if now - self._checked_at >= self.recheck_s:
            self._checked_at = now
            self._used = sum(entry.stat().st_size for entry in _files(self.root) if entry.is_file())
        return self._used

    def full(self) -> bool:
        return self.used() >= self.max_bytes


def _files(root: Path) -> list[os.DirEntry[str]]:
    found: list[os.DirEntry[str]] = []
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    found.extend(_files(Path(entry.path)))
                else:
                    found.append(entry)
    except FileNotFoundError:
        pass
    return found


class TrackRecorder:
    def __init__(
        self,
        track: KeyframeSource,
        entry: manifest.Track,
        folder: Path,
        relative: str,
        recording_started: float,
        segment_s: float,
        spool: SpoolBudget,
        on_segment: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.track = track
        self.entry = entry
        self.video = track.kind == "video"
        self.clock_rate = CLOCK_RATES[track.kind]
        self._folder = folder
        self._relative = relative
        self._recording_started = recording_started
        self._segment_s = segment_s
        self._spool = spool
        self._on_segment = on_segment
        self._clock = clock
        self.assembler = FrameAssembler(track.kind, self.clock_rate)
        self.segment: WebmSegment | None = None
        self._index = 0
        # RTP timestamp -> wall clock, from the first frame's arrival
        self._origin: tuple[int, float] | None = None
        self._skip_until: int | None = None
        self.closed = False

    # a subscriber stream's interface (media_node.fanout.DownTrack)
    def forward(self, outgoing: OutgoingPacket) -> None:
        self.deliver_now(outgoing.packet, outgoing.source)

    def deliver_now(self, packet: RtpPacket, source: Hashable) -> None:
        if self.closed:
            return
        try:
            for frame in self.assembler.add(packet):
                self._write(frame)
        except Exception:  # a recording fault must never reach the forwarding path
            log.exception("recording of %s failed; track recording stopped", self.entry.track_id)
            self.closed = True
            if self.segment is not None:
                self.segment.discard()
                self.segment = None
            return
        if self.assembler.waiting_for_keyframe:
            self.track.request_keyframe()
        self.entry.frames_lost = self.assembler.frames_lost

    def wall(self, timestamp: int) -> float:
        assert self._origin is not None
        origin_ts, origin_wall = self._origin
        return origin_wall + (timestamp - origin_ts) / self.clock_rate

    def _write(self, frame: EncodedFrame) -> None:
        if self._origin is None:
            self._origin = (frame.timestamp, self._clock())
            self.entry.started_at = manifest.utc(self._origin[1])
        segment = self.segment
        if segment is not None:
            due = segment.media_seconds(frame.timestamp) >= self._segment_s - (
                KEYFRAME_LEAD_S if self.video else 0.0
            )
            resized = (
                self.video
                and frame.keyframe
                and vp8_frame_size(frame.data) != (self.entry.width, self.entry.height)
            )
            if (due and (frame.keyframe or not self.video)) or resized:
                self._finish()
            elif due:
                self.track.request_keyframe()
        if self.segment is None and not self._open(frame):
            return
        assert self.segment is not None
        self.segment.write(frame)

    def _open(self, frame: EncodedFrame) -> bool:
        if self._skip_until is not None and frame.timestamp < self._skip_until:
            return False
        if self.video and not frame.keyframe:
            self.track.request_keyframe()
            return False
        if self._spool.full():
            # the stores are not keeping up: drop one segment's worth, note it, try again
            self._skip_until = frame.timestamp + int(self._segment_s * self.clock_rate)
            self.entry.gaps.append(
                manifest.Gap(
                    start_offset_s=round(self.wall(frame.timestamp) - self._recording_started, 3),
                    reason="spool_full",
                )
            )
            log.warning("spool full: a segment of %s dropped", self.entry.track_id)
            return False
        self._skip_until = None
        size = vp8_frame_size(frame.data) if self.video else None
        if size is not None:
            self.entry.width, self.entry.height = size
        self._index += 1
        name = f"{self._relative}/{self._index:05d}.webm"
        self.segment = WebmSegment(self._folder / name, self.track.kind, self.clock_rate, size)
        return True

    def _finish(self) -> None:
        segment, self.segment = self.segment, None
        if segment is None or segment.first_timestamp is None:
            if segment is not None:
                segment.discard()
            return
        size = segment.close()
        first, last, frames = segment.first_timestamp, segment.last_timestamp, segment.frames
        span = (last - first) / self.clock_rate
        duration = span * frames / (frames - 1) if frames > 1 else 0.0
        self.entry.segments.append(
            manifest.Segment(
                index=self._index,
                key=f"{self._relative}/{self._index:05d}.webm",
                bytes=size,
                started_at=manifest.utc(self.wall(first)),
                start_offset_s=round(self.wall(first) - self._recording_started, 3),
                duration_s=round(duration, 3),
                frames=frames,
                keyframes=segment.keyframes,
                rtp_timestamp_first=first % 2**32,
                rtp_timestamp_last=last % 2**32,
            )
        )
        self._on_segment()

    def segment_end(self) -> float | None:
        """Wall-clock end of the last whole segment."""
        if not self.entry.segments:
            return None
        last = self.entry.segments[-1]
        return last.started_at.timestamp() + last.duration_s

    def close(self) -> None:
        """Finish the current segment: what arrived until now is kept."""
        if self.closed:
            return
        self.closed = True
        self._finish()
        self.entry.ended_at = manifest.utc(self._clock())
