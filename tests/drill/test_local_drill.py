"""The region-outage drill against a two-region local fleet, for real."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import asyncpg
import pytest

from rtcfleet.client.bot import Bot
from rtcfleet.drill import DrillSpec, run_region_outage
from rtcfleet.drill.driver import write_values, writes_lost
from rtcfleet.drill.local import LocalBackend
from rtcfleet.local import FleetSpec, LocalFleet
from tests.platform.conftest import receives_from, wait_until


@pytest.fixture(scope="module")
def two_regions() -> Iterator[LocalFleet]:
    fleet = LocalFleet(FleetSpec(regions=2, gateways=1, media=1)).start()
    yield fleet
    fleet.remove()


def show(report) -> None:
    print(json.dumps(report.to_json(), indent=1))


async def test_a_room_live_in_one_region_is_joined_there_from_another(
    two_regions: LocalFleet,
) -> None:
    first, second = (two_regions.gateway_urls(r) for r in ("local-1", "local-2"))
    ann = Bot(first, two_regions.token("shared", "ann"), name="ann", width=320, height=180, fps=15)
    ben = Bot(second, two_regions.token("shared", "ben"), name="ben", width=320, height=180, fps=15)
    try:
        await ann.start()
        await ben.start()
        assert ben.session.events.redirects == 1
        assert (ann.session.region, ben.session.region) == ("local-1", "local-1")
        assert ann.session.node_id == ben.session.node_id
        await wait_until(lambda: receives_from(ben, ["ann"]), 20, "ben's media")
    finally:
        await asyncio.gather(ann.close(), ben.close())


async def test_non_home_region_outage(two_regions: LocalFleet) -> None:
    backend = LocalBackend(two_regions)
    report = await run_region_outage(backend, DrillSpec(region="local-2", bots=6, rooms=3))
    show(report)
    print(
        f"time to media p50 {report.time_to_media_p50_s:.2f} s, "
        f"max {report.time_to_media_max_s:.2f} s over {report.affected_bots} bots"
    )
    assert report.affected_bots >= 2, "some rooms must have lived in the killed region"
    assert report.sessions_dropped == 0
    assert len(report.time_to_media_s) == report.affected_bots
    assert report.time_to_detect_s is not None and report.time_to_new_joins_s is not None
    assert report.replication_lag_at_fault["streaming_replicas"] == 2
    assert report.settings_writes_acknowledged == 20
    assert report.settings_writes_lost == 0
    assert report.settings_write_after_failover_s is not None


async def test_home_region_outage_promotes_the_standby(two_regions: LocalFleet) -> None:
    backend = LocalBackend(two_regions)
    assert two_regions.home == "local-1"
    report = await run_region_outage(backend, DrillSpec(region="local-1", bots=6, rooms=3))
    show(report)
    assert report.home_region_killed
    assert any("promoted the Postgres replica of local-2" in step for step in report.steps)
    assert two_regions.home == "local-2"
    assert report.affected_bots >= 1, "no bot was in the home region"
    assert report.sessions_dropped == 0
    # the standby replayed the last acknowledged write before the fault: nothing may be lost
    assert report.standby_replayed_before_fault
    assert report.replication_lag_at_fault["standby_bytes"] == 0
    assert report.settings_writes_acknowledged == 20
    assert report.settings_writes_lost == 0
    assert report.settings_write_after_failover_s is not None, "no admin write after failover"
    print(f"admin write succeeded {report.settings_write_after_failover_s:.2f} s after the fault")


async def cut_off(replica_dsn: str) -> None:
    """Stop a replica's streaming (no primary to stream from); it keeps what it replayed."""
    replica = await asyncpg.connect(replica_dsn, timeout=3)
    try:
        await replica.execute("ALTER SYSTEM SET primary_conninfo = ''")
        await replica.execute("SELECT pg_reload_conf()")
        for _ in range(100):
            if not await replica.fetchval("SELECT count(*) FROM pg_stat_wal_receiver"):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the replica kept streaming")
    finally:
        await replica.close()


async def test_home_outage_with_a_lagging_standby_counts_the_lost_writes(
    two_regions: LocalFleet,
) -> None:
    """The standby stops replaying before the drill's writes: every acknowledged write is lost
    in the failover, and the drill must say so."""
    home, standby = two_regions.home, two_regions.standby
    assert standby is not None and standby != home
    await cut_off(two_regions.regions[standby].settings_replica.dsn)
    spec = DrillSpec(region=home, bots=4, rooms=2, settings_writes=5, replication_wait_s=2)
    report = await run_region_outage(LocalBackend(two_regions), spec)
    show(report)
    assert two_regions.home == standby
    assert not report.standby_replayed_before_fault
    assert report.replication_lag_at_fault["standby_bytes"] > 0
    assert report.settings_writes_acknowledged == 5
    assert report.settings_writes_lost == 5


def test_lost_writes_are_those_after_the_value_the_survivor_reads() -> None:
    acknowledged = list(write_values(50, 5))
    assert acknowledged == [100, 101, 102, 103, 104]
    assert writes_lost(104, 50, acknowledged) == 0
    assert writes_lost(101, 50, acknowledged) == 3
    assert writes_lost(50, 50, acknowledged) == 5
    assert writes_lost(7, 50, acknowledged) is None
    # a stored value among the drill's own would hide a loss: the values move past it
    assert 101 not in write_values(101, 5)
