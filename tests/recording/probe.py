"""What ``ffprobe`` (Debian's ffmpeg) and a decoder say about a recorded segment."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av

from rtcfleet.client.synthetic import read_sequence_number


def ffprobe_binary() -> str:
    found = shutil.which("ffprobe")
    if found is None:
        raise AssertionError("ffprobe is missing: apt-get install ffmpeg (.ci/run installs it)")
    return found


@dataclass
class Probe:
    codec: str
    width: int | None
    height: int | None
    duration_s: float
    frames: int
    first_is_keyframe: bool
    errors: str


def ffprobe(path: Path) -> Probe:
    """Counts every frame (``-count_frames`` decodes the stream) and reports decode errors."""
    result = subprocess.run(
        [
            ffprobe_binary(),
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    info = json.loads(result.stdout)
    stream = info["streams"][0]
    first = subprocess.run(
        [
            ffprobe_binary(),
            "-v",
            "error",
            "-select_streams",
            "0",
            "-show_entries",
            "frame=key_frame",
            "-read_intervals",
            "%+#1",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return Probe(
        codec=stream["codec_name"],
        width=stream.get("width"),
        height=stream.get("height"),
        duration_s=float(info["format"]["duration"]),
        frames=int(stream["nb_read_frames"]),
        first_is_keyframe=first.stdout.strip().startswith("1"),
        errors=result.stderr.strip(),
    )


def stamped_numbers(path: Path) -> list[int]:
    """The sequence numbers a synthetic publisher stamped into the frames of a segment."""
    numbers = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            number = read_sequence_number(frame)
            if number is not None:
                numbers.append(number)
    return numbers
