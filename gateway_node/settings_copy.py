"""The platform settings a gateway last read, and how old they are.

Joins never wait for the settings database: a gateway reads the settings on a cadence (from its
region's read-only replica when it has one) and serves with the last copy it read. Its age is in
``/stats`` and in ``rtcfleet_gateway_settings_age_seconds``, so an operator sees a region that has
lost its replica without any join failing for it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg

from rtcfleet import settings_store
from rtcfleet.settings_store import PlatformSettings

READ_TIMEOUT_S = 3.0


@dataclass
class SettingsCopy:
    platform: PlatformSettings = field(default_factory=PlatformSettings)
    read_at: float | None = None
    last_error: str | None = None

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the copy was read or written here; None before the first read."""
        if self.read_at is None:
            return None
        return (time.time() if now is None else now) - self.read_at

    def stored(self, platform: PlatformSettings) -> None:
        self.platform, self.read_at, self.last_error = platform, time.time(), None

    async def refresh(self, dsn: str) -> bool:
        """Read the settings; on failure keep the last copy and remember why."""
        try:
            conn = await asyncpg.connect(dsn, timeout=READ_TIMEOUT_S)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            self.last_error = f"settings database unreachable: {exc or type(exc).__name__}"
            return False
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                platform = await settings_store.load(conn)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            self.last_error = f"settings read failed: {exc or type(exc).__name__}"
            return False
        finally:
            conn.terminate()
        self.stored(platform)
        return True

    def to_json(self) -> dict[str, object]:
        age = self.age()
        return {
            "age_seconds": None if age is None else round(age, 1),
            "last_error": self.last_error,
            "values": self.platform.model_dump(),
        }
