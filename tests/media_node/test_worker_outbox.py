"""A worker whose supervisor falls behind keeps every message a client needs.

A room's joins make bursts of two notices per member (hundreds at once in a large room); when
the supervisor reads slower than that for a while, what waits in the worker's outbox must still
arrive, in order: a lost subscriber offer is a subscriber that never gets media.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from typing import Any

from media_node.sfu import SfuConfig
from media_node.worker import WORKER_OUTBOX, Worker
from rtcfleet.node_messages import WorkerStop
from rtcfleet.signaling import SubscriberOffer

OFFERS = WORKER_OUTBOX + 500
LATE_LOAD_REPORTS = 5
READ_S = 20.0  # the supervisor reads for at most this long


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
