"""Synthetic media for bots and tests: video frames that carry their own sequence number, so a
receiver can count exactly which frames of each sender it decoded, and a steady audio tone.

The number is drawn as 24 large black/white blocks (20 bits of number, 4 bits of checksum) in the
top-left corner; a block is 1/40 of the frame width, big enough to survive lossy VP8 at low
bitrates. A moving bar below it gives the encoder real motion to code, and optional rows of
noise make it spend its whole bitrate budget.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import os
import time
from array import array

from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame, VideoFrame

NUMBER_BITS = 20
CHECK_BITS = 4
COLUMNS = 12
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.02


def block_size(width: int) -> int:
    return max(12, (width // 40) // 2 * 2)


def _checksum(number: int) -> int:
    """Inverted XOR of the nibbles, so all-black and all-white pictures never pass."""
    check = 0xF
    for shift in range(0, NUMBER_BITS, CHECK_BITS):
        check ^= (number >> shift) & 0xF
    return check


def _bits(number: int) -> list[int]:
    number &= (1 << NUMBER_BITS) - 1
    word = (number << CHECK_BITS) | _checksum(number)
    total = NUMBER_BITS + CHECK_BITS
    return [(word >> (total - 1 - i)) & 1 for i in range(total)]


def _block_origin(index: int, size: int) -> tuple[int, int]:
    row, column = divmod(index, COLUMNS)
    return size + row * size, size + column * size


def stamp_sequence_number(luma: bytearray, stride: int, width: int, number: int) -> None:
    """Draw `number` into a luma plane stored row by row with `stride` bytes per row."""
    size = block_size(width)
    for index, bit in enumerate(_bits(number)):
        y, x = _block_origin(index, size)
        row = (b"\xeb" if bit else b"\x10") * size
        for line in range(y, y + size):
            luma[line * stride + x : line * stride + x + size] = row


def read_sequence_number(frame: VideoFrame) -> int | None:
    """The number stamped into a decoded frame, or None if it cannot be read reliably."""
    if frame.format.name not in ("yuv420p", "yuvj420p", "gray"):
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    luma = bytes(plane)
    stride = plane.line_size
    size = block_size(frame.width)
    margin = size // 4
    inner = size - 2 * margin
    if _block_origin(NUMBER_BITS + CHECK_BITS - 1, size)[0] + size > frame.height:
        return None
    word = 0
    for index in range(NUMBER_BITS + CHECK_BITS):
        y, x = _block_origin(index, size)
        total = 0
        for line in range(y + margin, y + size - margin):
            start = line * stride + x + margin
            total += sum(luma[start : start + inner])
        word = (word << 1) | int(total > 125 * inner * inner)
    number = word >> CHECK_BITS
    if word & 0xF != _checksum(number):
        return None
    return number


class SyntheticVideoTrack(MediaStreamTrack):
    """Real-time paced video whose frame n shows the number n."""

    kind = "video"

    def __init__(
        self, width: int = 640, height: int = 360, fps: int = 30, noise_rows: int = 0
    ) -> None:
        """`noise_rows` rows of random pixels at the bottom make the encoder spend its whole
        target bitrate (a plain synthetic picture needs only a few tens of kbit/s)."""
        super().__init__()
        if width % 2 or height % 2:
            raise ValueError("width and height must be even")
        self.width = width
        self.height = height
        self.fps = fps
        self.frames_sent = 0
        self.noise_rows = min(noise_rows, height // 2)
        self._start: float | None = None
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK)
        probe = VideoFrame(width, height, "yuv420p")
        self._strides = [plane.line_size for plane in probe.planes]
        self._luma = bytes([90]) * (self._strides[0] * height)
        self._chroma = [bytes([128]) * (stride * height // 2) for stride in self._strides[1:]]

    @property
    def last_sequence_number(self) -> int:
        """The number of the last frame handed to the encoder (-1 before the first)."""
        return self.frames_sent - 1

    async def recv(self) -> VideoFrame:
        number = self.frames_sent
        if self._start is None:
            self._start = time.monotonic()
        else:
            delay = self._start + number / self.fps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        frame = VideoFrame(self.width, self.height, "yuv420p")
        luma = bytearray(self._luma)
        stride = self._strides[0]
        size = block_size(self.width)
        bar_x = (number * 8) % max(1, self.width - size * 2)
        bar = b"\xdc" * (size * 2)
        for line in range(size * 4, self.height):
            luma[line * stride + bar_x : line * stride + bar_x + size * 2] = bar
        stamp_sequence_number(luma, stride, self.width, number)
        if self.noise_rows:
            start = (self.height - self.noise_rows) * stride
            luma[start : self.height * stride] = os.urandom(self.noise_rows * stride)
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(self._chroma[0])
        frame.planes[2].update(self._chroma[1])
        frame.pts = number * VIDEO_CLOCK // self.fps
        frame.time_base = self._time_base
        self.frames_sent += 1
        return frame


class SyntheticAudioTrack(MediaStreamTrack):
    """Real-time paced 20 ms frames of a 400 Hz tone, mono 48 kHz."""

    kind = "audio"

    def __init__(self, frequency: int = 400) -> None:
        super().__init__()
        self.frames_sent = 0
        self._samples = int(AUDIO_RATE * AUDIO_PTIME)
        self._pcm = array(
            "h",
            (
                int(8000 * math.sin(2 * math.pi * frequency * i / AUDIO_RATE))
                for i in range(self._samples)
            ),
        ).tobytes()
        self._start: float | None = None
        self._time_base = fractions.Fraction(1, AUDIO_RATE)

    async def recv(self) -> AudioFrame:
        number = self.frames_sent
        if self._start is None:
            self._start = time.monotonic()
        else:
            delay = self._start + number * AUDIO_PTIME - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        frame = AudioFrame(format="s16", layout="mono", samples=self._samples)
        frame.planes[0].update(self._pcm)
        frame.sample_rate = AUDIO_RATE
        frame.pts = number * self._samples
        frame.time_base = self._time_base
        self.frames_sent += 1
        return frame
