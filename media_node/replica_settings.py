"""The platform settings a media node applies, read from its region's read-only replica.

The node reads on a cadence and keeps its last good copy when the replica is unreachable: the
settings database is never on the call path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg
from pydantic import SecretStr

from rtcfleet import settings_store
from rtcfleet.settings_store import PlatformSettings

log = logging.getLogger("rtcfleet.media")


class ReplicaSettings:
    def __init__(
        self,
        dsn: SecretStr,
        refresh_seconds: float,
        on_change: Callable[[PlatformSettings], None] = lambda _: None,
    ) -> None:
        """``on_change``: called with the new settings whenever a read finds them changed."""
        self.dsn = dsn
        self.refresh_seconds = refresh_seconds
        self.on_change = on_change
        self.platform = PlatformSettings()
        self.loaded_at: float | None = None

    async def refresh(self) -> bool:
        """Read settings from the replica; keep the last good copy when it is unreachable."""
        try:
            conn = await asyncpg.connect(self.dsn.get_secret_value(), timeout=3)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            log.warning("settings replica unreachable, keeping last copy: %s", exc)
            return False
        try:
            platform = await settings_store.load(conn, fallback=self.platform)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("settings read failed, keeping last copy: %s", exc)
            return False
        finally:
            await conn.close()
        self.loaded_at = time.time()
        if platform != self.platform:
            self.platform = platform
            log.info("settings changed: %s", platform.model_dump())
            self.on_change(platform)
        return True

    async def run(self, stopped: asyncio.Event) -> None:
        while not stopped.is_set():
            await asyncio.sleep(self.refresh_seconds)
            await self.refresh()
