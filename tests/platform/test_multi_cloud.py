"""One settings writer across clouds: three regions, the third reading through logical replication.

The tests share one fleet and run in order; the last one kills the home region.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator

import asyncpg
import pytest

from rtcfleet import logical_replication, settings_store
from rtcfleet.drill import DrillSpec, run_region_outage
from rtcfleet.drill.local import LocalBackend
from rtcfleet.local import FleetSpec, LocalFleet, replication
from rtcfleet.servers import ReplicatedPostgres
from tests.platform.conftest import admin

CLOUDS = ["aws", "aws", "azure"]
REACH_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def mixed() -> Iterator[LocalFleet]:
    fleet = LocalFleet(FleetSpec(regions=3, gateways=1, media=1, clouds=CLOUDS)).start()
    yield fleet
    fleet.remove()


def node_settings(fleet: LocalFleet, region: str) -> list[dict]:
    status, nodes = admin(fleet, "GET", "/api/nodes", region=region)
    assert status == 200
    return [n["settings"] or {} for n in nodes if n["state"] == "healthy"]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


async def test_a_setting_reaches_a_media_node_in_every_region(mixed: LocalFleet) -> None:
    assert [r.replication for r in mixed.regions.values()] == ["physical", "physical", "logical"]
    status, _ = admin(mixed, "PUT", "/api/settings", {"max_participants_per_room": 37})
    assert status == 200
    written = time.monotonic()
    delays: dict[str, float] = {}
    while len(delays) < len(mixed.regions):
        for name in mixed.regions:
            if name not in delays and all(
                s.get("max_participants_per_room") == 37 for s in node_settings(mixed, name)
            ):
                delays[name] = round(time.monotonic() - written, 3)
        assert time.monotonic() - written < REACH_TIMEOUT_S, f"reached only {delays}"
        await asyncio.sleep(0.05)
    print(f"admin write reached each region's media nodes after {delays} s")


def test_every_region_shows_its_replication_lag(mixed: LocalFleet) -> None:
    for name, region in mixed.regions.items():
        gateway = region.gateways[0]
        deadline = time.monotonic() + REACH_TIMEOUT_S
        while True:
            copy = get_json(gateway.http_url + "/stats")["settings_replication"]
            if copy["connected"] and copy["lag_seconds"] is not None:
                break
            assert time.monotonic() < deadline, f"{name}: {copy}"
            time.sleep(0.2)
        assert copy["kind"] == region.replication
        with urllib.request.urlopen(gateway.http_url + "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        line = next(
            m
            for m in metrics.splitlines()
            if m.startswith("rtcfleet_settings_replication_lag_seconds{")
        )
        assert f'region="{name}"' in line and f'kind="{region.replication}"' in line
        assert float(line.rsplit(" ", 1)[1]) >= 0
        request = urllib.request.Request(
            gateway.admin_url + "/",
            headers={"Authorization": f"Bearer {mixed.spec.admin_token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            page = response.read().decode()
        assert "Settings replication" in page and f"<td>{region.replication}</td>" in page
        print(f"{name}: {copy} | {line}")
    by_region = mixed.region_replication()
    print(json.dumps(by_region))
    assert by_region["local-3"]["kind"] == "logical" and by_region["local-3"]["streaming"]
    assert by_region["local-2"]["kind"] == "physical" and by_region["local-2"]["streaming"]


async def test_a_column_added_under_a_running_subscription(mixed: LocalFleet) -> None:
    """Rows keep arriving at the subscriber between every step of the change and after it."""
    assert mixed.postgres is not None
    writer = await asyncpg.connect(mixed.postgres.primary.dsn)
    subscriber = await asyncpg.connect(mixed.regions["local-3"].settings_replica.dsn)
    table = settings_store.TABLE
    name = logical_replication.subscription_name("local-3")

    async def write_and_see(value: int, *, with_note: bool) -> None:
        if with_note:
            await writer.execute(
                f"INSERT INTO {table} (key, value, note) VALUES ('schema-probe', $1::jsonb, $2) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, note = EXCLUDED.note",
                json.dumps(value),
                f"note {value}",
            )
        else:
            await writer.execute(
                f"INSERT INTO {table} (key, value) VALUES ('schema-probe', $1::jsonb) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                json.dumps(value),
            )
        deadline = time.monotonic() + REACH_TIMEOUT_S
        query = f"SELECT value FROM {table} WHERE key = 'schema-probe'"
        while json.loads(await subscriber.fetchval(query) or "null") != value:
            state = await logical_replication.subscription_state(subscriber, name)
            assert time.monotonic() < deadline, f"row {value} never arrived; {state}"
            await asyncio.sleep(0.05)

    try:
        await write_and_see(1, with_note=False)
        steps = logical_replication.add_column(table, "note", "text")
        for index, step in enumerate(steps):
            await logical_replication.apply_step(step, writer, [subscriber])
            # a write on the writer after every step, with the column once the writer has it
            await write_and_see(10 + index, with_note=step.on == logical_replication.WRITER)
        note = await subscriber.fetchval(f"SELECT note FROM {table} WHERE key = 'schema-probe'")
        assert note == "note 11"
        await writer.execute(f"DELETE FROM {table} WHERE key = 'schema-probe'")
        await logical_replication.apply_schema_change(
            logical_replication.drop_column(table, "note"), writer, [subscriber]
        )
        await write_and_see(20, with_note=False)
        state = await logical_replication.subscription_state(subscriber, name)
        assert state.worker_running and state.tables_ready
        with pytest.raises(logical_replication.SubscriptionError):
            logical_replication.drop_column(table, "key")
        with pytest.raises(logical_replication.SubscriptionError):
            logical_replication.add_column("pg_class", "x", "text")
    finally:
        await writer.execute(f"DELETE FROM {table} WHERE key = 'schema-probe'")
        await writer.close()
        await subscriber.close()


async def test_home_region_outage_moves_every_region_to_the_new_writer(
    mixed: LocalFleet,
) -> None:
    backend = LocalBackend(mixed)
    report = await run_region_outage(
        backend, DrillSpec(region="local-1", bots=4, rooms=2, restore=False)
    )
    print(json.dumps(report.to_json(), indent=1))
    assert mixed.home == "local-2"
    assert any(
        step.startswith("local-3: logical copy re-subscribed by the region's gateways")
        for step in report.steps
    )
    assert report.replication_at_fault["local-3"]["kind"] == "logical"
    if all(r.get("lag_bytes") == 0 for r in report.replication_at_fault.values()):
        assert report.settings_writes_lost == 0
    assert set(report.settings_fresh_s) == {"local-2", "local-3"}
    assert report.settings_fresh_everywhere_s is not None
    after = report.replication_after_recovery
    assert after["local-2"]["kind"] == "writer"
    assert after["local-3"]["streaming"], after
    print(
        f"settings fresh again in every surviving region {report.settings_fresh_everywhere_s} s "
        f"after the fault: {report.settings_fresh_s} (after the write: "
        f"{report.settings_fresh_after_write_s})"
    )


async def test_a_second_replica_follows_the_promoted_one() -> None:
    """Without a fleet: the replica that was not promoted streams from the one that was."""
    cluster = await asyncio.to_thread(ReplicatedPostgres(replicas=2).start)
    try:
        standby, other = cluster.replicas
        cluster.primary.kill()
        await asyncio.to_thread(standby.promote)
        how = await asyncio.to_thread(replication.follow_physical, other, standby, "other")
        assert how == "re-pointed"
        assert await asyncio.to_thread(replication.streams_from, other, standby)
        writer = await asyncpg.connect(standby.dsn)
        await writer.execute("CREATE TABLE after_failover (id int PRIMARY KEY)")
        await writer.execute("INSERT INTO after_failover VALUES (7)")
        await writer.close()
        reader = await asyncpg.connect(other.dsn)
        try:
            deadline = time.monotonic() + REACH_TIMEOUT_S
            while True:
                with contextlib.suppress(asyncpg.UndefinedTableError):
                    if await reader.fetchval("SELECT id FROM after_failover") == 7:
                        break
                assert time.monotonic() < deadline, "the write never reached the other replica"
                await asyncio.sleep(0.05)
        finally:
            await reader.close()
    finally:
        await asyncio.to_thread(cluster.remove)
