"""Chromium (installed with apt-get when missing), a camera file, and a small local fleet."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtcfleet.local import FleetSpec, LocalFleet
from tests.browser.chromium import require_chromium

ARTIFACTS = Path(
    os.environ.get("RTCFLEET_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary (see ``require_chromium``)."""
    return require_chromium()


def write_camera(path: Path, width: int, height: int, frames: int) -> Path:
    """A Y4M clip of grey noise for ``--use-file-for-fake-video-capture``.

    Chromium's built-in fake camera draws a flat test pattern that VP8 codes in a few hundred
    kbit/s whatever bandwidth it is given; noise, like a real sensor in dim light, makes the
    encoder spend its whole target, so the measured bitrate is the congestion controller's.
    """
    amplitude = 48
    table = bytes(128 - amplitude // 2 + (b % amplitude) for b in range(256))
    chroma = bytes([128]) * (width * height // 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n")
            out.write(os.urandom(width * height).translate(table))
            out.write(chroma)
    return path


@pytest.fixture(scope="session")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_camera(tmp_path_factory.mktemp("camera") / "noise.y4m", 960, 540, 30)


@pytest.fixture(scope="module")
def fleet() -> Iterator[LocalFleet]:
    """One region with one gateway and one media node: the browser's path through the platform."""
    fleet = LocalFleet(FleetSpec(regions=1, gateways=1, media=1, workers_per_node=1)).start()
    yield fleet
    fleet.remove()


@pytest.fixture
def artifacts() -> Path:
    path = ARTIFACTS / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path
