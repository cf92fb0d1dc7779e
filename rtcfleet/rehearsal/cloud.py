"""The cloud around rehearsed instances, played by doubles that answer as the cloud does.

- AWS IMDSv2: session tokens (PUT, TTL-checked), instance identity, tags, Auto Scaling
  lifecycle state and the instance profile's credentials; each instance is told apart by the
  address its request comes from.
- AWS APIs: moto (SSM Parameter Store, Secrets Manager) behind a front that answers
  ``AccessDeniedException`` to a role's reads until its permission "arrives", as IAM does while
  a policy is still being attached.
- Azure IMDS: compute facts and tags, and the empty ``publicIpAddress`` that Standard public
  IPs really give; a STUN server that answers as the VNet's 1:1 NAT would map each instance.

All of it listens on the rehearsal bridge's address, in one thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
from aiohttp import web

from rtcfleet.servers.ports import free_port

DENIED_TARGETS = frozenset({"secretsmanager.GetSecretValue"})
STUN_MAGIC = 0x2112A442


@dataclass
class CloudInstance:
    """What the cloud knows about one instance."""

    address: str
    instance_id: str
    region: str
    tags: dict[str, str] = field(default_factory=dict)
    public_ip: str | None = None
    lifecycle_state: str = "InService"
    # Azure only: the VM name and its resource id
    azure_name: str = ""
    tokens: set[str] = field(default_factory=set)


class CloudDoubles:
    """IMDS (AWS and Azure), an AWS API front over moto, and STUN, on one address."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.metadata_port = free_port(host)
        self.api_port = free_port(host)
        self.stun_port = free_port(host)
        self.instances: dict[str, CloudInstance] = {}
        # Key Vault's secrets by name (Azure nodes read their settings and secrets there)
        self.vault: dict[str, str] = {}
        self.access_key = "ASIA" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_hex(20)
        # monotonic time from which the instance role may read its secrets
        self.secret_read_allowed_at = 0.0
        self.denied_reads = 0
        self.allowed_reads = 0
        self._moto: Any = None
        self._moto_url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._api_runner: web.AppRunner | None = None
        self._stun: asyncio.DatagramTransport | None = None

    @property
    def metadata_url(self) -> str:
        return f"http://{self.host}:{self.metadata_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def moto_url(self) -> str:
        return self._moto_url

    @property
    def stun_url(self) -> str:
        return f"stun:{self.host}:{self.stun_port}"

    def start(self) -> CloudDoubles:
        from moto.server import ThreadedMotoServer

        # moto's server logs every request it answers
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        moto_port = free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        self._moto.start()
        self._moto_url = f"http://127.0.0.1:{moto_port}"
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            for runner in (self._runner, self._api_runner):
                if runner is not None:
                    await runner.cleanup()
            if self._stun is not None:
                self._stun.close()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if self._moto is not None:
            self._moto.stop()

    def add(self, instance: CloudInstance) -> CloudInstance:
        self.instances[instance.address] = instance
        return instance

    def deny_secret_reads_for(self, seconds: float) -> None:
        """The instance role's read permission arrives ``seconds`` from now."""
        self.secret_read_allowed_at = time.monotonic() + seconds

    async def _start(self) -> None:
        metadata = web.Application()
        metadata.router.add_put("/latest/api/token", self._ec2_token)
        metadata.router.add_get("/latest/meta-data/{path:.*}", self._ec2_metadata)
        metadata.router.add_get("/metadata/instance", self._azure_instance)
        metadata.router.add_get("/metadata/scheduledevents", self._azure_events)
        metadata.router.add_get("/metadata/identity/oauth2/token", self._azure_token)
        # Key Vault, served here too: its URL is whatever the node's custom data names
        metadata.router.add_get("/secrets/{name}", self._key_vault_secret)
        self._runner = web.AppRunner(metadata, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.metadata_port).start()
        api = web.Application(client_max_size=16 * 1024 * 1024)
        api.router.add_route("*", "/{path:.*}", self._aws_api)
        self._api_runner = web.AppRunner(api, access_log=None)
        await self._api_runner.setup()
        await web.TCPSite(self._api_runner, self.host, self.api_port).start()
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _NatStun(self), local_addr=(self.host, self.stun_port)
        )
        self._stun = transport

    # ---- AWS IMDSv2 -------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> CloudInstance | None:
        return self.instances.get(request.remote or "")

    async def _ec2_token(self, request: web.Request) -> web.Response:
        instance = self._caller(request)
        ttl = request.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if instance is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return web.Response(status=400)
        token = secrets.token_urlsafe(32)
        instance.tokens.add(token)
        return web.Response(text=token)

    async def _ec2_metadata(self, request: web.Request) -> web.Response:
        instance = self._caller(request)
        if instance is None or request.headers.get("X-aws-ec2-metadata-token") not in (
            instance.tokens
        ):
            return web.Response(status=401)
        role = "rtcfleet-node"
        items = {
            "instance-id": instance.instance_id,
            "placement/region": instance.region,
            "local-ipv4": instance.address,
            "autoscaling/target-lifecycle-state": instance.lifecycle_state,
            "iam/security-credentials/": role,
            f"iam/security-credentials/{role}": json.dumps(
                {
                    "Code": "Success",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": self.access_key,
                    "SecretAccessKey": self.secret_key,
                    "Token": "rehearsal-session-token",
                    "Expiration": time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600)
                    ),
                    "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            ),
        }
        if instance.public_ip:
            items["public-ipv4"] = instance.public_ip
        for key, tag in instance.tags.items():
            items[f"tags/instance/{key}"] = tag
        found = items.get(request.match_info["path"])
        return web.Response(text=found) if found is not None else web.Response(status=404)

    # ---- AWS APIs: moto behind a permission that arrives late --------------------------------

    async def _aws_api(self, request: web.Request) -> web.Response:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        if target in DENIED_TARGETS and time.monotonic() < self.secret_read_allowed_at:
            self.denied_reads += 1
            message = (
                "User: arn:aws:sts::123456789012:assumed-role/rtcfleet-node/i is not authorized "
                f"to perform: {target.replace('.', ':')} because no identity-based policy "
                "allows the action"
            )
            return web.json_response(
                {"__type": "AccessDeniedException", "Message": message},
                status=400,
                content_type="application/x-amz-json-1.1",
                headers={"x-amzn-RequestId": str(uuid.uuid4())},
            )
        if target in DENIED_TARGETS:
            self.allowed_reads += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self._moto_url + request.path_qs,
                data=body,
                headers=headers,
            ) as response,
        ):
            payload = await response.read()
            passed = {
                k: v
                for k, v in response.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
            }
            return web.Response(status=response.status, body=payload, headers=passed)

    # ---- Azure IMDS -------------------------------------------------------------------------

    async def _azure_instance(self, request: web.Request) -> web.Response:
        instance = self._caller(request)
        if (
            instance is None
            or request.headers.get("Metadata") != "true"
            or "api-version" not in request.query
        ):
            return web.Response(status=400)
        compute = {
            "name": instance.azure_name or instance.instance_id,
            "location": instance.region,
            "resourceId": f"/subscriptions/0/resourceGroups/rehearsal/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/media/virtualMachines/{instance.azure_name}",
            "tagsList": [{"name": k, "value": v} for k, v in instance.tags.items()],
        }
        # Standard public IPs are not shown to the VM: the field is there, and empty
        address = {"privateIpAddress": instance.address, "publicIpAddress": ""}
        network = {"interface": [{"ipv4": {"ipAddress": [address]}}]}
        return web.json_response({"compute": compute, "network": network})

    async def _azure_events(self, request: web.Request) -> web.Response:
        if self._caller(request) is None or request.headers.get("Metadata") != "true":
            return web.Response(status=400)
        return web.json_response({"DocumentIncarnation": 1, "Events": []})

    async def _azure_token(self, request: web.Request) -> web.Response:
        if (
            self._caller(request) is None
            or request.headers.get("Metadata") != "true"
            or "resource" not in request.query
        ):
            return web.Response(status=400)
        token = f"rehearsal-token-for-{request.query['resource']}"
        return web.json_response({"access_token": token, "token_type": "Bearer"})

    async def _key_vault_secret(self, request: web.Request) -> web.Response:
        if (
            request.headers.get("Authorization")
            != "Bearer rehearsal-token-for-https://vault.azure.net"
        ):
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        if time.monotonic() < self.secret_read_allowed_at:
            self.denied_reads += 1
            # the identity's role assignment has not reached Key Vault yet
            return web.json_response({"error": {"code": "Forbidden"}}, status=403)
        name = request.match_info["name"]
        if name not in self.vault:
            return web.json_response({"error": {"code": "SecretNotFound"}}, status=404)
        self.allowed_reads += 1
        return web.json_response({"value": self.vault[name], "id": f"/secrets/{name}"})


class _NatStun(asyncio.DatagramProtocol):
    """A STUN server outside the VNet: it sees each instance at its public (1:1 NAT) address."""

    def __init__(self, doubles: CloudDoubles) -> None:
        self.doubles = doubles
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 20 or self.transport is None:
            return
        kind, _, magic = struct.unpack("!HHI", data[:8])
        if kind != 0x0001 or magic != STUN_MAGIC:
            return
        instance = self.doubles.instances.get(addr[0])
        mapped = instance.public_ip if instance and instance.public_ip else addr[0]
        port = addr[1] ^ (STUN_MAGIC >> 16)
        packed = struct.unpack("!I", socket.inet_aton(mapped))[0] ^ STUN_MAGIC
        value = struct.pack("!BBHI", 0, 1, port, packed)
        attribute = struct.pack("!HH", 0x0020, len(value)) + value
        response = struct.pack("!HHI", 0x0101, len(attribute), STUN_MAGIC) + data[8:20]
        self.transport.sendto(response + attribute, addr)
