"""A bad value written straight into the settings table stops nothing and is repaired by API."""

from __future__ import annotations

import json
import signal

import asyncpg

from rtcfleet import settings_store
from rtcfleet.local import LocalFleet
from tests.platform.conftest import admin, wait_until


def node_listed(fleet: LocalFleet, name: str) -> bool:
    status, nodes = admin(fleet, "GET", "/api/nodes")
    return status == 200 and any(n["node_id"] == name and n["state"] == "healthy" for n in nodes)


async def test_a_media_node_starts_over_a_bad_stored_setting_and_the_api_repairs_it(
    fleet: LocalFleet,
) -> None:
    conn = await asyncpg.connect(fleet.settings_dsn())
    try:
        await conn.execute(
            f"INSERT INTO {settings_store.TABLE} (key, value) VALUES ($1, $2::jsonb) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            "max_video_bitrate_bps",
            json.dumps("lots"),
        )
        node = fleet.start_media_node(fleet.home)
        try:
            await wait_until(lambda: node_listed(fleet, node.name), 30, "the node to register")
            status, current = admin(fleet, "GET", "/api/settings")
            assert status == 200
            assert current["max_video_bitrate_bps"] == 2_500_000, "the default stands in"

            status, body = admin(fleet, "PUT", "/api/settings", {"max_video_bitrate_bps": 7})
            assert (status, body["error"]) == (400, "invalid_setting")
            status, body = admin(fleet, "PUT", "/api/settings", {"max_video_bitrate_bps": 900_000})
            assert (status, body["max_video_bitrate_bps"]) == (200, 900_000)
            stored = await conn.fetchval(
                f"SELECT value FROM {settings_store.TABLE} WHERE key = $1",
                "max_video_bitrate_bps",
            )
            assert json.loads(stored) == 900_000

            status, body = admin(fleet, "DELETE", "/api/settings/max_video_bitrate_bps")
            assert (status, body["max_video_bitrate_bps"]) == (200, 2_500_000)
            status, body = admin(fleet, "DELETE", "/api/settings/no_such_setting")
            assert status == 404
        finally:
            node.process.send_signal(signal.SIGTERM)
            fleet.regions[fleet.home].media_nodes.remove(node)
    finally:
        await conn.execute(
            f"DELETE FROM {settings_store.TABLE} WHERE key = $1", "max_video_bitrate_bps"
        )
        await conn.close()
    log = (fleet.workdir / "logs" / f"{node.name}.log").read_text()
    assert "max_video_bitrate_bps" in log and "invalid" in log
