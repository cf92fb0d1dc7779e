"""Region faults on the local fleet as drills inject them, and the writer's failover after.

A region's outage is every process of it at once: its services, its Redis, its Postgres
servers (the writer too, when it is the home region). After a promotion every surviving
region's settings copy follows the new writer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import asyncpg

from rtcfleet.local import replication
from rtcfleet.local.replication import PHYSICAL
from rtcfleet.local.topology import Region
from rtcfleet.servers import PostgresServer
from rtcfleet.servers.process import ServerProcess


def region_processes(region: Region, writer: PostgresServer | None) -> list[ServerProcess]:
    """Everything that dies with the region: its services, Redis and its Postgres servers
    (``writer``: the read/write server, when the region is home to it)."""
    processes = [s.process for s in (*region.gateways, *region.media_nodes)]
    processes += region.redis.processes()
    postgres = [region.settings_replica]
    if writer is not None:
        postgres.append(writer)
    processes += [server.process for server in postgres if server.process is not None]
    return processes


def follow_writer(regions: Iterable[Region], writer: PostgresServer) -> list[str]:
    """Point every surviving region's settings copy at ``writer``; one line per region."""
    steps = []
    for region in regions:
        server = region.settings_replica
        if server is writer or server.process is None or not server.process.running():
            continue
        started = time.monotonic()
        if region.replication == PHYSICAL:
            try:
                how = replication.follow_physical(server, writer, region.name)
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                # running but unreachable (a blackholed region): restoring the region gives it
                # a copy of the new writer
                steps.append(
                    f"{region.name}: {region.replication} copy not reached ({exc!r}); it "
                    "follows the new writer when the region is restored"
                )
                continue
        else:
            how = "re-subscribed by the region's gateways"
            while not replication.subscribed(writer, region.name):
                if time.monotonic() - started > replication.REPOINT_TIMEOUT_S * 3:
                    how = "not re-subscribed yet"
                    break
                time.sleep(0.1)
        steps.append(
            f"{region.name}: {region.replication} copy {how} to port {writer.port} "
            f"in {time.monotonic() - started:.2f} s"
        )
    return steps
