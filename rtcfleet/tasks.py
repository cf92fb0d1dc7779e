"""Ending background tasks at shutdown, even those that do not end when first cancelled.

A cancel can be lost: under Python 3.11, ``asyncio.wait_for`` returns its result when a cancel
lands as the awaited call completes (redis-py sends every command through it once a socket
timeout is set), and the cancelled loop goes on to its next round. A shutdown that cancels
once and awaits would then wait forever; this one cancels again until the task ends, for at
most ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("rtcfleet.tasks")

# how often a task that is still running is cancelled again
RECANCEL_EVERY_S = 0.1


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[object]], timeout: float
) -> set[asyncio.Task[object]]:
    """Cancel ``tasks`` until each has ended or ``timeout`` has passed; returns those still
    running (logged), which the caller leaves behind rather than wait on."""
    given = list(tasks)
    running = {task for task in given if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while running and loop.time() < deadline:
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(
            running, timeout=min(RECANCEL_EVERY_S, max(deadline - loop.time(), 0.0))
        )
    for task in given:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a loop's failure at shutdown is no news
    for task in running:
        log.error("task %s did not end within %.0f s of being cancelled", task.get_name(), timeout)
    return running
