"""What a local fleet is made of: its shape, its regions, and each service process in them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from infra.spec import LIVENESS_PATH
from rtcfleet.local.replication import PHYSICAL
from rtcfleet.servers import PostgresServer, SentinelRedis
from rtcfleet.servers.ports import LOCAL, Bind
from rtcfleet.servers.process import ServerProcess

DEFAULT_API_KEY = "local"


@dataclass
class FleetSpec:
    regions: int = 1
    gateways: int = 2
    media: int = 1
    workers_per_node: int = 1
    node_stale_seconds: float = 5.0
    settings_refresh_seconds: float = 1.0
    drain_timeout_seconds: float = 120.0
    api_key: str = DEFAULT_API_KEY
    api_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    cluster_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    log_level: str = "INFO"
    # the cloud of each region, in order (empty: all one cloud); regions outside the home
    # region's cloud read settings through a logical-replication subscriber
    clouds: list[str] = field(default_factory=list)
    # more environment for every media node (e.g. RTCFLEET_RECORDING_* and store credentials)
    media_env: dict[str, str] = field(default_factory=dict)
    # more environment for every gateway
    gateway_env: dict[str, str] = field(default_factory=dict)
    # an OTLP/HTTP receiver every gateway and media node sends its spans to (rtcfleet.tracing)
    otlp_endpoint: str | None = None

    def region_names(self) -> list[str]:
        return [f"local-{i + 1}" for i in range(self.regions)]

    def region_clouds(self) -> list[str]:
        if not self.clouds:
            return ["local"] * self.regions
        if len(self.clouds) != self.regions or not all(self.clouds):
            raise ValueError(
                f"clouds: one non-empty cloud name per region ({self.regions}), got {self.clouds}"
            )
        return list(self.clouds)


@dataclass
class ServiceProcess:
    """A gateway or media node process of the fleet."""

    role: str
    name: str
    region: str
    process: ServerProcess
    client_port: int | None = None
    admin_port: int | None = None
    health_port: int | None = None
    bind: Bind = LOCAL

    @property
    def http_url(self) -> str:
        return f"http://{self.bind.address}:{self.client_port}"

    @property
    def signal_url(self) -> str:
        return f"ws://{self.bind.address}:{self.client_port}/v1/signal"

    @property
    def admin_url(self) -> str:
        return f"http://{self.bind.address}:{self.admin_port}"

    @property
    def liveness_url(self) -> str:
        """Where the node group's health check would ask: the process's own liveness."""
        port = self.client_port if self.role == "gateway" else self.health_port
        return f"http://{self.bind.address}:{port}{LIVENESS_PATH}"


@dataclass
class Region:
    name: str
    redis: SentinelRedis
    settings_replica: PostgresServer
    cloud: str = "local"
    # how settings_replica follows the writer: a streaming replica, or a subscriber
    replication: str = PHYSICAL
    gateways: list[ServiceProcess] = field(default_factory=list)
    media_nodes: list[ServiceProcess] = field(default_factory=list)
