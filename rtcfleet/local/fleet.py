"""The local fleet: the whole platform on one machine, one or more "regions" on loopback.

Each region has its own Redis (primary + replica + Sentinel), gateways and media nodes, as a
cloud region would; one Postgres read/write server lives in the home region (the first) with a
read server per region that the region's media nodes read settings from: a streaming replica
in the home region's cloud, a logical-replication subscriber in any other (``FleetSpec.clouds``
says which region is in which cloud; see ``rtcfleet.local.replication``). The node
services run as the same processes the machine images run (``rtcfleet gateway``,
``rtcfleet media-node``), with their settings in environment variables.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from gateway_node.settings import GatewaySettings
from infra.spec import READINESS_PATH
from media_node.settings import ICE_ADDRESSES_ENV, MediaNodeSettings
from rtcfleet.local import faults, replication
from rtcfleet.local.probes import healthy_nodes, probe
from rtcfleet.local.replication import LOGICAL, PHYSICAL
from rtcfleet.local.replication_lag import replication_lag, wait_replayed
from rtcfleet.local.topology import FleetSpec, Region, ServiceProcess
from rtcfleet.logical_replication import subscription_name
from rtcfleet.servers import PostgresServer, ReplicatedPostgres, SentinelRedis, free_port
from rtcfleet.servers.ports import LOCAL, Bind
from rtcfleet.servers.process import ServerProcess
from rtcfleet.tokens import mint_token

if TYPE_CHECKING:
    from rtcfleet.netfault import Fabric


class FleetNotReady(TimeoutError):
    """A region did not become ready in time; the message says which and why."""


class LocalFleet:
    def __init__(
        self,
        spec: FleetSpec | None = None,
        workdir: Path | None = None,
        fabric: Fabric | None = None,
    ) -> None:
        """``fabric``: run every host in its own network namespace on it, so faults can be
        drops (``rtcfleet.netfault``); without one, everything listens on loopback."""
        self.spec = spec or FleetSpec()
        self.fabric = fabric
        if self.spec.regions < 1 or self.spec.gateways < 1 or self.spec.media < 0:
            raise ValueError("a fleet needs at least one region with one gateway")
        self.clouds = dict(zip(self.spec.region_names(), self.spec.region_clouds(), strict=True))
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="rtcfleet-local-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        # the unprivileged Postgres user must reach its data folders below this one
        self.workdir.chmod(0o755)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.postgres: ReplicatedPostgres | None = None
        self.regions: dict[str, Region] = {}
        self._gateway_ports: dict[str, list[tuple[int, int]]] = {}
        self._counter = 0
        self._home: str | None = None

    # ---- start / stop -----------------------------------------------------------------------

    def start(self, ready_timeout: float | None = 60.0) -> LocalFleet:
        """Start every server and service; wait until ready unless ``ready_timeout`` is None."""
        names = self.spec.region_names()
        home_cloud = self.clouds[names[0]]
        physical = [n for n in names if self.clouds[n] == home_cloud]
        try:
            self.postgres = ReplicatedPostgres(
                replicas=len(physical),
                workdir=self.workdir / "postgres",
                binds=[self.bind(f"{names[0]}-data"), *(self.bind(f"{n}-data") for n in physical)],
            ).start()
            readers = dict(zip(physical, self.postgres.replicas, strict=True))
            for name, replica in readers.items():
                replication.stream_from(replica, self.postgres.primary, name)
            writer_dsn = _writer_dsn([self.postgres.primary, *self.postgres.replicas])
            for name in names:
                if name not in readers:
                    readers[name] = PostgresServer(
                        self.workdir / "postgres" / f"subscriber-{name}",
                        bind=self.bind(f"{name}-data"),
                    )
                    self.postgres.replicas.append(readers[name])
                    replication.new_subscriber(
                        readers[name], self.postgres.primary, name, writer_dsn
                    )
            for name in names:
                redis = SentinelRedis(
                    self.workdir / f"redis-{name}", bind=self.bind(f"{name}-data")
                ).start()
                kind = PHYSICAL if name in physical else LOGICAL
                self.regions[name] = Region(name, redis, readers[name], self.clouds[name], kind)
                self._gateway_ports[name] = [
                    (free_port(), free_port()) for _ in range(self.spec.gateways)
                ]
            for name in names:
                for index in range(self.spec.gateways):
                    self.start_gateway(name, index)
                for _ in range(self.spec.media):
                    self.start_media_node(name)
            if ready_timeout is not None:
                self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for region in self.regions.values():
            for service in (*region.media_nodes, *region.gateways):
                service.process.stop(timeout=5)
            region.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def remove(self) -> None:
        """Stop and delete the fleet's files; ``RTCFLEET_KEEP_LOGS=1`` keeps them to read."""
        self.stop()
        if os.environ.get("RTCFLEET_KEEP_LOGS") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- services ---------------------------------------------------------------------------

    def bind(self, host: str) -> Bind:
        """Where the fleet's ``host`` listens: its own namespace on the fabric, or loopback."""
        if self.fabric is None:
            return LOCAL
        made = self.fabric.add_host(host)
        return Bind(made.address, made.netns)

    def host_addresses(self, *hosts: str) -> tuple[str, ...]:
        """The fabric addresses of the named hosts (``<region>-data``, a service's name)."""
        return tuple(self.bind(host).address for host in hosts)

    def region_hosts(self, region: str) -> list[str]:
        """Every host of a region: its data stores, gateways and media nodes."""
        found = self.regions[region]
        return [f"{region}-data", *(s.name for s in (*found.gateways, *found.media_nodes))]

    @property
    def home(self) -> str:
        return self._home or self.spec.region_names()[0]

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RTCFLEET_")}
        env["RTCFLEET_LOG_LEVEL"] = self.spec.log_level
        return env | extra

    def _spawn(self, role: str, name: str, env: dict[str, str]) -> ServerProcess:
        bind = self.bind(name)
        process = ServerProcess(
            name,
            [sys.executable, "-m", "rtcfleet", role],
            self.workdir / "logs" / f"{name}.log",
            env=self._env({ICE_ADDRESSES_ENV: bind.address, **env}),
            netns=bind.netns,
        )
        process.start()
        return process

    @property
    def standby(self) -> str | None:
        """The region whose replica is promoted when the home region dies: the next region
        in the home region's cloud (a subscriber is no promotion candidate)."""
        home_cloud = self.clouds[self.home]
        candidates = [
            n for n in self.spec.region_names() if n != self.home and self.clouds[n] == home_cloud
        ]
        return candidates[0] if candidates else None

    def settings_dsn(self) -> str:
        """The writer and its streaming replicas, asking for the writable one: after a
        promotion, gateways' new connections find the promoted replica without a restart.
        Subscribers are left out: they accept writes, and a write there would reach nobody."""
        assert self.postgres is not None
        physical = [r.settings_replica for r in self.regions.values() if r.replication == PHYSICAL]
        servers = [self.postgres.primary, *(s for s in physical if s is not self.postgres.primary)]
        return _writer_dsn(servers)

    def _gateway_addresses(self, region: str) -> list[str]:
        count = len(self._gateway_ports[region])
        return [self.bind(f"gateway-{region}-{i + 1}").address for i in range(count)]

    def internal_urls(self, region: str) -> list[str]:
        ports = self._gateway_ports[region]
        addresses = self._gateway_addresses(region)
        return [f"http://{a}:{client}" for a, (client, _) in zip(addresses, ports, strict=True)]

    def gateway_urls(self, region: str) -> list[str]:
        ports = self._gateway_ports[region]
        addresses = self._gateway_addresses(region)
        return [
            f"ws://{a}:{client}/v1/signal" for a, (client, _) in zip(addresses, ports, strict=True)
        ]

    def start_gateway(self, region_name: str, index: int) -> ServiceProcess:
        assert self.postgres is not None
        region = self.regions[region_name]
        client_port, admin_port = self._gateway_ports[region_name][index]
        names = self.spec.region_names()
        others = [r for r in names if r != region_name]
        fallback = [url for other in others for url in self.gateway_urls(other)]
        name = f"gateway-{region_name}-{index + 1}"
        env = GatewaySettings.environment(
            gateway_id=name,
            region=region_name,
            regions_by_distance=others,
            host=self.bind(name).address,
            client_port=client_port,
            admin_port=admin_port,
            public_url=self.gateway_urls(region_name)[index],
            fallback_urls=fallback,
            redis_url=region.redis.url,
            postgres_dsn=self.settings_dsn(),
            settings_refresh_seconds=self.spec.settings_refresh_seconds,
            settings_replica_dsn=region.settings_replica.dsn,
            settings_subscription=(
                subscription_name(region_name) if region.replication == LOGICAL else None
            ),
            peer_regions={other: self.internal_urls(other) for other in others},
            peer_signal_urls={other: self.gateway_urls(other) for other in others},
            api_keys={self.spec.api_key: self.spec.api_secret},
            cluster_secret=self.spec.cluster_secret,
            admin_token=self.spec.admin_token,
            node_stale_seconds=self.spec.node_stale_seconds,
            otlp_endpoint=self.spec.otlp_endpoint,
        ) | dict(self.spec.gateway_env)
        service = ServiceProcess(
            "gateway",
            name,
            region_name,
            self._spawn("gateway", name, env),
            client_port=client_port,
            admin_port=admin_port,
            bind=self.bind(name),
        )
        if index < len(region.gateways):
            region.gateways[index] = service
        else:
            region.gateways.append(service)
        return service

    def start_media_node(
        self, region_name: str, signaling_urls: list[str] | None = None
    ) -> ServiceProcess:
        """A media node that registers through ``signaling_urls`` (a load balancer in front of
        the region's gateways), or with the gateways directly."""
        region = self.regions[region_name]
        self._counter += 1
        name = f"media-{region_name}-{self._counter}"
        gateways = signaling_urls or self.internal_urls(region_name)
        health_port = free_port()
        env = MediaNodeSettings.environment(
            node_id=name,
            region=region_name,
            gateway_urls=gateways,
            cluster_secret=self.spec.cluster_secret,
            redis_url=region.redis.url,
            settings_dsn=region.settings_replica.dsn,
            settings_refresh_seconds=self.spec.settings_refresh_seconds,
            workers=self.spec.workers_per_node,
            bind_ip=self.bind(name).address,
            drain_timeout_seconds=self.spec.drain_timeout_seconds,
            health_host=self.bind(name).address,
            health_port=health_port,
            otlp_endpoint=self.spec.otlp_endpoint,
        ) | dict(self.spec.media_env)
        service = ServiceProcess(
            "media",
            name,
            region_name,
            self._spawn("media-node", name, env),
            health_port=health_port,
            bind=self.bind(name),
        )
        region.media_nodes.append(service)
        return service

    # ---- faults and recovery (drills) -------------------------------------------------------

    def region_processes(self, name: str) -> list[ServerProcess]:
        """Everything that dies with the region: its services, Redis and its Postgres servers."""
        home = self.postgres is not None and name == self.home
        writer = self.postgres.primary if home and self.postgres is not None else None
        return faults.region_processes(self.regions[name], writer)

    def kill_region(self, name: str) -> None:
        """SIGKILL every process of the region at once, as an outage would."""
        for process in self.region_processes(name):
            process.kill()

    def promote_standby(self) -> PostgresServer:
        """Make the standby region's replica the read/write server and the standby region home."""
        assert self.postgres is not None and self.standby is not None
        standby = self.regions[self.standby].settings_replica
        standby.promote()
        self.postgres.primary, self._home = standby, self.standby
        return standby

    def follow_writer(self) -> list[str]:
        """Point every surviving region's settings copy at the current writer."""
        assert self.postgres is not None
        return faults.follow_writer(self.regions.values(), self.postgres.primary)

    def restore_region(self, name: str, ready_timeout: float = 60.0) -> None:
        """Bring a dead region back: fresh Redis, a replica of the current primary, services."""
        assert self.postgres is not None
        region = self.regions[name]
        for process in self.region_processes(name):
            process.kill()
        region.redis = SentinelRedis(
            self.workdir / f"redis-{name}-restored-{self._counter}", bind=self.bind(f"{name}-data")
        ).start()
        replica = PostgresServer(
            self.workdir / "postgres" / f"{name}-restored-{self._counter}",
            bind=self.bind(f"{name}-data"),
        )
        if region.replication == PHYSICAL:
            replica.init_replica_of(self.postgres.primary).start()
            replication.stream_from(replica, self.postgres.primary, name)
        else:
            replication.new_subscriber(replica, self.postgres.primary, name, self.settings_dsn())
        self.postgres.replicas = [
            replica if server is region.settings_replica else server
            for server in self.postgres.replicas
        ]
        region.settings_replica = replica
        count = len(region.media_nodes)
        region.media_nodes = []
        for index in range(len(region.gateways)):
            self.start_gateway(name, index)
        for _ in range(count):
            self.start_media_node(name)
        self.wait_ready(ready_timeout)

    async def replication_lag(self) -> dict[str, float]:
        """How far the replicas trail the primary: WAL bytes not yet replayed, and seconds.

        ``standby_bytes`` is read on the standby itself, so a standby that stopped streaming
        (absent from the primary's view) still shows what it lacks."""
        assert self.postgres is not None
        return await replication_lag(self.postgres.primary, self._standby_server())

    def _standby_server(self) -> PostgresServer | None:
        """The standby region's replica, unless the standby region holds the primary."""
        assert self.postgres is not None
        standby = self.regions[self.standby].settings_replica if self.standby else None
        return None if standby is None or standby is self.postgres.primary else standby

    async def wait_standby_replayed(self, timeout: float) -> bool:
        """Wait until the standby region's replica has replayed the primary's WAL as of now."""
        assert self.postgres is not None
        standby = self._standby_server()
        if standby is None:
            return True
        return await wait_replayed(self.postgres.primary, standby, timeout)

    def region_replication(self) -> dict[str, dict[str, Any]]:
        """Each region's settings copy: how it replicates, the writer's view of it (WAL bytes
        not yet replayed or applied, replay lag) and its heartbeat age (lag + up to 1 s)."""
        assert self.postgres is not None
        try:
            streams = replication.writer_lag(self.postgres.primary)
        except (OSError, asyncpg.PostgresError):
            streams = {}
        out: dict[str, dict[str, Any]] = {}
        for region in self.regions.values():
            if region.settings_replica is self.postgres.primary:
                out[region.name] = {"kind": "writer", "heartbeat_age_s": 0.0}
                continue
            stream = streams.get(region.name) or streams.get(subscription_name(region.name))
            out[region.name] = {
                "kind": region.replication,
                "streaming": stream is not None and stream["state"] == "streaming",
                "lag_bytes": None if stream is None else stream["bytes"],
                "lag_s": None if stream is None else stream["seconds"],
                "heartbeat_age_s": replication.staleness(region.settings_replica),
            }
        return out

    # ---- readiness and facts ----------------------------------------------------------------

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every gateway answers /readyz 200 (its Redis and a media node that can take a room),
        and every running media node of its region is registered and healthy."""
        deadline = time.monotonic() + timeout
        for region in self.regions.values():
            nodes = sum(1 for m in region.media_nodes if m.process.running())
            for gateway in region.gateways:
                reason = "not started"
                while True:
                    gateway.process.check_alive()
                    ready, reason = probe(gateway.admin_url + READINESS_PATH)
                    if ready:
                        healthy = healthy_nodes(gateway.http_url + "/stats")
                        if healthy >= nodes:
                            break
                        reason = f"{healthy} of {nodes} media nodes healthy"
                    if time.monotonic() > deadline:
                        raise FleetNotReady(f"{gateway.name} not ready: {reason}")
                    time.sleep(0.2)

    def token(self, room: str, identity: str, **grants: Any) -> str:
        return mint_token(
            self.spec.api_key, self.spec.api_secret, room=room, identity=identity, **grants
        )

    def status(self) -> dict[str, Any]:
        assert self.postgres is not None
        return {
            "workdir": str(self.workdir),
            "home_region": self.home,
            "api_key": self.spec.api_key,
            # a local fleet's key pair: minting tokens for it is the point of running one
            "api_secret": self.spec.api_secret,
            "admin_token": self.spec.admin_token,
            "postgres_primary": self.postgres.primary.dsn,
            "regions": [
                {
                    "region": region.name,
                    "signal_urls": [g.signal_url for g in region.gateways],
                    "admin_url": region.gateways[0].admin_url,
                    "redis": region.redis.url,
                    "settings_replica": region.settings_replica.dsn,
                    "cloud": region.cloud,
                    "settings_replication": region.replication,
                    "gateways": [g.name for g in region.gateways],
                    "media_nodes": [m.name for m in region.media_nodes],
                }
                for region in self.regions.values()
            ],
        }


def _writer_dsn(servers: list[PostgresServer]) -> str:
    hosts = ",".join(f"{server.bind.address}:{server.port}" for server in servers)
    return f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"
