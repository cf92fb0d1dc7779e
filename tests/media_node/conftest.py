"""A room of real aiortc client peers around one in-process SFU, signaling passed in memory."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from media_node.settings import MediaNodeSettings
from media_node.sfu import Sfu, SfuConfig
from media_node.supervisor import Supervisor
from media_node.worker_pool import WorkerHandle
from rtcfleet.client.peer import ClientPeer
from rtcfleet.servers import RedisServer

ROOM = "room-1"


def offline_node_settings(redis_url: str = "redis://127.0.0.1:1", **more: Any) -> MediaNodeSettings:
    """A media node's settings whose gateways and settings database cannot be reached: for
    tests of the node's parts on a real Redis (or none)."""
    return MediaNodeSettings(
        node_id=f"media-{uuid.uuid4().hex[:6]}",
        gateway_urls=["http://127.0.0.1:1"],
        cluster_secret="c" * 20,
        redis_url=redis_url,
        settings_dsn="postgresql://127.0.0.1:1/x",
        workers=1,
        **more,
    )


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Conference:
    def __init__(self, config: SfuConfig | None = None) -> None:
        # the peers live on loopback, as the SFU does: their candidates name it
        config = config or SfuConfig()
        config.local_candidates = True
        self.sfu = Sfu(config, self._on_event)
        self.peers: dict[str, ClientPeer] = {}
        self.events: list[tuple[str, str, str, dict[str, Any]]] = []
        self.errors: list[BaseException] = []
        self._tasks: list[asyncio.Task[None]] = []

    def _on_event(self, room: str, participant: str, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((room, participant, kind, payload))
        if kind == "subscriber_offer" and participant in self.peers:
            self._tasks.append(asyncio.ensure_future(self._answer(room, participant, payload)))

    async def _answer(self, room: str, participant: str, payload: dict[str, Any]) -> None:
        peer = self.peers.get(participant)
        if peer is None:
            return
        try:
            answer = await peer.answer_subscriber_offer(payload["sdp"])
            await self.sfu.subscriber_answer(room, participant, answer)
        except Exception as exc:  # surfaced by check_errors()
            self.errors.append(exc)

    async def add(
        self, name: str, *, publish: bool = True, subscribe: bool = True, **peer: Any
    ) -> ClientPeer:
        client = ClientPeer(name, video=publish, audio=publish, **peer)
        self.peers[name] = client
        await self.sfu.join(ROOM, name, can_publish=publish, can_subscribe=subscribe)
        if publish:
            answer = await self.sfu.publish_offer(ROOM, name, await client.create_publish_offer())
            await client.apply_publish_answer(answer)
        return client

    async def remove(self, name: str) -> None:
        client = self.peers.pop(name)
        await self.sfu.leave(ROOM, name)
        await client.close()

    def check_errors(self) -> None:
        assert not self.errors, self.errors

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.sfu.close()
        for client in self.peers.values():
            await client.close()


@pytest.fixture
async def conference() -> AsyncIterator[Callable[..., Conference]]:
    made: list[Conference] = []

    def make(config: SfuConfig | None = None) -> Conference:
        made.append(Conference(config))
        return made[-1]

    yield make
    for conf in made:
        await conf.close()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


def queueing_worker() -> WorkerHandle:
    """A worker handle with no process: it only queues the commands it is given."""
    return WorkerHandle(index=0, process=multiprocessing.Process(), conn=None)  # type: ignore[arg-type]


def queueing_node(redis: aioredis.Redis, redis_url: str) -> tuple[Supervisor, WorkerHandle]:
    """A node's bus and pool on a real Redis, with one worker that only queues commands."""
    supervisor = Supervisor(offline_node_settings(redis_url))
    supervisor.bus.attach(supervisor.pool, redis)
    handle = queueing_worker()
    supervisor.pool.workers.append(handle)
    return supervisor, handle
