"""Sequence number and timestamp rewriting: one continuous RTP line per subscriber stream."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


class SequenceRewriter:
    """Maps (source, sequence number, timestamp) onto one continuous output line.

    Within a source, output = input + offset, so reordering, loss gaps and retransmissions map
    consistently. A new source continues right after the last output sequence number, and its
    timestamps continue after the last output timestamp plus the wall-clock time that passed.
    Packets of a source older than the first one forwarded from it are dropped.
    """

    def __init__(
        self,
        clock_rate: int,
        first_sequence_number: int | None = None,
        first_timestamp: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        first_seq = (
            random.randrange(SEQ_MOD // 2)
            if first_sequence_number is None
            else first_sequence_number
        )
        self._clock_rate = clock_rate
        self._clock = clock
        self._last_seq = (first_seq - 1) % SEQ_MOD
        self._last_ts = random.randrange(TS_MOD) if first_timestamp is None else first_timestamp
        self._last_time: float | None = None
        self._source: Hashable | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._highest = 0
        self._start = 0

    @property
    def source(self) -> Hashable | None:
        return self._source

    def rewrite(self, source: Hashable, seq: int, ts: int) -> tuple[int, int] | None:
        now = self._clock()
        if source != self._source:
            gap = 0
            if self._last_time is not None:
                gap = max(1, int((now - self._last_time) * self._clock_rate))
            self._source = source
            self._seq_offset = (self._last_seq + 1 - seq) % SEQ_MOD
            self._ts_offset = (self._last_ts + gap - ts) % TS_MOD
            self._highest = self._start = seq
            newest = True
        else:
            delta = ((seq - self._highest) + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2
            extended = self._highest + delta
            if extended < self._start:
                return None
            newest = delta > 0
            if newest:
                self._highest = extended
        out_seq = (seq + self._seq_offset) % SEQ_MOD
        out_ts = (ts + self._ts_offset) % TS_MOD
        if newest:
            self._last_seq, self._last_ts, self._last_time = out_seq, out_ts, now
        return out_seq, out_ts
