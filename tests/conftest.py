"""Real servers shared by the whole suite: Redis and Postgres on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from media_node import rtp_hooks
from media_node.settings import ICE_ADDRESSES_ENV
from rtcfleet.servers import RedisServer, ReplicatedPostgres, SentinelRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One standalone Redis for the session; tests isolate themselves by key prefix or flush."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[ReplicatedPostgres]:
    """A primary with one streaming replica, shared by the session: never kill it in a test."""
    cluster = ReplicatedPostgres(replicas=1).start()
    yield cluster
    cluster.remove()


@pytest.fixture
def postgres_cluster() -> Iterator[ReplicatedPostgres]:
    """A primary and replica of the test's own, for tests that stop or promote servers."""
    cluster = ReplicatedPostgres(replicas=1).start()
    yield cluster
    cluster.remove()


@pytest.fixture
def sentinel_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelRedis]:
    """Primary + replica + Sentinel of the test's own, for failover tests."""
    cluster = SentinelRedis(tmp_path_factory.mktemp("sentinel-redis")).start()
    yield cluster
    cluster.stop()


# Fixtures that start real servers, a fleet or WebRTC calls: a test using one takes seconds,
# and is marked slow without having to say so (``-m "not slow"`` leaves it out).
SLOW_FIXTURES = frozenset(
    {
        "fleet",
        "two_regions",
        "postgres_cluster",
        "sentinel_redis",
        "conference",
        "installed",
        "recording_fleet",
        "object_stores",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# Every WebRTC peer in the suite, in-process or child process, keeps its media on loopback.
os.environ[ICE_ADDRESSES_ENV] = "127.0.0.1"
rtp_hooks.restrict_host_addresses_from_environment()
