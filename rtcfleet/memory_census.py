"""What a long-running process holds, logged on request to find what grows.

With ``RTCFLEET_MEMORY_CENSUS_SECONDS`` set to N, a gateway and every media worker log one line
every N seconds: the sizes of the maps the process names (its sessions, rooms, locks...), the
memory blocks Python has allocated, the objects a full garbage collection just freed (cycles),
the object types whose count grew most since the last census among the objects that survived
it, and, under glibc, the C heap's bytes in use and kept free (``mallinfo2``). A resident size
that rises while Python's blocks stay flat is native memory in use (OpenSSL, SRTP, codec
state) or freed memory the allocator keeps; the C heap figures tell which.

A collection and a count over ``gc.get_objects()`` take some 0.1-0.5 s per million objects:
keep N in tens of seconds. The line is logged at WARNING, so it shows at the fleet's usual
level, as ``memory census <name> <json>``; ``benchmarks/soak.py --census`` sets it and reads
the lines back. Unset, nothing runs.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from rtcfleet import c_heap

log = logging.getLogger("rtcfleet.memory")

ENV = "RTCFLEET_MEMORY_CENSUS_SECONDS"
MARK = "memory census"
# the object types listed per census: those whose count grew most
TOP_TYPES = 12


def interval() -> float | None:
    """The census period the environment asks for, or None (off, or not a positive number)."""
    try:
        seconds = float(os.environ.get(ENV, ""))
    except ValueError:
        return None
    return seconds if seconds > 0 else None


class Census:
    """Counts for one process; ``sizes`` returns the lengths of the maps it keeps."""

    def __init__(self, name: str, sizes: Callable[[], dict[str, int]]) -> None:
        self.name = name
        self.sizes = sizes
        self._last: Counter[str] = Counter()

    def take(self) -> dict[str, Any]:
        # what cycles held until now is garbage, not kept: counted apart, then counted out
        garbage = gc.collect()
        counts = Counter(type(o).__qualname__ for o in gc.get_objects())
        grew = Counter({kind: n - self._last[kind] for kind, n in counts.items()})
        self._last = counts
        return {
            "sizes": self.sizes(),
            "blocks": sys.getallocatedblocks(),
            "objects": sum(counts.values()),
            "garbage_collected": garbage,
            "c_heap": c_heap.usage(),
            "grew": {kind: [delta, counts[kind]] for kind, delta in grew.most_common(TOP_TYPES)},
        }

    async def run(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            log.warning("%s %s %s", MARK, self.name, json.dumps(self.take()))
