"""The media node reads settings from its replica and keeps the last good copy without it."""

from __future__ import annotations

import asyncpg
import pytest
from pydantic import ValidationError

from media_node.node_bus import OUTBOX_LIMIT
from media_node.settings import ENV_PREFIX, MediaNodeSettings
from media_node.supervisor import Supervisor
from rtcfleet import settings_store
from rtcfleet.config_file import describe_errors
from rtcfleet.servers import ReplicatedPostgres


def node_settings(dsn: str) -> MediaNodeSettings:
    return MediaNodeSettings(
        gateway_urls=["http://127.0.0.1:1"],
        cluster_secret="c" * 20,
        redis_url="redis://127.0.0.1:1/0",
        settings_dsn=dsn,
        workers=1,
    )


async def test_replica_settings_then_last_good_copy(postgres_cluster: ReplicatedPostgres) -> None:
    primary, replica = postgres_cluster.primary, postgres_cluster.replicas[0]
    conn = await asyncpg.connect(primary.dsn)
    await settings_store.ensure_schema(conn)
    await settings_store.update(conn, {"max_video_bitrate_bps": 777_000})
    await conn.close()

    supervisor = Supervisor(node_settings(replica.dsn))
    for _ in range(100):
        assert await supervisor.replica.refresh()
        if supervisor.replica.platform.max_video_bitrate_bps == 777_000:
            break
    assert supervisor.replica.platform.max_video_bitrate_bps == 777_000

    replica.kill()
    assert await supervisor.replica.refresh() is False
    assert supervisor.replica.platform.max_video_bitrate_bps == 777_000


def test_bad_node_settings_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as caught:
        MediaNodeSettings(
            gateway_urls=["ftp://nope"],
            cluster_secret="c",
            redis_url="redis://x",
            settings_dsn="postgresql://x",
            port_min=60000,
            port_max=50000,
        )
    text = describe_errors(caught.value, ENV_PREFIX)
    assert "RTCFLEET_MEDIA_GATEWAY_URLS: Value error, 'ftp://nope' is not an http(s) URL" in text


def test_the_outbox_is_bounded_and_drops_beyond_it() -> None:
    """Workers keep talking while Redis stalls: the queue stops at its bound, nothing raises."""
    supervisor = Supervisor(node_settings("postgresql://127.0.0.1:1/rtcfleet"))
    handle = None
    extra = 10
    for n in range(OUTBOX_LIMIT + extra):
        event = {"kind": "to_session", "session": "a" * 32, "message": {"type": "n", "n": n}}
        supervisor.pool.receive(handle, event)  # type: ignore[arg-type]
    assert supervisor.bus.outbox.qsize() == OUTBOX_LIMIT
    assert supervisor.bus.outbox_dropped == extra


@pytest.mark.parametrize(
    ("public_ip", "bind_ip", "local"),
    [
        ("52.95.110.1", "10.0.1.7", False),  # a cloud node behind 1:1 NAT
        (None, "0.0.0.0", False),
        ("127.0.0.1", None, True),  # an image booted on loopback, IMDS giving 127.0.0.1
        (None, "10.254.3.2", True),  # a local fleet in network namespaces
        (None, None, False),
    ],
)
def test_clients_share_the_network_of_the_address_they_reach(
    public_ip: str | None, bind_ip: str | None, local: bool
) -> None:
    """Private candidates are accepted only where clients reach the node on such a network."""
    settings = node_settings("postgresql://127.0.0.1:1/x").model_copy(
        update={"public_ip": public_ip, "bind_ip": bind_ip}
    )
    assert settings.on_local_network() is local
