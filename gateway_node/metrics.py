"""Prometheus metrics of one gateway, in a registry of its own so apps can share a process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.clients = Gauge(
            "rtcfleet_gateway_clients", "Connected signaling clients", registry=self.registry
        )
        self.messages = Counter(
            "rtcfleet_gateway_messages_total",
            "Signaling messages by direction and type",
            ["direction", "type"],
            registry=self.registry,
        )
        self.errors = Counter(
            "rtcfleet_gateway_errors_total",
            "Errors sent to clients by code",
            ["code"],
            registry=self.registry,
        )
        self.placements = Counter(
            "rtcfleet_gateway_placements_total",
            "Rooms placed on media nodes (new claims)",
            registry=self.registry,
        )
        self.resumes = Counter(
            "rtcfleet_gateway_resumes_total", "Sessions resumed", registry=self.registry
        )
        self.nodes = Gauge(
            "rtcfleet_gateway_media_nodes",
            "Media nodes known to the region by state",
            ["state"],
            registry=self.registry,
        )
        self.nodes_lost = Counter(
            "rtcfleet_gateway_media_nodes_lost_total",
            "Media nodes this gateway found gone before their heartbeat went stale, by signal",
            ["signal"],
            registry=self.registry,
        )
        self.join_seconds = Histogram(
            "rtcfleet_gateway_join_seconds",
            "Time from a join message to the joined answer",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.settings_age = Gauge(
            "rtcfleet_gateway_settings_age_seconds",
            "Age of the platform settings this gateway serves with (+Inf before the first read)",
            registry=self.registry,
        )
        self.region_healthy = Gauge(
            "rtcfleet_gateway_region_healthy",
            "1 while this gateway's last region probe placed and reached a media node",
            registry=self.registry,
        )
        self.settings_lag = Gauge(
            "rtcfleet_settings_replication_lag_seconds",
            "Seconds the region's settings copy trails the writer (heartbeat age; NaN unknown)",
            ["region", "kind"],
            registry=self.registry,
        )
        self.settings_connected = Gauge(
            "rtcfleet_settings_replication_connected",
            "1 when the region's settings copy streams from the writer",
            ["region", "kind"],
            registry=self.registry,
        )
        self.node_heartbeat_bytes = Histogram(
            "rtcfleet_gateway_media_heartbeat_bytes",
            "Body size of media nodes' heartbeats (counts only: it must not grow with rooms)",
            buckets=(256, 512, 1024, 2048, 4096, 16384, 65536, 262144, 1048576),
            registry=self.registry,
        )
        self.node_drain_seconds = Histogram(
            "rtcfleet_gateway_media_drain_seconds",
            "A media node's drain, from its cloud's notice to the node empty, as the node reported",
            ["cloud", "notice"],
            buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 900, 3600),
            registry=self.registry,
        )
        self.node_drain_rooms_left = Counter(
            "rtcfleet_gateway_media_drain_rooms_left_total",
            "Rooms still on a media node when its cloud's deadline came",
            ["cloud", "notice"],
            registry=self.registry,
        )
