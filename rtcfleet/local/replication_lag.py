"""How far the local fleet's settings replicas trail the writer, read with Postgres' own views.

Drills read these around a failover: bytes and seconds of WAL not yet replayed (as the writer
sees its streams), and what the standby itself lacks, read on the standby so a standby that
stopped streaming still shows it.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from rtcfleet.servers import PostgresServer


async def replication_lag(
    primary: PostgresServer, standby: PostgresServer | None
) -> dict[str, float]:
    """WAL bytes and seconds the streaming replicas have not replayed, their count, and with a
    ``standby``, the bytes it lacks (``standby_bytes``)."""
    conn = await asyncpg.connect(primary.dsn, timeout=3)
    try:
        rows = await conn.fetch(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS bytes, "
            "EXTRACT(EPOCH FROM COALESCE(replay_lag, interval '0')) AS seconds "
            "FROM pg_stat_replication"
        )
        current = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
    finally:
        await conn.close()
    lag = {
        "bytes": max((float(r["bytes"] or 0) for r in rows), default=0.0),
        "seconds": max((float(r["seconds"] or 0) for r in rows), default=0.0),
        "streaming_replicas": float(len(rows)),
    }
    if standby is not None:
        replica = await asyncpg.connect(standby.dsn, timeout=3)
        try:
            behind = await replica.fetchval(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())", current
            )
        finally:
            await replica.close()
        lag["standby_bytes"] = max(float(behind or 0), 0.0)
    return lag


async def wait_replayed(primary: PostgresServer, standby: PostgresServer, timeout: float) -> bool:
    """Wait until ``standby`` has replayed the primary's WAL as of now; False at the timeout."""
    conn = await asyncpg.connect(primary.dsn, timeout=3)
    try:
        target = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
    finally:
        await conn.close()
    replica = await asyncpg.connect(standby.dsn, timeout=3)
    try:
        deadline = time.monotonic() + timeout
        while not await replica.fetchval(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)", target
        ):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True
    finally:
        await replica.close()
