"""Platform settings that operators change at run time, stored in Postgres.

The gateway writes them through the read/write node; media nodes read them from their
region's read-only copy (a streaming replica, or across clouds a logical-replication
subscriber). One row per setting keeps a write from clobbering the others.

Logical replication carries only tables with a primary key and types both sides know, and no
DDL: every table here has a primary key and plain types, and a schema change goes through
``rtcfleet.servers.logical.apply_schema_change`` (subscribers first when it adds a column).
The heartbeat row, rewritten every second by the gateways, is how every region measures how
far its copy trails the writer, whichever way it replicates.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infra.spec import SETTINGS_PUBLICATION

log = logging.getLogger("rtcfleet.settings")

TABLE = "rtcfleet_settings"
HEARTBEAT_TABLE = "rtcfleet_heartbeat"
# every table the settings path replicates, with its primary-key column
REPLICATED_TABLES = {TABLE: "key", HEARTBEAT_TABLE: "id"}
# what subscribers in other clouds subscribe to
PUBLICATION = SETTINGS_PUBLICATION
AUDIO_CODECS = frozenset({"opus"})
VIDEO_CODECS = frozenset({"VP8", "H264"})

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key text PRIMARY KEY,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE} (
    id int PRIMARY KEY CHECK (id = 1),
    at timestamptz NOT NULL
)
"""


class PlatformSettings(BaseModel):
    """What an operator tunes without a deploy."""

    model_config = ConfigDict(extra="forbid")

    max_video_bitrate_bps: int = Field(default=2_500_000, ge=50_000, le=50_000_000)
    max_participants_per_room: int = Field(default=50, ge=2, le=10_000)
    allowed_codecs: list[str] = Field(default_factory=lambda: ["VP8", "opus"])

    @field_validator("allowed_codecs")
    @classmethod
    def _one_audio_one_video(cls, codecs: list[str]) -> list[str]:
        unknown = set(codecs) - AUDIO_CODECS - VIDEO_CODECS
        if unknown:
            raise ValueError(f"unknown codecs {sorted(unknown)}")
        if not set(codecs) & AUDIO_CODECS or not set(codecs) & VIDEO_CODECS:
            raise ValueError("needs at least one audio and one video codec")
        return list(dict.fromkeys(codecs))


class SettingsError(ValueError):
    """A settings write that would store an invalid value; nothing was written."""


async def ensure_schema(conn: asyncpg.Connection, *, publish: bool = True) -> None:
    """The tables, and on the writer (``publish``) the publication other clouds subscribe to."""
    # gateways start together: serialize the CREATE so none trips over another's
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", TABLE)
        await conn.execute(SCHEMA)
        if publish and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", PUBLICATION
        ):
            tables = ", ".join(REPLICATED_TABLES)
            await conn.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE {tables}")


async def load(
    conn: asyncpg.Connection, fallback: PlatformSettings | None = None
) -> PlatformSettings:
    """Stored values over defaults; a database without the table yields the defaults.

    A stored value that does not validate (written around the API, or by an older release) is
    skipped and logged, keeping ``fallback``'s value for it (the last good copy) or else the
    default: one bad row must not stop media nodes or the admin API that repairs it.
    """
    good = PlatformSettings().model_dump()
    try:
        rows = await conn.fetch(f"SELECT key, value FROM {TABLE} ORDER BY key")
    except asyncpg.UndefinedTableError:
        return PlatformSettings()
    known = set(PlatformSettings.model_fields)
    for row in rows:
        key = row["key"]
        if key not in known:
            continue
        value = json.loads(row["value"])
        try:
            PlatformSettings.model_validate(good | {key: value})
        except ValidationError as exc:
            kept = getattr(fallback, key) if fallback is not None else good[key]
            log.warning(
                "stored setting %s=%r is invalid, keeping %r: %s",
                key,
                value,
                kept,
                exc.errors()[0]["msg"],
            )
            value = kept
        good[key] = value
    return PlatformSettings.model_validate(good)


async def delete(conn: asyncpg.Connection, key: str) -> PlatformSettings:
    """Remove a stored setting so its default applies again (also clears a bad stored value)."""
    if key not in PlatformSettings.model_fields:
        raise SettingsError(f"{key}: unknown setting")
    await conn.execute(f"DELETE FROM {TABLE} WHERE key = $1", key)
    return await load(conn)


async def update(conn: asyncpg.Connection, changes: dict[str, Any]) -> PlatformSettings:
    """Validate the merged result first, then write the changed keys in one transaction."""
    async with conn.transaction():
        current = await load(conn)
        merged = current.model_dump() | changes
        try:
            new = PlatformSettings.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "settings"
            raise SettingsError(f"{field}: {first['msg']}") from None
        for key in changes:
            await conn.execute(
                f"INSERT INTO {TABLE} (key, value) VALUES ($1, $2::jsonb) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                "updated_at = clock_timestamp()",
                key,
                json.dumps(getattr(new, key)),
            )
    return new


async def beat(conn: asyncpg.Connection) -> None:
    """Stamp the writer's clock into the heartbeat row; replicas measure their lag against it."""
    await conn.execute(
        f"INSERT INTO {HEARTBEAT_TABLE} (id, at) VALUES (1, clock_timestamp()) "
        "ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at"
    )


async def staleness(conn: asyncpg.Connection) -> float | None:
    """Seconds since the newest heartbeat this server holds was written on the writer (lag plus
    up to one heartbeat interval); None before the first heartbeat arrived."""
    try:
        value = await conn.fetchval(
            f"SELECT EXTRACT(EPOCH FROM clock_timestamp() - at) FROM {HEARTBEAT_TABLE} WHERE id = 1"
        )
    except asyncpg.UndefinedTableError:
        return None
    return None if value is None else max(float(value), 0.0)
