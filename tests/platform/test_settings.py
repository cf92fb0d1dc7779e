"""Settings written through the admin API reach media nodes through their Postgres replica."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg

from media_node import rtp_hooks
from rtcfleet.local import LocalFleet
from tests.platform.conftest import admin, start_call, wait_until

# below the aiortc encoder's start (500 kbit/s) and above its floor (250 kbit/s)
CAP_BPS = 300_000


def put_settings(fleet: LocalFleet, changes: dict) -> tuple[int, Any]:
    return admin(fleet, "PUT", "/api/settings", changes)


async def test_bitrate_cap_reaches_the_node_through_the_replica(fleet: LocalFleet) -> None:
    region = fleet.regions[fleet.home]
    alice, bob = await start_call(fleet, "settings-1", ["alice", "bob"])
    try:
        sender = alice.peer.video_sender
        assert sender is not None

        status, body = put_settings(fleet, {"max_video_bitrate_bps": CAP_BPS})
        assert status == 200 and body["max_video_bitrate_bps"] == CAP_BPS

        replica = await asyncpg.connect(region.settings_replica.dsn)
        try:
            assert await replica.fetchval("SELECT pg_is_in_recovery()") is True
            await wait_until_async_row(replica)
        finally:
            await replica.close()

        def capped() -> bool:
            target = rtp_hooks.encoder_target_bitrate(sender)
            return target is not None and target <= CAP_BPS

        took = await wait_until(capped, 20, "alice's encoder to obey the new cap")
        print(
            f"cap applied {took:.2f} s after the admin write; "
            f"encoder target {rtp_hooks.encoder_target_bitrate(sender)} bps"
        )
        # media still flows under the cap
        before = bob.peer.received("alice", "video").frames_decoded  # type: ignore[union-attr]
        await wait_until(
            lambda: bob.peer.received("alice", "video").frames_decoded > before + 30,  # type: ignore[union-attr]
            10,
            "frames under the cap",
        )
    finally:
        put_settings(fleet, {"max_video_bitrate_bps": 2_500_000})
        await alice.close()
        await bob.close()


async def wait_until_async_row(replica: asyncpg.Connection) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        value = await replica.fetchval(
            "SELECT value FROM rtcfleet_settings WHERE key = 'max_video_bitrate_bps'"
        )
        if value is not None and json.loads(value) == CAP_BPS:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the settings row never reached the replica")


def test_invalid_settings_are_refused_and_nothing_changes(fleet: LocalFleet) -> None:
    status, before = put_settings(fleet, {"max_participants_per_room": 10})
    assert status == 200
    for bad in (
        {"max_video_bitrate_bps": -5},
        {"allowed_codecs": ["VP8"]},
        {"no_such_setting": 1},
        {"max_participants_per_room": 20, "allowed_codecs": ["AV2"]},
    ):
        status, body = put_settings(fleet, bad)
        assert status == 400, bad
        assert body["error"] == "invalid_setting" and body["detail"]
    assert admin(fleet, "GET", "/api/settings") == (200, before)
    put_settings(fleet, {"max_participants_per_room": 50})
