"""The node's drain: no new rooms from its start, and the node stops when its rooms have
ended or the drain's bound has passed, whichever comes first.

A drain starts on SIGTERM (scale-in, a deploy), on an operator's request through a gateway, or
from the cloud's scale-in agent (``media_node.drain_agent``), which it releases at the end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from media_node.drain_agent import DrainAgent

log = logging.getLogger("rtcfleet.media")

WATCH_INTERVAL_S = 0.2


class Drain:
    def __init__(self, timeout_seconds: float, rooms_left: Callable[[], int]) -> None:
        self.timeout_seconds = timeout_seconds
        self.rooms_left = rooms_left
        self.draining = False
        self.started: float | None = None

    def start(self) -> None:
        """No new rooms from now on; the node exits when its rooms end or the bound passes."""
        if not self.draining:
            self.draining = True
            self.started = time.monotonic()
            log.info("draining: %d rooms remain", self.rooms_left())

    async def watch(self, stopped: asyncio.Event, agent: DrainAgent | None) -> None:
        """Set ``stopped`` once the drain is over, after releasing the cloud's agent."""
        while not stopped.is_set():
            await asyncio.sleep(WATCH_INTERVAL_S)
            if self.started is None:
                continue
            rooms_left = self.rooms_left()
            elapsed = time.monotonic() - self.started
            if rooms_left == 0 or elapsed > self.timeout_seconds:
                log.info("drain finished after %.1f s (%d rooms left)", elapsed, rooms_left)
                if agent is not None:
                    await agent.release()
                stopped.set()
