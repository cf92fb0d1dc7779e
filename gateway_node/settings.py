"""The gateway's settings: one typed model, from environment variables or a file.

Environment variables are ``RTCFLEET_GATEWAY_<FIELD>`` (nested values as JSON); a file named by
``RTCFLEET_GATEWAY_CONFIG`` (JSON or YAML) supplies defaults that the environment overrides.
"""

from __future__ import annotations

import uuid

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from infra.spec import ADMIN_PORT, CLIENT_SIGNALING_PORT
from rtcfleet.config_file import ServiceSettings
from rtcfleet.tracing import TracingSettings

ENV_PREFIX = "RTCFLEET_GATEWAY_"


class GatewaySettings(ServiceSettings, TracingSettings):
    CONFIG_ENV = "RTCFLEET_GATEWAY_CONFIG"
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    gateway_id: str = Field(default_factory=lambda: f"gw-{uuid.uuid4().hex[:8]}")
    region: str = "local"
    # regions ordered by distance from this one, nearest first (this region is implied first)
    regions_by_distance: list[str] = Field(default_factory=list)
    host: str = "0.0.0.0"
    client_port: int = Field(default=CLIENT_SIGNALING_PORT, ge=0, le=65535)
    admin_port: int = Field(default=ADMIN_PORT, ge=0, le=65535)
    # the URL clients of this region use, and other regions' URLs in fallback order
    public_url: str | None = None
    fallback_urls: list[str] = Field(default_factory=list)
    # other regions' internal gateway URLs (over the private network), asked before a new
    # room is placed here so a room is never split across regions
    peer_regions: dict[str, list[str]] = Field(default_factory=dict)
    peer_lookup_timeout_seconds: float = Field(default=0.5, gt=0, le=10)
    # other regions' client signaling URLs: where a client goes when the region that must
    # decide about its room cannot be asked from here (see gateway_node/room_home.py)
    peer_signal_urls: dict[str, list[str]] = Field(default_factory=dict)

    redis_url: str
    # the settings database's read/write node (admin writes only; in the home region)
    postgres_dsn: SecretStr
    # the region's settings copy (what its media nodes read): its lag is shown and measured
    settings_replica_dsn: SecretStr | None = None
    # set when that copy is a logical-replication subscriber of a writer in another cloud:
    # the subscription this region's gateways keep following the writer (postgres_dsn)
    settings_subscription: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    settings_refresh_seconds: float = Field(default=5.0, gt=0, le=300)
    # bounds on the writer, which may be a region away and silent: each host of postgres_dsn
    # gets this long to connect (all are asked at once), each statement this long to answer;
    # an admin write answers 503 after the two together (gateway_node/settings_writer.py)
    postgres_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    postgres_command_timeout_seconds: float = Field(default=3.0, gt=0, le=300)

    api_keys: dict[str, SecretStr] = Field(min_length=1)
    cluster_secret: SecretStr
    admin_token: SecretStr

    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: SecretStr | None = None
    turn_ttl_seconds: int = Field(default=3600, ge=60)
    stun_urls: list[str] = Field(default_factory=list)
    # coturn on every media node: a session gets STUN and TURN (UDP and TCP) on its own node's
    # advertised address, with credentials from ``turn_secret``; None turns that off
    node_turn_port: int | None = Field(default=3478, ge=1, le=65535)

    node_stale_seconds: float = Field(default=5.0, gt=0, le=120)
    rate_limit_per_second: float = Field(default=50.0, gt=0)
    rate_limit_burst: float = Field(default=100.0, ge=1)
    # violations after which a flooding client is disconnected
    rate_limit_disconnect_after: int = Field(default=200, ge=1)

    @field_validator("cluster_secret", "admin_token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("turn_urls")
    @classmethod
    def _turn_scheme(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"{url!r} is not a turn: or turns: URL")
        return urls

    def ordered_regions(self) -> list[str]:
        return [self.region, *(r for r in self.regions_by_distance if r != self.region)]

    def client_fallback_urls(self) -> list[str]:
        """Where a client goes when this gateway's region fails: every other region's URLs."""
        return [url for url in self.fallback_urls if url != self.public_url]

    def api_secrets(self) -> dict[str, str]:
        return {key: secret.get_secret_value() for key, secret in self.api_keys.items()}
