"""The local fleet's settings path: which server each region reads, and following a new writer.

A region in the home region's cloud reads a physical streaming replica of the writer; a region
in another cloud reads its own server, a logical-replication subscriber. After a failover
every surviving reader follows the promoted writer: a replica by a new ``primary_conninfo``
and a reload (it follows the new timeline when it had not replayed past the promotion point),
or, when it does not stream from the new writer in time, by a fresh base backup on the same
port. A subscriber's connection string lists every server that can be the writer, so it
finds a promoted one by itself, and the region's gateways (their reconciler,
``gateway_node.replication``) make the subscription anew on it: the fleet only waits for that.

These run from synchronous fleet code (or a thread of it), never inside an event loop.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from rtcfleet import logical_replication, settings_store
from rtcfleet.servers import PostgresServer
from rtcfleet.servers.postgres import SUPERUSER

PHYSICAL = "physical"
LOGICAL = "logical"
REPOINT_TIMEOUT_S = 10.0

T = TypeVar("T")


def _on(server: PostgresServer, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def run() -> T:
        conn = await asyncpg.connect(server.dsn, timeout=5)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def conninfo(writer: PostgresServer, application_name: str) -> str:
    return logical_replication.writer_conninfo(
        writer.bind.address,
        writer.port,
        user=SUPERUSER,
        dbname="postgres",
        application_name=application_name,
    )


def stream_from(replica: PostgresServer, writer: PostgresServer, application_name: str) -> None:
    """Point a running replica at ``writer`` (``primary_conninfo`` is reloadable)."""
    info = conninfo(writer, application_name)

    async def work(conn: asyncpg.Connection) -> None:
        literal = await conn.fetchval("SELECT quote_literal($1)", info)
        await conn.execute(f"ALTER SYSTEM SET primary_conninfo = {literal}")
        await conn.execute("SELECT pg_reload_conf()")

    _on(replica, work)


def streams_from(replica: PostgresServer, writer: PostgresServer) -> bool:
    async def work(conn: asyncpg.Connection) -> bool:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver "
                "WHERE status = 'streaming' AND sender_port = $1)",
                writer.port,
            )
        )

    try:
        return _on(replica, work)
    except (OSError, asyncpg.PostgresError):
        return False


def follow_physical(
    replica: PostgresServer,
    writer: PostgresServer,
    application_name: str,
    timeout: float = REPOINT_TIMEOUT_S,
) -> str:
    """Make ``replica`` stream from ``writer``; ``re-pointed`` or ``re-initialized``."""
    stream_from(replica, writer, application_name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if streams_from(replica, writer):
            return "re-pointed"
        time.sleep(0.1)
    # it had replayed WAL the new writer never got (or lost its way): copy the writer again
    replica.kill()
    shutil.rmtree(replica.datadir, ignore_errors=True)
    replica.init_replica_of(writer).start()
    stream_from(replica, writer, application_name)
    return "re-initialized"


def new_subscriber(
    server: PostgresServer, writer: PostgresServer, region: str, writer_dsn: str
) -> str:
    """Start ``server`` as a fresh subscriber of the settings publication, reaching the writer
    through ``writer_dsn`` (what the region's gateways use, so their reconciler agrees)."""
    server.init_primary().start()
    name = logical_replication.subscription_name(region)

    async def publish(conn: asyncpg.Connection) -> None:
        await settings_store.ensure_schema(conn)

    _on(writer, publish)
    return _on(server, lambda conn: logical_replication.follow_writer(conn, name, writer_dsn))


def subscribed(writer: PostgresServer, region: str) -> bool:
    """The region's subscription streams from ``writer``: its slot there is in use."""
    name = logical_replication.subscription_name(region)

    async def work(conn: asyncpg.Connection) -> bool:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_replication_slots "
                "WHERE slot_name = $1 AND active)",
                name,
            )
        )

    try:
        return _on(writer, work)
    except (OSError, asyncpg.PostgresError):
        return False


def writer_lag(writer: PostgresServer) -> dict[str, dict[str, float | str]]:
    return _on(writer, logical_replication.writer_lag)


def staleness(server: PostgresServer) -> float | None:
    """Seconds the server's heartbeat row trails the writer's clock; None when unreadable."""
    try:
        return _on(server, settings_store.staleness)
    except (OSError, asyncpg.PostgresError):
        return None
