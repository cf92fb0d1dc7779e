"""A shutdown ends loops whose first cancel was lost, and does not wait forever on one that
never ends."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from rtcfleet.tasks import cancel_and_wait


async def loses_first_cancel(ended: list[str]) -> None:
    """A loop as a lost cancel leaves it: the first cancel is gone, the next round begins."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(30)
    await asyncio.sleep(30)
    ended.append("never")


async def ends_only_when_told(told: asyncio.Event) -> None:
    while not told.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)


async def test_a_loop_that_lost_its_first_cancel_is_ended() -> None:
    ended: list[str] = []
    task = asyncio.create_task(loses_first_cancel(ended))
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], timeout=5.0) == set()
    assert task.cancelled() and ended == []


async def test_a_task_that_never_ends_is_left_behind_after_the_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    told = asyncio.Event()
    task = asyncio.create_task(ends_only_when_told(told), name="stubborn")
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], timeout=0.3) == {task}
    assert "stubborn did not end" in caplog.text
    told.set()
    task.cancel()
    await task
