"""One WebM (Matroska) segment of one track, muxed from encoded frames by FFmpeg's muxer
(through PyAV): nothing is decoded or encoded."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from media_node.recording.frames import EncodedFrame

PART_SUFFIX = ".part"
# Matroska counts time in milliseconds
MATROSKA_TIME_BASE = Fraction(1, 1000)


class WebmSegment:
    """A segment being written to ``<path>.part``; ``close`` renames it to ``path``, so a file
    without the suffix is always whole (the uploader takes only those)."""

    def __init__(
        self, path: Path, kind: str, clock_rate: int, size: tuple[int, int] | None = None
    ) -> None:
        self.path = path
        self.partial = path.with_name(path.name + PART_SUFFIX)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._time_base = Fraction(1, clock_rate)
        self._container = av.open(str(self.partial), "w", format="webm")
        stream: Any
        if kind == "video":
            width, height = size or (0, 0)
            stream = self._container.add_stream("vp8", rate=30)
            stream.width, stream.height = width, height
        else:
            stream = self._container.add_stream("opus", rate=clock_rate)
        stream.time_base = MATROSKA_TIME_BASE
        self._stream = stream
        self.first_timestamp: int | None = None
        self.last_timestamp = 0
        self.frames = 0
        self.keyframes = 0

    def write(self, frame: EncodedFrame) -> None:
        if self.first_timestamp is None:
            self.first_timestamp = frame.timestamp
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = frame.timestamp - self.first_timestamp
        packet.time_base = self._time_base
        packet.stream = self._stream
        packet.is_keyframe = frame.keyframe
        self._container.mux(packet)
        self.last_timestamp = frame.timestamp
        self.frames += 1
        self.keyframes += frame.keyframe

    def media_seconds(self, timestamp: int) -> float:
        """Media time from this segment's first frame to ``timestamp``."""
        if self.first_timestamp is None:
            return 0.0
        return float((timestamp - self.first_timestamp) * self._time_base)

    def close(self) -> int:
        """Finish the file and give it its final name; returns its size in bytes."""
        self._container.close()
        os.replace(self.partial, self.path)
        return self.path.stat().st_size

    def discard(self) -> None:
        self._container.close()
        self.partial.unlink(missing_ok=True)
