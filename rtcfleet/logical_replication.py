"""The settings path across clouds: a publication on the writer, a subscription per reader.

Within a cloud, read servers are physical streaming replicas of the writer; a region in another
cloud reads from its own server, a logical-replication subscriber of the writer's publication
over the private network between clouds. These functions keep that subscription right, and
are idempotent so a reconciler can run them on every tick:

- ``follow_writer`` makes the subscription stream from the writer it is given. After a
  failover the old writer's slot is gone with it (Postgres 16 does not carry slots to a
  promoted standby), so the subscription is detached from its slot, dropped and created anew
  against the new writer, copying the tables again. The subscriber's tables replace a row on
  an insert of an existing key (a trigger that fires for the apply workers too), so that copy
  lands over the rows the region already serves instead of failing on them or emptying the
  table first, and readers never see a settings table without its rows.
- ``add_column`` / ``drop_column`` give a schema change as steps in the order that keeps the
  subscription working (``apply_schema_change`` runs them):
  logical replication sends rows, not DDL, and an apply worker stops on a column its table
  lacks, so an added column reaches subscribers before the writer, and a dropped one leaves
  the writer first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from infra.spec import settings_subscription
from rtcfleet import settings_store

PUBLICATION = settings_store.PUBLICATION
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_REPLACE_FUNCTION = "rtcfleet_replace_on_insert"
_REPLACE_TRIGGER = "rtcfleet_replace_on_insert"


class SubscriptionError(ValueError):
    """A subscription or schema change that cannot be made as asked; nothing was changed."""


def subscription_name(region: str) -> str:
    """A valid subscription (and replication slot) name for a region: lower case, ``_``."""
    name = settings_subscription(region)
    if not _NAME.match(name):
        raise SubscriptionError(f"region {region!r} gives no valid subscription name")
    return name


def writer_conninfo(
    host: str, port: int, *, user: str, dbname: str, application_name: str, **extra: str
) -> str:
    """A libpq key/value connection string, as ``CREATE SUBSCRIPTION`` stores it."""
    fields = {
        "host": host,
        "port": str(port),
        "user": user,
        "dbname": dbname,
        "application_name": application_name,
    }
    fields |= extra
    return " ".join(f"{key}={_conninfo_value(value)}" for key, value in fields.items())


def _conninfo_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def prepare_subscriber(conn: asyncpg.Connection) -> None:
    """The settings tables, each replacing a row on an insert of a key it already holds."""
    await settings_store.ensure_schema(conn, publish=False)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _REPLACE_FUNCTION)
        await conn.execute(
            f"""
            CREATE OR REPLACE FUNCTION {_REPLACE_FUNCTION}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                EXECUTE format('DELETE FROM %I.%I WHERE %I = $1.%I',
                               TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[0])
                USING NEW;
                RETURN NEW;
            END $$"""
        )
        for table, key in settings_store.REPLICATED_TABLES.items():
            await conn.execute(
                f"CREATE OR REPLACE TRIGGER {_REPLACE_TRIGGER} BEFORE INSERT ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {_REPLACE_FUNCTION}('{key}')"
            )
            # ALWAYS: apply and table-sync workers run as replicas, where plain triggers sleep
            await conn.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {_REPLACE_TRIGGER}")


@dataclass
class SubscriptionState:
    name: str
    conninfo: str | None
    enabled: bool
    # the apply worker runs (it is connected to the writer or trying to)
    worker_running: bool
    tables_ready: bool


async def subscription_state(conn: asyncpg.Connection, name: str) -> SubscriptionState:
    row = await conn.fetchrow(
        "SELECT s.oid, s.subconninfo, s.subenabled, "
        "EXISTS (SELECT 1 FROM pg_stat_subscription w "
        "        WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL) AS running, "
        "NOT EXISTS (SELECT 1 FROM pg_subscription_rel r "
        "            WHERE r.srsubid = s.oid AND r.srsubstate <> 'r') AS ready "
        "FROM pg_subscription s WHERE s.subname = $1",
        name,
    )
    if row is None:
        return SubscriptionState(name, None, False, False, False)
    return SubscriptionState(
        name, row["subconninfo"], row["subenabled"], row["running"], row["ready"]
    )


async def follow_writer(
    conn: asyncpg.Connection,
    name: str,
    conninfo: str,
    writer: asyncpg.Connection | None = None,
) -> str:
    """Make subscription ``name`` on this server stream from the writer at ``conninfo``.

    ``conninfo`` may list several hosts with ``target_session_attrs=read-write``, so it
    finds a promoted writer by itself; ``writer`` (a connection to the current writer) tells
    whether the subscription's slot is there, and when it is not (a new writer) the
    subscription is made anew. Returns ``kept``, ``created``, or ``re-pointed`` (the old
    subscription dropped without touching its slot, which died with the old writer).
    Callers on several machines may race: a session lock on the subscriber serializes them.
    """
    if not _NAME.match(name):
        raise SubscriptionError(f"{name!r} is not a valid subscription name")
    await prepare_subscriber(conn)
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", name)
    try:
        return await _follow_writer(conn, name, conninfo, writer)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", name)


async def has_slot(writer: asyncpg.Connection, name: str) -> bool:
    return bool(
        await writer.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", name
        )
    )


async def _follow_writer(
    conn: asyncpg.Connection, name: str, conninfo: str, writer: asyncpg.Connection | None
) -> str:
    state = await subscription_state(conn, name)
    slot_there = writer is None or await has_slot(writer, name)
    if state.conninfo == conninfo and state.enabled and slot_there:
        return "kept"
    action = "created"
    if state.conninfo is not None:
        action = "re-pointed"
        await conn.execute(f"ALTER SUBSCRIPTION {name} DISABLE")
        await conn.execute(f"ALTER SUBSCRIPTION {name} SET (slot_name = NONE)")
        await conn.execute(f"DROP SUBSCRIPTION {name}")
    literal = await conn.fetchval("SELECT quote_literal($1)", conninfo)
    await conn.execute(
        f"CREATE SUBSCRIPTION {name} CONNECTION {literal} PUBLICATION {PUBLICATION} "
        "WITH (copy_data = true)"
    )
    return action


WRITER = "writer"
SUBSCRIBERS = "subscribers"


@dataclass(frozen=True)
class SchemaStep:
    """One statement of a schema change, and where it runs (physical replicas follow the
    writer by themselves)."""

    on: str
    sql: str


def add_column(table: str, column: str, definition: str) -> list[SchemaStep]:
    """Subscribers first: the writer's rows carry the column only once every apply side has it."""
    _check_table_column(table, column)
    sql = f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}"
    return [SchemaStep(SUBSCRIBERS, sql), SchemaStep(WRITER, sql)]


