"""A local stand-in for a machine's cloud: AWS IMDSv2 (with the Spot interruption notice and
rebalance recommendation), Azure IMDS with Scheduled Events and managed identity, Azure
Resource Manager's instance protection, and an Auto Scaling front.

It runs on 127.0.0.1 in a thread of its own, so node processes and in-process agents both
reach it. The Auto Scaling front answers the lifecycle-action calls moto lacks and records
them; every other Auto Scaling call goes on to a moto server, or, without one, is answered
and recorded here too.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from rtcfleet.local import FleetSpec, LocalFleet
from rtcfleet.local.fleet import ServiceProcess
from rtcfleet.servers import free_port

# what an instance profile would give the node's boto3 (the double checks no signature)
AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
AUTOSCALING_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
RECORDED_ACTIONS = ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat")


@dataclass
class AwsInstance:
    instance_id: str
    region: str
    group: str
    lifecycle_state: str = "InService"
    # spot/instance-action and events/recommendations/rebalance documents (404 while None)
    spot_action: dict[str, str] | None = None
    rebalance: dict[str, str] | None = None
    tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    unauthenticated_reads: int = 0


@dataclass
class AzureInstance:
    name: str
    resource_id: str
    location: str = "westeurope"
    tags: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    incarnation: int = 1
    approvals: list[str] = field(default_factory=list)
    protection: list[bool] = field(default_factory=list)
    # the identity (client_id) each managed-identity token was asked for
    token_client_ids: list[str | None] = field(default_factory=list)
    # Key Vault: secret name -> value, served at /secrets/<name> to a Key Vault token only
    secrets: dict[str, str] = field(default_factory=dict)
    secret_reads: list[str] = field(default_factory=list)


class CloudDouble:
    def __init__(self, moto_url: str | None = None) -> None:
        self.moto_url = moto_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.aws: AwsInstance | None = None
        self.azure: AzureInstance | None = None
        # (action, parameters) of the Auto Scaling calls this front answered itself
        self.autoscaling_calls: list[tuple[str, dict[str, str]]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> CloudDouble:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_put("/latest/api/token", self._ec2_token)
        app.router.add_get("/latest/meta-data/{path:.*}", self._ec2_metadata)
        app.router.add_get("/metadata/instance", self._azure_instance)
        app.router.add_get("/metadata/scheduledevents", self._azure_events)
        app.router.add_post("/metadata/scheduledevents", self._azure_approve)
        app.router.add_get("/metadata/identity/oauth2/token", self._azure_token)
        app.router.add_get("/secrets/{name}", self._key_vault_secret)
        app.router.add_put("/subscriptions/{path:.*}", self._arm_put)
        app.router.add_post("/autoscaling", self._autoscaling)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def autoscaling_url(self) -> str:
        return f"{self.url}/autoscaling"

    def calls(self, action: str) -> list[dict[str, str]]:
        return [params for name, params in self.autoscaling_calls if name == action]

    # ---- AWS IMDSv2 -------------------------------------------------------------------------

    async def _ec2_token(self, request: web.Request) -> web.Response:
        assert self.aws is not None
        ttl = request.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return web.Response(status=400)
        token = uuid.uuid4().hex
        self.aws.tokens.add(token)
        self.aws.token_requests += 1
        return web.Response(text=token)

    async def _ec2_metadata(self, request: web.Request) -> web.Response:
        aws = self.aws
        assert aws is not None
        if request.headers.get("X-aws-ec2-metadata-token") not in aws.tokens:
            aws.unauthenticated_reads += 1
            return web.Response(status=401)
        items = {
            "instance-id": aws.instance_id,
            "placement/region": aws.region,
            "tags/instance/aws:autoscaling:groupName": aws.group,
            "autoscaling/target-lifecycle-state": aws.lifecycle_state,
            "local-ipv4": "127.0.0.1",
            "public-ipv4": "127.0.0.1",
        }
        if aws.spot_action is not None:
            items["spot/instance-action"] = json.dumps(aws.spot_action)
        if aws.rebalance is not None:
            items["events/recommendations/rebalance"] = json.dumps(aws.rebalance)
        value = items.get(request.match_info["path"])
        return web.Response(text=value) if value is not None else web.Response(status=404)

    # ---- Auto Scaling front -----------------------------------------------------------------

    async def _autoscaling(self, request: web.Request) -> web.Response:
        body = await request.read()
        params = dict(parse_qsl(body.decode()))
        action = params.pop("Action", "")
        params.pop("Version", None)
        if action in RECORDED_ACTIONS or self.moto_url is None:
            self.autoscaling_calls.append((action, params))
            xml = (
                f'<{action}Response xmlns="{AUTOSCALING_NS}"><{action}Result/>'
                f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                f"</{action}Response>"
            )
            return web.Response(text=xml, content_type="text/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.moto_url + "/", data=body, headers=headers) as response,
        ):
            return web.Response(
                status=response.status,
                body=await response.read(),
                content_type=response.content_type,
            )

    # ---- Azure IMDS, Scheduled Events, ARM --------------------------------------------------

    def _azure_request(self, request: web.Request) -> AzureInstance | None:
        if request.headers.get("Metadata") != "true" or "api-version" not in request.query:
            return None
        return self.azure

    async def _azure_instance(self, request: web.Request) -> web.Response:
        azure = self._azure_request(request)
        if azure is None:
            return web.Response(status=400)
        compute = {
            "name": azure.name,
            "location": azure.location,
            "resourceId": azure.resource_id,
            "tagsList": [{"name": k, "value": v} for k, v in azure.tags.items()],
        }
        network = {
            "interface": [
                {"ipv4": {"ipAddress": [{"privateIpAddress": "127.0.0.1", "publicIpAddress": ""}]}}
            ]
        }
        return web.json_response({"compute": compute, "network": network})

    async def _azure_events(self, request: web.Request) -> web.Response:
        azure = self._azure_request(request)
        if azure is None:
            return web.Response(status=400)
        return web.json_response({"DocumentIncarnation": azure.incarnation, "Events": azure.events})

    async def _azure_approve(self, request: web.Request) -> web.Response:
        azure = self._azure_request(request)
        if azure is None:
            return web.Response(status=400)
        body = await request.json()
        for start in body.get("StartRequests", []):
            azure.approvals.append(start["EventId"])
            azure.events = [e for e in azure.events if e["EventId"] != start["EventId"]]
            azure.incarnation += 1
        return web.Response(status=200)

    async def _azure_token(self, request: web.Request) -> web.Response:
        azure = self._azure_request(request)
        if azure is None or "resource" not in request.query:
            return web.Response(status=400)
        azure.token_client_ids.append(request.query.get("client_id"))
        return web.json_response(
            {"access_token": f"token-for-{request.query['resource']}", "token_type": "Bearer"}
        )

    async def _key_vault_secret(self, request: web.Request) -> web.Response:
        """Key Vault's Get Secret: a bearer token for https://vault.azure.net, api-version set."""
        azure = self.azure
        assert azure is not None
        name = request.match_info["name"]
        if request.headers.get("Authorization") != "Bearer token-for-https://vault.azure.net":
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        if "api-version" not in request.query:
            return web.json_response({"error": {"code": "BadParameter"}}, status=400)
        if name not in azure.secrets:
            return web.json_response({"error": {"code": "SecretNotFound"}}, status=404)
        azure.secret_reads.append(name)
        return web.json_response(
            {"value": azure.secrets[name], "id": f"{self.url}/secrets/{name}/0123456789abcdef"}
        )

    async def _arm_put(self, request: web.Request) -> web.Response:
        azure = self.azure
        assert azure is not None
        if request.path != azure.resource_id or not request.headers.get(
            "Authorization", ""
        ).startswith("Bearer token-for-https://management.azure.com"):
            return web.Response(status=403)
        body = await request.json()
        azure.protection.append(bool(body["properties"]["protectionPolicy"]["protectFromScaleIn"]))
        return web.json_response(body)

    def interrupt_spot(self, seconds_from_now: float, action: str = "terminate") -> None:
        """EC2's Spot interruption notice, as IMDS serves it (UTC, whole seconds)."""
        assert self.aws is not None
        self.aws.spot_action = {"action": action, "time": _iso_utc(seconds_from_now)}

    def recommend_rebalance(self) -> None:
        assert self.aws is not None
        self.aws.rebalance = {"noticeTime": _iso_utc(0)}

    def schedule_azure_event(self, event_type: str, seconds_from_now: float) -> str:
        assert self.azure is not None
        event_id = str(uuid.uuid4()).upper()
        self.azure.events.append(
            {
                "EventId": event_id,
                "EventType": event_type,
                "ResourceType": "VirtualMachine",
                "Resources": [self.azure.name],
                "EventStatus": "Scheduled",
                "NotBefore": email.utils.formatdate(time.time() + seconds_from_now, usegmt=True),
                "Description": (
                    "Virtual machine is being preempted"
                    if event_type == "Preempt"
                    else "Virtual machine is being scaled in"
                ),
                "EventSource": "Platform",
                "DurationInSeconds": -1,
            }
        )
        self.azure.incarnation += 1
        return event_id


