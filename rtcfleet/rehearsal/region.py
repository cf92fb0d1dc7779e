"""A rehearsed region: node images booted as instances, in the cloud the doubles play.

``RehearsedRegion`` builds (or reuses) the root filesystem, builds the bundle and the image
with the one image build script, starts the region's Redis and Postgres and the cloud's
doubles on the rehearsal bridge, publishes each role's settings and secret as the stacks do
(SSM parameter, Secrets Manager secret), and launches instances that boot with the user data
the stacks' launch templates carry.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from infra.aws.node_groups import user_data
from infra.node_boot import boot_script
from infra.spec import (
    ADMIN_PORT,
    CLIENT_SIGNALING_PORT,
    INTERNAL_PATH_PREFIX,
    MEDIA_PORT_MAX,
    MEDIA_PORT_MIN,
    TURN_PORT,
    Role,
)
from rtcfleet import bus
from rtcfleet.nodes import NodeState
from rtcfleet.rehearsal.cloud import CloudDoubles, CloudInstance
from rtcfleet.rehearsal.instance import Instance, NodeImage, build_image
from rtcfleet.rehearsal.network import Bridge
from rtcfleet.rehearsal.rootfs import RehearsalError, ensure_rootfs
from rtcfleet.servers import PostgresServer, RedisServer
from rtcfleet.servers.ports import Bind

# how long the end of a rehearsal waits for an instance to power off before killing it
END_POWER_OFF_S = 5.0
UNITS = {Role.GATEWAY: "rtcfleet-gateway.service", Role.MEDIA_NODE: "rtcfleet-media.service"}
SERVICE_USERS = {
    "rtcfleet-gateway.service": "rtcfleet",
    "rtcfleet-media.service": "rtcfleet",
    "rtcfleet-turn.service": "turnserver",
}


def build_bundle(out_dir: Path) -> Path:
    """``rtcfleet bundle``, as the bake workflow runs it."""
    checkout = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "rtcfleet", "bundle", "--out", str(out_dir)],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RehearsalError(f"rtcfleet bundle failed:\n{result.stderr[-2000:]}")
    return Path(result.stdout.split()[0])


@dataclass
class BootedNode:
    """An instance of a role, and what its boot took."""

    role: Role
    instance: Instance
    cloud: CloudInstance
    boot_seconds: float = 0.0
    ready_seconds: float = 0.0
    cloud_name: str = "aws"

    @property
    def node_id(self) -> str:
        """The id the node registers under (Azure: the VM name, as first boot derives it)."""
        if self.cloud_name == "azure":
            return self.cloud.azure_name.replace("_", "-")
        return self.cloud.instance_id

    @property
    def address(self) -> str:
        return self.instance.address


@dataclass
class RehearsedRegion:
    env: str = "rehearsal"
    region: str = "eu-west-1"
    workdir: Path | None = None
    bundle: Path | None = None
    log: Callable[[str], None] = print
    secrets: dict[str, str] = field(
        default_factory=lambda: {
            "apiSecret": secrets.token_hex(24),
            "clusterSecret": secrets.token_hex(24),
            "adminToken": secrets.token_hex(16),
            "dbPassword": "",
        }
    )
    image: NodeImage | None = None
    bridge: Bridge | None = None
    doubles: CloudDoubles | None = None
    redis_server: RedisServer | None = None
    postgres: PostgresServer | None = None
    nodes: list[BootedNode] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _own_workdir: bool = False

    # ---- the image --------------------------------------------------------------------------

    def build(self) -> NodeImage:
        if self.workdir is None:
            # enterable by the unprivileged Postgres user (a mktemp folder is 0700)
            self.workdir = Path(tempfile.mkdtemp(prefix="rtcfleet-rehearsal-"))
            self.workdir.chmod(0o755)
            self._own_workdir = True
        started = time.monotonic()
        rootfs = ensure_rootfs(log=self.log)
        self.timings["rootfs_seconds"] = time.monotonic() - started
        if self.bundle is None:
            started = time.monotonic()
            self.bundle = build_bundle(self.workdir / "dist")
            self.timings["bundle_seconds"] = time.monotonic() - started
        self.image = build_image(rootfs, self.bundle, self.workdir / "image")
        self.timings["image_build_seconds"] = self.image.build_seconds
        self.log(f"image built in {self.image.build_seconds:.1f} s from {self.bundle.name}")
        return self.image

    # ---- the region around the instances ------------------------------------------------------

    def start(self) -> RehearsedRegion:
        if self.image is None:
            self.build()
        assert self.workdir is not None
        self.bridge = Bridge().create()
        host = self.bridge.address
        self.doubles = CloudDoubles(host).start()
        self.redis_server = RedisServer(self.workdir / "redis", bind=Bind(host)).start()
        self.postgres = PostgresServer(self.workdir / "postgres", bind=Bind(host)).init_primary()
        self.postgres.start()
        return self

    def settings_documents(self, gateway_address: str) -> dict[Role, dict[str, Any]]:
        """The documents the stacks publish, pointing at this region's servers."""
        assert self.redis_server is not None and self.postgres is not None
        redis_doc = {
            "host": self.redis_server.bind.address,
            "port": self.redis_server.port,
            "tls": False,
        }
        postgres_doc = {
            "readHost": self.postgres.bind.address,
            "port": self.postgres.port,
            "database": "postgres",
            "user": "postgres",
            "tls": False,
        }
        return {
            Role.GATEWAY: {
                "env": self.env,
                "region": self.region,
                "redis": redis_doc,
                "postgres": {**postgres_doc, "writeHost": self.postgres.bind.address},
                "signalingPort": CLIENT_SIGNALING_PORT,
                "adminPort": ADMIN_PORT,
                "turnPort": TURN_PORT,
            },
            Role.MEDIA_NODE: {
                "env": self.env,
                "region": self.region,
                "redis": redis_doc,
                "postgres": postgres_doc,
                "signalingUrl": (
                    f"http://{gateway_address}:{CLIENT_SIGNALING_PORT}{INTERNAL_PATH_PREFIX}"
                ),
                "mediaPorts": [MEDIA_PORT_MIN, MEDIA_PORT_MAX],
                "turnPort": TURN_PORT,
                "drainTimeoutSeconds": 30,
                # a STUN server outside the NAT, for clouds that do not show the public IP
                "stunUrls": [self.doubles.stun_url] if self.doubles else [],
            },
        }

    def _aws(self, service: str) -> Any:
        import boto3

        assert self.doubles is not None
        return boto3.client(
            service,
            endpoint_url=self.doubles.moto_url,
            region_name=self.region,
            aws_access_key_id="rehearsal",
            aws_secret_access_key="rehearsal",
        )

    def _publish(self, role: Role) -> None:
        """The role's settings parameter and secret, as the region's stack writes them."""
        gateways = [n for n in self.nodes if n.role is Role.GATEWAY]
        if role is Role.MEDIA_NODE and not gateways:
            raise RehearsalError("launch a gateway first: media nodes register with it")
        gateway_address = gateways[0].address if gateways else ""
        document = self.settings_documents(gateway_address)[role]
        assert self.doubles is not None
        self.doubles.vault[f"{role.value}-settings"] = json.dumps(document)
        self.doubles.vault[f"{role.value}-secrets"] = json.dumps(self.secrets)
        ssm, secrets_manager = self._aws("ssm"), self._aws("secretsmanager")
        ssm.put_parameter(
            Name=self.parameter(role), Value=json.dumps(document), Type="String", Overwrite=True
        )
        with contextlib.suppress(secrets_manager.exceptions.ResourceExistsException):
            secrets_manager.create_secret(
                Name=self.secret_id(role), SecretString=json.dumps(self.secrets)
            )

    def parameter(self, role: Role) -> str:
        return f"/rtcfleet/{self.env}/{self.region}/{role.value}/settings"

    def secret_id(self, role: Role) -> str:
        return f"rtcfleet/{self.env}/{self.region}/{role.value}"

    # ---- instances ----------------------------------------------------------------------------

    def launch(
        self,
        role: Role,
        *,
        cloud: str = "aws",
        # the address the cloud's 1:1 NAT gives it ("self": its own private address)
        public_ip: str | None = None,
        extra_user_data: dict[str, str] | None = None,
    ) -> BootedNode:
        """Boots one instance of ``role`` with the user data its node group gives it."""
        assert self.image is not None and self.bridge is not None and self.doubles is not None
        assert self.workdir is not None
        self._publish(role)
        index = len(self.nodes) + 1
        name = f"{role.value}-{index}"
        namespace, address = self.bridge.attach(name)
        if public_ip == "self":
            public_ip = address
        instance_id = f"i-0{secrets.token_hex(8)}"
        cloud_instance = self.doubles.add(
            CloudInstance(
                address=address,
                instance_id=instance_id,
                region=self.region,
                tags={"rtcfleet:role": role.value, "rtcfleet:env": self.env},
                public_ip=public_ip,
                azure_name=f"{name}_{index}",
            )
        )
        if cloud == "aws":
            script = base64.b64decode(
                user_data(role, self.env, self.region, self.parameter(role), self.secret_id(role))
            ).decode()
        elif cloud == "azure":
            # the variables the scale set's custom data carries (infra.azure.node_groups)
            script = base64.b64decode(
                boot_script(
                    role,
                    {
                        "RTCFLEET_ROLE": role.value,
                        "RTCFLEET_ENV": self.env,
                        "RTCFLEET_REGION": self.region,
                        "RTCFLEET_CLOUD": "azure",
                        "RTCFLEET_KEY_VAULT_URI": self.doubles.metadata_url,
                        "RTCFLEET_SECRET_NAME": f"{role.value}-secrets",
                        "RTCFLEET_SETTINGS_SECRET_NAME": f"{role.value}-settings",
                    },
                )
            ).decode()
        else:
            raise RehearsalError(f"cloud {cloud!r}: aws or azure")
        if extra_user_data:
            variables = dict(
                line.split("=", 1)
                for line in script.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0].splitlines()
            )
            script = base64.b64decode(boot_script(role, variables | extra_user_data)).decode()
        # where this cloud's endpoints are: the one thing the rehearsal adds to the image
        dropin = "\n".join(
            [
                "[Service]",
                f"Environment=RTCFLEET_METADATA_URL={self.doubles.metadata_url}",
                f"Environment=RTCFLEET_AWS_ENDPOINT_URL={self.doubles.api_url}",
                f"Environment=AWS_EC2_METADATA_SERVICE_ENDPOINT={self.doubles.metadata_url}/",
                "",
            ]
        )
        instance = Instance(
            name=name,
            image=self.image,
            workdir=self.workdir / "instances" / name,
            namespace=namespace,
            address=address,
            files={
                "/var/lib/rtcfleet-rehearsal/user-data": script,
                "/etc/systemd/system/rtcfleet-first-boot.service.d/cloud.conf": dropin,
            },
        )
        node = BootedNode(role, instance, cloud_instance, cloud_name=cloud)
        self.nodes.append(node)
        instance.boot()
        return node

    def wait_ready(self, node: BootedNode, timeout: float = 120) -> BootedNode:
        """systemd done booting, then the role ready: boot-to-ready measured from ``boot()``."""
        state, node.boot_seconds = node.instance.wait_system(timeout)
        deadline = node.instance.booted_at + timeout
        while True:
            if self._role_ready(node):
                node.ready_seconds = time.monotonic() - node.instance.booted_at
                return node
            if time.monotonic() > deadline:
                raise RehearsalError(
                    f"{node.instance.name} ({state}) not ready after {timeout:.0f} s:\n"
                    + node.instance.run("systemctl", "--failed", "--no-legend").stdout
                    + node.instance.journal("rtcfleet-first-boot.service")
                    + node.instance.journal(UNITS[node.role])
                )
            time.sleep(0.3)

    def _role_ready(self, node: BootedNode) -> bool:
        if node.role is Role.GATEWAY:
            # alive and serving (its readiness also needs a media node: see ``region_ready``)
            url = f"http://{node.address}:{CLIENT_SIGNALING_PORT}/healthz"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False
        assert self.redis_server is not None
        client = redis.Redis(host=self.redis_server.bind.address, port=self.redis_server.port)
        try:
            return bool(client.exists(bus.node_key(node.node_id)))
        finally:
            client.close()

    def region_ready(self, timeout: float = 60) -> float:
        """Seconds until every gateway answers ready (it needs a registered media node)."""
        started = time.monotonic()
        for node in self.nodes:
            if node.role is not Role.GATEWAY:
                continue
            url = f"http://{node.address}:{CLIENT_SIGNALING_PORT}/readyz"
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() - started > timeout:
                    raise RehearsalError(f"{node.instance.name}: {url} not ready")
                time.sleep(0.3)
        return time.monotonic() - started

    def retire(self, node: BootedNode, stale_after: float = 5.0) -> None:
        """Powers one instance off and removes its namespace; a media node is then waited out
        of placement (its last heartbeat older than the gateways' staleness bound)."""
        node.instance.stop()
        if node.role is Role.MEDIA_NODE and self.redis_server is not None:
            client = redis.Redis(host=self.redis_server.bind.address, port=self.redis_server.port)
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    raw = client.get(bus.node_key(node.node_id))
                    if (
                        raw is None
                        or time.time() - NodeState.model_validate_json(raw).heartbeat_at
                        > stale_after + 1
                    ):
                        break
                    time.sleep(0.5)
            finally:
                client.close()
        if self.bridge is not None:
            self.bridge.detach(node.instance.namespace)
        if node in self.nodes:
            self.nodes.remove(node)
        if self.doubles is not None:
            self.doubles.instances.pop(node.address, None)

    def stop(self) -> None:
        """Ends the rehearsal: every instance powers off side by side. A media node still
        hosting a room drains on power-off for its whole bound, which nothing here waits for:
        an instance not off after ``END_POWER_OFF_S`` is killed."""
        for node in self.nodes:
            node.instance.power_off()
        for node in reversed(self.nodes):
            node.instance.stop(timeout=END_POWER_OFF_S)
            if self.bridge is not None:
                self.bridge.detach(node.instance.namespace)
        self.nodes.clear()
        for server in (self.postgres, self.redis_server):
            if server is not None:
                server.stop()
        if self.doubles is not None:
            self.doubles.stop()
        if self.bridge is not None:
            self.bridge.remove()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
