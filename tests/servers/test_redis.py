"""A region's Redis: Sentinel promotes the replica when the primary dies, and clients follow."""

from __future__ import annotations

import time

import pytest
import redis
from redis.sentinel import Sentinel

from rtcfleet.servers import RedisServer, SentinelRedis
from rtcfleet.servers.redis import SENTINEL_MASTER_NAME

FAILOVER_WAIT_S = 20.0


def test_standalone_server_round_trip(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.set("foundation:probe", "ok", ex=30)
    assert client.get("foundation:probe") == b"ok"
    client.close()


def test_sentinel_promotes_replica_and_client_writes_to_it(sentinel_redis: SentinelRedis) -> None:
    sentinel = Sentinel(sentinel_redis.sentinels, socket_timeout=0.5)
    primary = sentinel.master_for(SENTINEL_MASTER_NAME, socket_timeout=0.5)
    primary.set("session:1", "before")
    old_port = sentinel_redis.primary.port
    assert sentinel.discover_master(SENTINEL_MASTER_NAME)[1] == old_port

    sentinel_redis.primary.kill()
    killed_at = time.monotonic()

    new_port = old_port
    while new_port == old_port:
        if time.monotonic() - killed_at > FAILOVER_WAIT_S:
            pytest.fail("Sentinel did not promote the replica")
        time.sleep(0.1)
        try:
            new_port = sentinel.discover_master(SENTINEL_MASTER_NAME)[1]
        except redis.sentinel.MasterNotFoundError:
            continue
    print(f"sentinel failover took {time.monotonic() - killed_at:.2f} s")
    assert new_port == sentinel_redis.replica.port

    # the same client object reconnects through Sentinel to the promoted replica
    deadline = time.monotonic() + FAILOVER_WAIT_S
    while True:
        try:
            primary.set("session:1", "after")
            break
        except (redis.ConnectionError, redis.ReadOnlyError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert primary.get("session:1") == b"after"
    promoted = redis.Redis(port=sentinel_redis.replica.port)
    assert promoted.info("replication")["role"] == "master"
    assert promoted.get("session:1") == b"after"
    promoted.close()
