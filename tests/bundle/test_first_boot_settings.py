"""First boot hands a gateway its region's settings copy and, across clouds, its subscription."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from gateway_node.settings import GatewaySettings
from media_node.settings import MediaNodeSettings
from rtcfleet.bundle.first_boot import NodeFacts, gateway_environment, media_environment

SECRETS = {
    "apiSecret": "a" * 32,
    "clusterSecret": "c" * 32,
    "adminToken": "t" * 24,
    "redisAuthToken": "r" * 24,
    "dbPassword": "p@ss/word",
}


def facts(postgres: Mapping[str, object], role: str = "gateway", **more: object) -> NodeFacts:
    settings = {
        "redis": {"host": "redis.internal", "port": 6380, "tls": True},
        "postgres": {"port": 5432, "database": "rtcfleet", "user": "rtcfleet", **postgres},
        **more,
    }
    return NodeFacts(
        "azure", role, "prod", "westeurope", "vm-1", "10.30.1.4", None, settings, SECRETS
    )


def test_a_subscriber_region_gateway_reconciles_its_subscription(monkeypatch) -> None:
    env = gateway_environment(
        facts(
            {
                "writeHost": "writer.us-east-1.rds.example",
                "readHost": "sub.weu.postgres.example",
                "subscription": "rtcfleet_westeurope",
            }
        )
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = GatewaySettings()
    assert settings.settings_subscription == "rtcfleet_westeurope"
    replica = settings.settings_replica_dsn
    assert replica is not None
    assert replica.get_secret_value() == (
        "postgresql://rtcfleet:p%40ss%2Fword@sub.weu.postgres.example:5432/rtcfleet?sslmode=require"
    )
    assert "writer.us-east-1.rds.example" in settings.postgres_dsn.get_secret_value()


def test_a_region_of_the_writers_cloud_has_no_subscription() -> None:
    env = gateway_environment(facts({"writeHost": "w", "readHost": "r"}))
    assert "RTCFLEET_GATEWAY_SETTINGS_SUBSCRIPTION" not in env
    assert env["RTCFLEET_GATEWAY_SETTINGS_REPLICA_DSN"].split("@")[1].startswith("r:5432/")


def test_service_environment_round_trips_through_the_model(monkeypatch) -> None:
    """What the fleet and first boot write is what the service reads back, field for field;
    a name the model does not have is refused before anything is written."""
    env = GatewaySettings.environment(
        redis_url="redis://127.0.0.1:6379/0",
        postgres_dsn="postgresql://u@h/db",
        api_keys={"k": "s" * 32},
        cluster_secret="c" * 20,
        admin_token="a" * 20,
        peer_regions={"b": ["http://10.0.0.1:8080"]},
        node_stale_seconds=2.5,
        public_url=None,
    )
    assert "RTCFLEET_GATEWAY_PUBLIC_URL" not in env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = GatewaySettings()
    assert settings.peer_regions == {"b": ["http://10.0.0.1:8080"]}
    assert settings.node_stale_seconds == 2.5
    assert settings.api_secrets() == {"k": "s" * 32}
    with pytest.raises(KeyError, match="stale_seconds"):
        GatewaySettings.environment(stale_seconds=2.5)


def test_traces_go_where_the_settings_document_says_and_nowhere_without_it(monkeypatch) -> None:
    endpoint, ratio = "http://collector.internal:4318", 0.05
    postgres = {"writeHost": "w", "readHost": "r"}
    gateway = gateway_environment(facts(postgres, otlpEndpoint=endpoint, traceSampleRatio=ratio))
    media = media_environment(
        facts(
            postgres,
            "media",
            signalingUrl="http://signal.internal:8080",
            otlpEndpoint=endpoint,
            traceSampleRatio=ratio,
        )
    )
    for key, value in (gateway | media).items():
        monkeypatch.setenv(key, value)
    for settings in (GatewaySettings(), MediaNodeSettings()):
        assert settings.otlp_endpoint == "http://collector.internal:4318"
        assert settings.trace_sample_ratio == 0.05
    assert not any("OTLP" in key or "TRACE" in key for key in gateway_environment(facts(postgres)))