def _iso_utc(seconds_from_now: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds_from_now)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def start_cloud_fleet(cloud: CloudDouble) -> LocalFleet:
    """One region, one gateway and one media node on AWS: the cloud settings the image's first
    boot sets reach every media node through ``spec.media_env`` (tests switch it per node)."""
    fleet = LocalFleet(
        FleetSpec(
            regions=1, gateways=1, media=1, workers_per_node=1, media_env=cloud_env(cloud, "aws")
        )
    )
    return fleet.start()


def exit_code(node: ServiceProcess) -> int | None:
    """The node process's exit code, or None while it runs."""
    try:
        return node.process.wait(0)
    except subprocess.TimeoutExpired:
        return None


def cloud_env(cloud: CloudDouble, name: str) -> dict[str, str]:
    """A media node's environment on ``name`` (aws/azure), its metadata and APIs the double."""
    env = {
        "RTCFLEET_MEDIA_CLOUD": name,
        "RTCFLEET_MEDIA_METADATA_URL": cloud.url,
        "RTCFLEET_MEDIA_LIFECYCLE_HEARTBEAT_SECONDS": "1",
        "RTCFLEET_MEDIA_SCALE_IN_IDLE_SECONDS": "1",
    }
    if name == "aws":
        return env | AWS_CREDENTIALS | {"RTCFLEET_MEDIA_CLOUD_API_URL": cloud.autoscaling_url}
    return env | {"RTCFLEET_MEDIA_CLOUD_API_URL": cloud.url}
