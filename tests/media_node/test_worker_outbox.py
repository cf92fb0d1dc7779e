"""A worker whose supervisor falls behind keeps every message a client needs.

A room's joins make bursts of two notices per member (hundreds at once in a large room); when
the supervisor reads slower than that for a while, what waits in the worker's outbox must still
arrive, in order: a lost subscriber offer is a subscriber that never gets media.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
import uuid
from typing import Any

from media_node.sfu import SfuConfig
from media_node.worker import WORKER_OUTBOX, Worker
from rtcfleet.node_messages import AnyWorkerCommand, NodeTrickle, WorkerStop
from rtcfleet.signaling import SubscriberOffer

OFFERS = WORKER_OUTBOX + 500
LATE_LOAD_REPORTS = 5
READ_S = 20.0  # the supervisor reads for at most this long
# past the outbox's bound, with what the writer holds on its way into the pipe
BEHIND_OFFERS = WORKER_OUTBOX + 1000


async def test_offers_past_the_outbox_bound_all_arrive_in_order() -> None:
    supervisor, child = multiprocessing.Pipe()
    worker = Worker(child, SfuConfig(local_candidates=True), 10)
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(0.2)  # the worker's first load report is on its way
    # the supervisor reads nothing while the burst is made: the pipe fills, the outbox grows
    sessions = [uuid.uuid4().hex for _ in range(7)]
    for index in range(OFFERS):
        worker.to_session(sessions[index % 7], SubscriberOffer(sdp=f"offer {index}"))
    for _ in range(LATE_LOAD_REPORTS):
        worker.send_load()  # past the bound: superseded by the next one, dropped
    await asyncio.sleep(0.2)

    def read_offers() -> list[dict[str, Any]]:
        offers: list[dict[str, Any]] = []
        deadline = time.monotonic() + READ_S
        while len(offers) < OFFERS and time.monotonic() < deadline and supervisor.poll(1):
            item = supervisor.recv()
            if item["kind"] == "to_session":
                offers.append(item)
        return offers

    offers = await asyncio.to_thread(read_offers)
    supervisor.send(WorkerStop().model_dump(mode="json"))
    await asyncio.wait_for(running, 10)

    assert [o["message"]["sdp"] for o in offers] == [f"offer {i}" for i in range(OFFERS)]
    assert [o["session"] for o in offers[:8]] == [sessions[i % 7] for i in range(8)]
    # (a periodic report may also have come while the outbox was past its bound)
    assert worker.dropped >= LATE_LOAD_REPORTS


async def test_a_worker_whose_supervisor_is_behind_takes_no_command_until_it_catches_up() -> None:
    """Past its outbox's bound the worker reads no more commands (each would add answers to a
    queue the supervisor is not taking); once the supervisor reads, it takes them again."""
    supervisor, child = multiprocessing.Pipe()
    worker = Worker(child, SfuConfig(local_candidates=True), 10)
    handled: list[AnyWorkerCommand] = []
    handle = worker.handle

    async def counted(command: AnyWorkerCommand) -> None:
        handled.append(command)
        await handle(command)

    worker.handle = counted  # type: ignore[method-assign]
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.2)
        session, stray = uuid.uuid4().hex, uuid.uuid4().hex
        for index in range(BEHIND_OFFERS):
            worker.to_session(session, SubscriberOffer(sdp=f"offer {index}"))
        trickle = NodeTrickle(session=stray, room="r", target="publisher", candidate=None)
        for _ in range(5):
            supervisor.send(trickle.model_dump(mode="json"))
        await asyncio.sleep(0.5)
        assert worker.behind()
        assert handled == [], "a worker whose supervisor is behind took commands"

        def read_until_answered() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            answered = 0
            deadline = time.monotonic() + READ_S
            while answered < 5 and time.monotonic() < deadline and supervisor.poll(1):
                items.append(supervisor.recv())
                answered += items[-1].get("session") == stray
            return items

        items = await asyncio.to_thread(read_until_answered)
        supervisor.send(WorkerStop().model_dump(mode="json"))
        await asyncio.wait_for(running, 10)
    finally:
        if not running.done():  # failed: a write waiting on the pipe ends with it
            supervisor.close()
            running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert len(handled) == 5
    answers = [i["message"]["code"] for i in items if i.get("session") == stray]
    assert answers == ["not_joined"] * 5, answers
    offers = [i for i in items if i.get("session") == session]
    assert len(offers) == BEHIND_OFFERS
