"""The settings database as deployed: writes on the primary reach the replica, which outlives it."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from rtcfleet.servers import ReplicatedPostgres

REPLICATION_WAIT_S = 30.0


async def _wait_for_row(dsn: str, key: str, deadline: float) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        while time.monotonic() < deadline:
            value = await conn.fetchval("SELECT value FROM probe WHERE key = $1", key)
            if value is not None:
                return str(value)
            await asyncio.sleep(0.05)
        return None
    finally:
        await conn.close()


async def test_replica_serves_primary_writes_and_outlives_it(
    postgres_cluster: ReplicatedPostgres,
) -> None:
    primary, replica = postgres_cluster.primary, postgres_cluster.replicas[0]
    conn = await asyncpg.connect(primary.dsn)
    await conn.execute("CREATE TABLE probe (key text PRIMARY KEY, value text NOT NULL)")
    await conn.execute("INSERT INTO probe VALUES ('bitrate', '1500000')")
    await conn.close()

    deadline = time.monotonic() + REPLICATION_WAIT_S
    assert await _wait_for_row(replica.dsn, "bitrate", deadline) == "1500000"

    replica_conn = await asyncpg.connect(replica.dsn)
    assert await replica_conn.fetchval("SELECT pg_is_in_recovery()") is True
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await replica_conn.execute("INSERT INTO probe VALUES ('x', 'y')")
    await replica_conn.close()

    primary.kill()
    with pytest.raises(OSError):
        await asyncpg.connect(primary.dsn, timeout=2)

    # the replica keeps answering reads with the last replicated state
    conn = await asyncpg.connect(replica.dsn)
    assert await conn.fetchval("SELECT value FROM probe WHERE key = 'bitrate'") == "1500000"
    await conn.close()


async def test_promoted_replica_accepts_writes(postgres_cluster: ReplicatedPostgres) -> None:
    primary, replica = postgres_cluster.primary, postgres_cluster.replicas[0]
    primary.kill()
    replica.promote()
    conn = await asyncpg.connect(replica.dsn)
    assert await conn.fetchval("SELECT pg_is_in_recovery()") is False
    await conn.execute("CREATE TABLE after_failover (id int)")
    await conn.execute("INSERT INTO after_failover VALUES (1)")
    assert await conn.fetchval("SELECT count(*) FROM after_failover") == 1
    await conn.close()
