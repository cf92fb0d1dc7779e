"""What the SFU reports as its load: counts, and the bitrate it actually sends."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SfuLoad:
    rooms: int
    participants: int
    forwarded_streams: int
    bitrate_out_bps: int
    packets_forwarded: int


class TrafficMeter:
    """Bytes sent in one-second buckets; the rate is measured over the last `window` seconds."""

    def __init__(self, window: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self.packets = 0
        self.bytes = 0
        self._window = window
        self._clock = clock
        self._buckets: deque[tuple[int, int]] = deque()
        self._started = clock()

    def record(self, nbytes: int, packets: int = 1) -> None:
        """Count `packets` datagrams of `nbytes` bytes in all, sent now."""
        self.packets += packets
        self.bytes += nbytes
        second = int(self._clock())
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1] = (second, self._buckets[-1][1] + nbytes)
        else:
            self._buckets.append((second, nbytes))
            self._trim(second)

    def bitrate_bps(self) -> int:
        """Bits per second over the last whole seconds (at most `window` of them)."""
        now = self._clock()
        current = int(now)
        self._trim(current)
        seconds = min(self._window, current - int(self._started))
        if seconds <= 0:
            total = sum(n for _, n in self._buckets)
            return int(total * 8 / max(now - self._started, 1e-3))
        total = sum(n for s, n in self._buckets if current - seconds <= s < current)
        return int(total * 8 / seconds)

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] < second - self._window:
            self._buckets.popleft()
