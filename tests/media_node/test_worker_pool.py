"""The supervisor's pipe to a real worker process: big batches flow, a worker's death is seen,
a worker that falls behind holds a bounded number of commands."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from media_node.publisher import MAX_MEDIA_SECTIONS
from media_node.sfu import SfuConfig
from media_node.subscriber import Subscriber
from media_node.worker import WORKER_IN_FLIGHT, WORKER_INBOX, Worker
from media_node.worker_pool import (
    WORKER_COMMAND_QUEUE,
    WORKER_STOP_TIMEOUT_S,
    WorkerHandle,
    WorkerPool,
)
from rtcfleet.node_messages import (
    NodeJoin,
    NodeLeave,
    NodePublishOffer,
    NodeSubscriberAnswer,
    NodeTrickle,
    ToSession,
    WorkerLoadReport,
    WorkerStop,
    parse_worker_event,
)
from rtcfleet.settings_store import PlatformSettings
from tests.media_node.conftest import offline_node_settings, wait_until


class Listener:
    """The node's bus as the pool sees it, recording what the workers said."""

    def __init__(self) -> None:
        self.told: list[tuple[str, dict[str, Any]]] = []
        self.lost: list[set[str]] = []
        self.emptied: list[str] = []

    def to_session(self, session: str, message: dict[str, Any]) -> None:
        self.told.append((session, message))

    def session_left(self, session: str) -> None:
        pass

    def room_empty(self, room: str) -> None:
        self.emptied.append(room)

    def rooms_lost(self, rooms: set[str]) -> None:
        self.lost.append(set(rooms))

    def answers(self, session: str) -> list[dict[str, Any]]:
        return [message for to, message in self.told if to == session]


@pytest.fixture
async def pool() -> AsyncIterator[tuple[WorkerPool, Listener]]:
    listener = Listener()
    stopped = asyncio.Event()
    settings = offline_node_settings(bind_ip="127.0.0.1")
    workers = WorkerPool(settings, PlatformSettings, listener, stopped)
    workers.start()
    try:
        await workers.wait_ready()
        yield workers, listener
    finally:
        stopped.set()
        await workers.stop()


async def offer_at_the_section_bound() -> str:
    """A publisher's offer with as many media sections as the node takes (about 24 KB; its
    answer is about 20 KB)."""
    pc = RTCPeerConnection()
    try:
        for index in range(MAX_MEDIA_SECTIONS):
            pc.addTransceiver("video" if index % 2 else "audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def joined_publisher(
    workers: WorkerPool, room: str
) -> tuple[str, WorkerHandle, dict[str, Any]]:
    """A session joined on a real worker, with a publish offer at the section bound."""
    session = uuid.uuid4().hex
    join = NodeJoin(
        session=session, room=room, identity="ann", can_publish=True, can_subscribe=True
    )
    handle = workers.worker_for(room)
    assert handle.submit(join.model_dump(mode="json"))
    offer = NodePublishOffer(session=session, room=room, sdp=await offer_at_the_section_bound())
    return session, handle, offer.model_dump(mode="json")


def hold_the_loop(seconds: float) -> None:
    """The node's loop busy with other work: it reads nothing from its workers meanwhile."""
    time.sleep(seconds)


@pytest.mark.timeout(120)
async def test_big_commands_one_way_and_big_answers_the_other_at_once_do_not_deadlock(
    pool: tuple[WorkerPool, Listener],
) -> None:
    """A side that blocked its loop on a pipe write would stop reading the other way: with
    both pipes full, each would wait for the other for ever."""
    workers, listener = pool
    session, handle, command = await joined_publisher(workers, "both-ways")
    # 300 offers of 24 KB (7 MB) in; their answers (20 KB each, 6 MB) pile up while the
    # node's loop is busy elsewhere for a moment, and 300 more offers go in behind them
    for _ in range(300):
        assert handle.submit(command)
    await asyncio.sleep(0.05)
    hold_the_loop(1.0)
    for _ in range(300):
        assert handle.submit(command)
    await wait_until(
        lambda: len(listener.answers(session)) == 600,
        30,
        f"600 answers (have {len(listener.answers(session))})",
    )
    answers = listener.answers(session)
    assert {m["type"] for m in answers} == {"publish_answer"}
    assert min(len(m["sdp"]) for m in answers) > 16 * 1024
    # the publisher leaves: the worker's count of joins matches the node's, the room goes
    assert handle.submit(NodeLeave(session=session, room="both-ways").model_dump(mode="json"))
    await wait_until(lambda: "both-ways" in listener.emptied, 30, "the room reported empty")
    assert "both-ways" not in workers.room_worker


