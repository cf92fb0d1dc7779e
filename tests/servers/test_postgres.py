"""The settings database as deployed: writes on the primary reach the replica, which outlives it."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from rtcfleet.servers import ReplicatedPostgres

REPLICATION_WAIT_S = 30.0


async def _wait_for_replay(dsn: str, lsn: str, deadline: float) -> bool:
    """Wait until the replica has replayed up to the primary's LSN: reading the table before
    then can fail because the replica has not yet replayed its creation."""
    conn = await asyncpg.connect(dsn)
    try:
        while time.monotonic() < deadline:
            if await conn.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", lsn):
                return True
            await asyncio.sleep(0.05)
        return False
    finally:
        await conn.close()


async def test_replica_serves_primary_writes_and_outlives_it(
    postgres_cluster: ReplicatedPostgres,
) -> None:
    primary, replica = postgres_cluster.primary, postgres_cluster.replicas[0]
    conn = await asyncpg.connect(primary.dsn)
    await conn.execute("CREATE TABLE probe (key text PRIMARY KEY, value text NOT NULL)")
    await conn.execute("INSERT INTO probe VALUES ('bitrate', '1500000')")
    written = str(await conn.fetchval("SELECT pg_current_wal_flush_lsn()::text"))
    await conn.close()

    deadline = time.monotonic() + REPLICATION_WAIT_S
    assert await _wait_for_replay(replica.dsn, written, deadline)

    replica_conn = await asyncpg.connect(replica.dsn)
    value = await replica_conn.fetchval("SELECT value FROM probe WHERE key = 'bitrate'")
    await replica_conn.close()
    assert value == "1500000"

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
