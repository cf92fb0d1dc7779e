"""A burst of concurrent commands past the pool's size waits for connections, not errors."""

from __future__ import annotations

import asyncio

import pytest

from rtcfleet import redis_url
from rtcfleet.servers import RedisServer, SentinelRedis
from rtcfleet.servers.redis import SENTINEL_MASTER_NAME

# every command holds its connection for the whole BLPOP timeout, so all are in use at once
BURST = redis_url.MAX_CONNECTIONS + 44
HOLD_S = 0.3


async def burst(url: str) -> list[object]:
    redis = redis_url.connect(url)
    try:
        return await asyncio.gather(
            *(redis.blpop([f"pool-test:{i}"], timeout=HOLD_S) for i in range(BURST)),
            return_exceptions=True,
        )
    finally:
        await redis.aclose()


@pytest.mark.parametrize("kind", ["direct", "sentinel"])
async def test_a_burst_past_the_pool_waits_for_connections(
    kind: str, redis_server: RedisServer, sentinel_redis: SentinelRedis
) -> None:
    if kind == "direct":
        url = redis_server.url
    else:
        hosts = ",".join(f"{host}:{port}" for host, port in sentinel_redis.sentinels)
        url = f"{redis_url.SENTINEL_SCHEME}://{hosts}/{SENTINEL_MASTER_NAME}"
    results = await burst(url)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of {BURST} commands failed, e.g. {errors[0]!r}"
    assert results == [None] * BURST
