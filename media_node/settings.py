"""The media node's settings: one typed model, from environment variables or a file.

Environment variables are ``RTCFLEET_MEDIA_<FIELD>`` (lists as JSON); a file named by
``RTCFLEET_MEDIA_CONFIG`` (JSON or YAML) supplies values the environment overrides.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from infra.spec import (
    DEFAULT_DRAIN_TIMEOUT_SECONDS,
    MEDIA_HEALTH_PORT,
    MEDIA_PORT_MAX,
    MEDIA_PORT_MIN,
)
from media_node.evacuation import DEFAULT_FRACTION, DEFAULT_RATE
from rtcfleet.config_file import ServiceSettings
from rtcfleet.nodes import NODE_ID_PATTERN
from rtcfleet.tracing import TracingSettings

ENV_PREFIX = "RTCFLEET_MEDIA_"
# The local addresses ICE gathers host candidates on, comma-separated, for every WebRTC peer of
# a process (media_node.rtp_hooks.restrict_host_addresses_from_environment); a media node's
# workers use its bind_ip instead.
ICE_ADDRESSES_ENV = "RTCFLEET_ICE_ADDRESSES"
# forwarded video streams (with their audio) one worker process carries at its target load
DEFAULT_STREAMS_PER_WORKER = 150


def _default_node_id() -> str:
    host = socket.gethostname().split(".")[0] or "media"
    return f"{host}-{uuid.uuid4().hex[:6]}"


class MediaNodeSettings(ServiceSettings, TracingSettings):
    CONFIG_ENV = "RTCFLEET_MEDIA_CONFIG"
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    node_id: str = Field(default_factory=_default_node_id, pattern=NODE_ID_PATTERN)
    region: str = "local"
    # the media-signaling load balancer; several URLs are tried in order (local fleets)
    gateway_urls: list[str] = Field(min_length=1)
    cluster_secret: SecretStr
    redis_url: str
    # the region's read-only replica: settings are read here, never from the primary
    settings_dsn: SecretStr
    settings_refresh_seconds: float = Field(default=5.0, gt=0)

    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    streams_per_worker: int = Field(default=DEFAULT_STREAMS_PER_WORKER, ge=1)
    public_ip: str | None = None
    bind_ip: str | None = None
    port_min: int = Field(default=MEDIA_PORT_MIN, ge=1024, le=65535)
    port_max: int = Field(default=MEDIA_PORT_MAX, ge=1024, le=65535)
    # every connection of a worker on one UDP port (media_node.udp_mux): a fan-out sends to all
    # of a worker's subscribers with one system call; off, a socket per connection
    shared_udp_port: bool = False
    # liveness (media_node.liveness): probed on the machine itself, so loopback by default
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=MEDIA_HEALTH_PORT, ge=1, le=65535)
    drain_timeout_seconds: float = Field(default=DEFAULT_DRAIN_TIMEOUT_SECONDS, gt=0)
    # Scale-in agent (media_node.drain_agent): set by the image's first boot; off when unset.
    cloud: Literal["aws", "azure"] | None = None
    # Overrides of the link-local metadata service and the cloud API endpoint (tests).
    metadata_url: str | None = None
    cloud_api_url: str | None = None
    lifecycle_heartbeat_seconds: float = Field(default=60.0, gt=0)
    scale_in_idle_seconds: float = Field(default=30.0, ge=0)
    # Spot interruption (media_node.evacuation): every room told to move within this share of
    # the notice, at no fewer participants a second than the rate.
    evacuation_fraction: float = Field(default=DEFAULT_FRACTION, gt=0, le=1)
    evacuation_rate: float = Field(default=DEFAULT_RATE, gt=0)

    @field_validator("gateway_urls")
    @classmethod
    def _http(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return [url.rstrip("/") for url in urls]

    def on_local_network(self) -> bool:
        """Whether the address clients reach the node at (its public IP, or else the address it
        binds) is loopback or private: then its clients share that network, and their
        candidates name addresses on it."""
        address = self.public_ip if self.public_ip is not None else self.bind_ip
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return not ip.is_unspecified and (ip.is_loopback or ip.is_private)

    @model_validator(mode="after")
    def _range(self) -> MediaNodeSettings:
        if self.port_min > self.port_max:
            raise ValueError("port_min must not exceed port_max")
        return self
