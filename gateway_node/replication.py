"""How fresh the region's copy of the settings is, and the writer's heartbeat that says so.

Every gateway stamps the writer's heartbeat row each second (through the read/write pool it
already holds) and reads the row back from its region's copy, the server its media nodes read:
the difference is the region's replication lag, the same figure for a streaming replica and
for a logical subscriber in another cloud. The last reading is kept in memory, so ``/stats``,
the console and ``/metrics`` answer without touching a database.

Where the region's copy is a subscriber, the gateways are also its reconciler: each tick they
check that the subscription streams from the writer their own pool reaches (its slot exists
there) and make it anew when it does not, as after a failover. The stacks deploy it by naming
the subscription in the gateways' settings; no deploy has to run when the writer moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import asyncpg
from pydantic import SecretStr

from gateway_node.metrics import GatewayMetrics
from rtcfleet import logical_replication, settings_store

log = logging.getLogger("rtcfleet.gateway.replication")

INTERVAL_S = 1.0
CONNECT_TIMEOUT_S = 2.0


@dataclass
class RegionCopy:
    """The region's settings copy as last seen: how it replicates, whether it is connected to
    the writer, and how many seconds it trails it (None when unknown)."""

    kind: str = "unknown"
    connected: bool = False
    lag_seconds: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


async def read_region_copy(conn: asyncpg.Connection) -> RegionCopy:
    if await conn.fetchval("SELECT pg_is_in_recovery()"):
        kind = "physical"
        connected = bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"
            )
        )
    elif await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_subscription)"):
        kind = "logical"
        connected = bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_subscription "
                "WHERE relid IS NULL AND pid IS NOT NULL AND received_lsn IS NOT NULL)"
            )
        )
    else:
        kind, connected = "writer", True
    return RegionCopy(kind, connected, await settings_store.staleness(conn))


class SettingsReplication:
    def __init__(
        self,
        region: str,
        replica_dsn: SecretStr | None,
        writer: Callable[[], asyncpg.Pool],
        metrics: GatewayMetrics,
        *,
        subscription: str | None = None,
        writer_conninfo: SecretStr | None = None,
    ) -> None:
        self.region = region
        self.replica_dsn = replica_dsn
        self.writer = writer
        self.metrics = metrics
        self.subscription = subscription
        self.writer_conninfo = writer_conninfo
        self.last = RegionCopy()
        self.last_subscription_action: str | None = None

    async def run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(INTERVAL_S)

    async def tick(self) -> None:
        try:
            async with self.writer().acquire(timeout=CONNECT_TIMEOUT_S) as conn:
                await settings_store.beat(conn)
                if self.replica_dsn is not None:
                    try:
                        await self.reconcile(conn)
                    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                        log.warning("settings subscription not reconciled: %s", exc)
        except (TimeoutError, ConnectionError, OSError, asyncpg.PostgresError) as exc:
            log.debug("heartbeat not written: %s", exc)
        if self.replica_dsn is None:
            return
        try:
            conn = await asyncpg.connect(
                self.replica_dsn.get_secret_value(), timeout=CONNECT_TIMEOUT_S
            )
            try:
                self.last = await read_region_copy(conn)
            finally:
                await conn.close()
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            self.last = RegionCopy(self.last.kind, False, None, str(exc))
        lag = self.last.lag_seconds
        self.metrics.settings_lag.labels(self.region, self.last.kind).set(
            float("nan") if lag is None else lag
        )
        self.metrics.settings_connected.labels(self.region, self.last.kind).set(
            1 if self.last.connected else 0
        )

    async def reconcile(self, writer: asyncpg.Connection) -> None:
        """Keep the region's subscription on the writer ``writer`` is connected to."""
        if self.subscription is None or self.writer_conninfo is None:
            return
        if await logical_replication.has_slot(writer, self.subscription):
            return
        assert self.replica_dsn is not None
        subscriber = await asyncpg.connect(
            self.replica_dsn.get_secret_value(), timeout=CONNECT_TIMEOUT_S
        )
        try:
            action = await logical_replication.follow_writer(
                subscriber,
                self.subscription,
                self.writer_conninfo.get_secret_value(),
                writer,
            )
        finally:
            await subscriber.close()
        self.last_subscription_action = action
        log.info("settings subscription %s: %s", self.subscription, action)