async def test_a_worker_dying_mid_batch_is_replaced_and_the_node_serves_on(
    pool: tuple[WorkerPool, Listener],
) -> None:
    """Its rooms' sessions are told (they place their media again) and a new worker takes
    commands: never a node that heartbeats but drops every command."""
    workers, listener = pool
    room = "dying"
    session, handle, command = await joined_publisher(workers, room)
    for _ in range(300):
        assert handle.submit(command)
    await wait_until(lambda: len(listener.answers(session)) >= 20, 60, "the batch under way")
    os.kill(handle.process.pid or 0, signal.SIGKILL)
    await wait_until(lambda: handle.dead, 10, "the pool to see the worker die")
    assert listener.lost and room in listener.lost[0]
    assert room not in workers.room_worker

    # the node still serves: a fresh worker takes commands and answers them
    fresh = workers.workers[0]
    assert fresh is not handle
    await asyncio.wait_for(fresh.ready.wait(), 60)
    newcomer = uuid.uuid4().hex
    stray = NodePublishOffer(session=newcomer, room="after", sdp=command["sdp"])
    assert workers.worker_for("after").submit(stray.model_dump(mode="json"))
    await wait_until(lambda: bool(listener.answers(newcomer)), 30, "an answer from the new worker")
    assert listener.answers(newcomer)[0]["code"] == "not_joined"


async def test_a_second_join_of_one_identity_replaces_the_first_session_and_tells_it(
    pool: tuple[WorkerPool, Listener],
) -> None:
    workers, listener = pool
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    handle = workers.worker_for("twice")
    for session in (first, second):
        join = NodeJoin(
            session=session, room="twice", identity="ann", can_publish=True, can_subscribe=True
        )
        assert handle.submit(join.model_dump(mode="json"))
    await wait_until(lambda: bool(listener.answers(first)), 30, "word to the first session")
    assert listener.answers(first) == [{"type": "session_replaced"}]
    await wait_until(lambda: handle.load.room_participants.get("twice") == 1, 10, "one member")
    assert not [m for m in listener.answers(second) if m["type"] == "session_replaced"]