def drop_column(table: str, column: str) -> list[SchemaStep]:
    """The writer first: subscribers may drop a column only once no row carries it."""
    _check_table_column(table, column)
    if column == settings_store.REPLICATED_TABLES[table]:
        raise SubscriptionError(f"{table}.{column} is the primary key replication matches on")
    sql = f"ALTER TABLE {table} DROP COLUMN IF EXISTS {column}"
    return [SchemaStep(WRITER, sql), SchemaStep(SUBSCRIBERS, sql)]


async def apply_step(
    step: SchemaStep, writer: asyncpg.Connection, subscribers: list[asyncpg.Connection]
) -> None:
    for conn in [writer] if step.on == WRITER else subscribers:
        await conn.execute(step.sql)


async def apply_schema_change(
    steps: list[SchemaStep], writer: asyncpg.Connection, subscribers: list[asyncpg.Connection]
) -> None:
    """Run a change's steps in their order; rows keep flowing throughout."""
    for step in steps:
        await apply_step(step, writer, subscribers)


def _check_table_column(table: str, column: str) -> None:
    if table not in settings_store.REPLICATED_TABLES:
        raise SubscriptionError(
            f"{table!r} is not a replicated settings table "
            f"({', '.join(settings_store.REPLICATED_TABLES)})"
        )
    if not _NAME.match(column):
        raise SubscriptionError(f"{column!r} is not a valid column name")


async def writer_lag(conn: asyncpg.Connection) -> dict[str, dict[str, float | str]]:
    """Every reader streaming from this writer, by application name: physical replicas and
    subscriptions alike, with the WAL bytes it has not replayed (or applied) yet."""
    rows = await conn.fetch(
        "SELECT application_name, state, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS bytes, "
        "EXTRACT(EPOCH FROM COALESCE(replay_lag, interval '0')) AS seconds, "
        "EXISTS (SELECT 1 FROM pg_replication_slots s "
        "        WHERE s.active_pid = r.pid AND s.slot_type = 'logical') AS logical "
        "FROM pg_stat_replication r"
    )
    return {
        row["application_name"]: {
            "kind": "logical" if row["logical"] else "physical",
            "state": row["state"],
            "bytes": float(row["bytes"] or 0),
            "seconds": float(row["seconds"] or 0),
        }
        for row in rows
    }