async def small_publish_offer() -> str:
    """A publisher offer of one audio section (about 1 KB): cheap to send, a full negotiation
    for the worker."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


@pytest.mark.timeout(120)
async def test_a_worker_behind_stops_reading_its_pipe_and_the_node_queues_or_refuses(
    pool: tuple[WorkerPool, Listener],
) -> None:
    """A worker holds a bounded number of commands: behind that, they wait in the pipe and in
    the node's bounded queue, which refuses what does not fit; every command it took is
    answered, none dropped."""
    workers, listener = pool
    room = "behind"
    session = uuid.uuid4().hex
    handle = workers.worker_for(room)
    join = NodeJoin(
        session=session, room=room, identity="ann", can_publish=True, can_subscribe=False
    )
    assert handle.submit(join.model_dump(mode="json"))
    offer = NodePublishOffer(session=session, room=room, sdp=await small_publish_offer())
    command = offer.model_dump(mode="json")
    pid = handle.process.pid or 0
    # the worker stopped: the pipe and then the node's queue fill
    os.kill(pid, signal.SIGSTOP)
    try:
        accepted = 0
        while handle.submit(command):
            accepted += 1
            if accepted % 64 == 0:
                await asyncio.sleep(0.01)  # the node's writer moves some into the pipe
        assert accepted >= WORKER_COMMAND_QUEUE
    finally:
        os.kill(pid, signal.SIGCONT)
    # running again, it takes in only what it may hold, while the rest waits in the pipe and
    # on the node's side: its load reports say the most it held at once
    reports: list[WorkerLoadReport] = []

    def reported() -> bool:
        load = handle.load
        if isinstance(load, WorkerLoadReport) and (not reports or load is not reports[-1]):
            reports.append(load)
        return len(listener.answers(session)) >= accepted

    await wait_until(reported, 90, f"{accepted} answers")
    await asyncio.sleep(1.5)  # and the report after the last one
    reported()
    peaks = [report.commands_waiting for report in reports]
    print(f"accepted {accepted}; the most commands the worker held, per report: {peaks}")
    assert max(peaks) == WORKER_INBOX + WORKER_IN_FLIGHT, peaks
    assert {m["type"] for m in listener.answers(session)} == {"publish_answer"}


@pytest.mark.timeout(90)
async def test_a_worker_that_does_not_read_its_pipe_is_killed_after_the_stop_bound() -> None:
    """The node's stop never waits on a pipe: a worker that reads takes its stop and exits on
    its own; one that does not (stopped here, its pipe full of offers) is killed after
    ``WORKER_STOP_TIMEOUT_S``, and the node's loop runs on meanwhile."""
    stopped = asyncio.Event()
    settings = offline_node_settings(bind_ip="127.0.0.1").model_copy(update={"workers": 2})
    workers = WorkerPool(settings, PlatformSettings, Listener(), stopped)
    workers.start()
    try:
        await workers.wait_ready()
        wedged, healthy = workers.workers
        sdp = await offer_at_the_section_bound()
        os.kill(wedged.process.pid or 0, signal.SIGSTOP)
        for _ in range(40):  # 1 MB of offers: the pipe is full, the node's writer waits on it
            offer = NodePublishOffer(session=uuid.uuid4().hex, room="wedged", sdp=sdp)
            assert wedged.submit(offer.model_dump(mode="json"))
        await asyncio.sleep(0.5)
        assert wedged.commands.qsize() > 0, "the pipe took every offer"
        stopped.set()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.1)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        await asyncio.wait_for(workers.stop(), WORKER_STOP_TIMEOUT_S + 30)
        took = time.monotonic() - started
        ticker.cancel()
        print(f"stop took {took:.1f} s; the loop ticked {ticks} times meanwhile")
        assert healthy.process.exitcode == 0, "the worker that reads did not stop by itself"
        assert wedged.process.exitcode == -signal.SIGKILL, wedged.process.exitcode
        assert took >= WORKER_STOP_TIMEOUT_S, "the worker was killed before its bound"
        assert ticks >= WORKER_STOP_TIMEOUT_S * 5, "the node's loop stood still during the stop"
    finally:
        for handle in workers.workers:
            if handle.process.is_alive():
                handle.process.kill()


@pytest.mark.timeout(60)
async def test_a_worker_stalled_half_way_through_a_message_does_not_stop_the_nodes_loop() -> None:
    """A worker that stops (stopped, or wedged) after the first bytes of a message: the node
    waits for the rest off its loop, which runs on meanwhile, then takes the message whole."""
    listener, stopped = Listener(), asyncio.Event()
    workers = WorkerPool(offline_node_settings(), PlatformSettings, listener, stopped)
    node_end, worker_end = multiprocessing.Pipe()
    handle = WorkerHandle(index=0, process=multiprocessing.Process(), conn=node_end)
    workers.workers.append(handle)
    workers.watch(handle)
    session = uuid.uuid4().hex
    said = ToSession(session=session, message={"type": "n", "sdp": "x" * 50_000}).model_dump()
    payload = pickle.dumps(said)
    try:
        worker_end.send(WorkerLoadReport().model_dump())
        # multiprocessing's framing: a 4-byte length, then the pickle; only part of it comes
        os.write(worker_end.fileno(), struct.pack("!i", len(payload)) + payload[:100])
        ticks = 0
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            await asyncio.sleep(0.05)
            ticks += 1
        assert ticks >= 10, f"the node's loop ran {ticks} times in 1 s"
        assert listener.told == []
        os.write(worker_end.fileno(), payload[100:])
        await wait_until(lambda: bool(listener.told), 10, "the message, once whole")
        assert listener.told == [(session, said["message"])]
        assert handle.ready.is_set(), "the message before it was lost"
    finally:
        stopped.set()
        worker_end.close()
        await wait_until(lambda: handle.dead, 10, "the pool to see the pipe end")


class WorkerOnPipe:
    """A worker's run loop in this process, driven through a real pipe as its node drives it."""

    def __init__(self) -> None:
        self.node, child = multiprocessing.Pipe()
        self.worker = Worker(child, SfuConfig(local_candidates=True), max_participants=10)
        self.running = asyncio.create_task(self.worker.run())
        self.told: list[tuple[str, dict[str, Any]]] = []
        self.events: list[dict[str, Any]] = []

    def send(self, command: Any) -> None:
        self.node.send(command.model_dump(mode="json"))

    def read(self) -> None:
        while self.node.poll():
            event = parse_worker_event(self.node.recv())
            if isinstance(event, ToSession):
                self.told.append((event.session, event.message))
            elif not isinstance(event, WorkerLoadReport):
                self.events.append(event.model_dump())

    def answers(self, session: str) -> list[dict[str, Any]]:
        self.read()
        return [message for to, message in self.told if to == session]

    async def settled(self) -> None:
        """Every command sent so far has finished."""
        await asyncio.sleep(0.1)  # read from the pipe
        await wait_until(lambda: self.worker.commands_waiting() == 0, 30, "the worker idle")
        await asyncio.sleep(0.1)  # its last messages through the pipe
        self.read()

    async def stop(self) -> None:
        self.send(WorkerStop())
        await asyncio.wait_for(self.running, 30)


def join(session: str, identity: str, room: str = "r") -> NodeJoin:
    return NodeJoin(
        session=session, room=room, identity=identity, can_publish=True, can_subscribe=True
    )


async def test_a_stale_subscriber_answer_is_ignored_without_an_error() -> None:
    """No offer outstanding (none yet, or one a newer offer or a closed connection replaced):
    the answer is renegotiation's normal course, not the client's error."""
    pipe = WorkerOnPipe()
    try:
        ann = uuid.uuid4().hex
        pipe.send(join(ann, "ann"))
        answer = NodeSubscriberAnswer(session=ann, room="r", sdp=await small_publish_offer())
        pipe.send(answer)
        await pipe.settled()
        assert pipe.answers(ann) == []
    finally:
        await pipe.stop()


async def test_sessions_that_end_without_a_leave_leave_nothing_in_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replaced sessions, commands for sessions the worker never hosted, a rejoin racing its
    room's last other member out, and a leave racing the next session of its identity in:
    the worker keeps no lock or map entry for any of them, and the newest session is still
    found by its next command."""
    close = Subscriber.close

    async def slow_close(subscriber: Subscriber) -> None:
        await asyncio.sleep(0.05)  # as closing a connected peer's transports takes a moment
        await close(subscriber)

    monkeypatch.setattr(Subscriber, "close", slow_close)
    pipe = WorkerOnPipe()
    try:
        sessions = [uuid.uuid4().hex for _ in range(10)]
        for session in sessions:  # each join of "ann" replaces the one before
            pipe.send(join(session, "ann", room="replaced"))
            stray = NodeTrickle(
                session=uuid.uuid4().hex, room="nowhere", target="publisher", candidate=None
            )
            pipe.send(stray)
        await pipe.settled()
        assert all(pipe.answers(s) == [{"type": "session_replaced"}] for s in sessions[:-1])

        # ann publishes to bob; ann rejoins (same session) as bob leaves: bob's leave is done
        # while ann's own (unpublishing, renegotiating with bob) is still under way
        ann, bob = uuid.uuid4().hex, uuid.uuid4().hex
        pipe.send(join(ann, "ann"))
        pipe.send(join(bob, "bob"))
        sdp = await small_publish_offer()
        pipe.send(NodePublishOffer(session=ann, room="r", sdp=sdp))
        await pipe.settled()
        pipe.send(join(ann, "ann"))
        pipe.send(NodeLeave(session=bob, room="r"))
        await pipe.settled()
        pipe.send(NodePublishOffer(session=ann, room="r", sdp=sdp))
        await pipe.settled()
        assert [m["type"] for m in pipe.answers(ann)][-1] == "publish_answer", pipe.answers(ann)

        # ann leaves and joins again as a new session at once (another socket, another
        # gateway): the old session's leave must not take the new session's place with it
        again = uuid.uuid4().hex
        pipe.send(NodeLeave(session=ann, room="r"))
        pipe.send(join(again, "ann"))
        await pipe.settled()
        pipe.send(NodePublishOffer(session=again, room="r", sdp=sdp))
        await pipe.settled()
        assert [m["type"] for m in pipe.answers(again)][-1] == "publish_answer", pipe.answers(again)

        census = pipe.worker.census()
        assert census["session_locks"] == census["participant_locks"] == 0, census
        assert (census["rooms"], census["members"]) == (2, 2), census  # "replaced" and "r"
        assert (census["sfu_rooms"], census["sfu_participants"]) == (2, 2), census
    finally:
        await pipe.stop()
