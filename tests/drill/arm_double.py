"""A local stand-in for the Azure Resource Manager endpoints the drill and the bake call.

Shapes follow Azure's REST API reference: a long-running POST/PATCH/DELETE answers ``202
Accepted`` with ``Azure-AsyncOperation`` and ``Location`` headers (``Retry-After: 0``), a PUT
answers ``201 Created`` with the resource and an ``Azure-AsyncOperation`` header; the
operation URL answers ``{"status": "InProgress"}`` once, then ``Succeeded`` (or ``Failed`` with
an ``error``); the ``Location`` URL answers the operation's result. It serves HTTPS on
127.0.0.1 with a certificate of its own (the SDK refuses bearer tokens over plain HTTP), runs in
a thread, and records every request (method, path, api-version, body) in order.

Hooks (``on``) let a test tie an action to something real, such as a local fleet's region.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from rtcfleet.servers import free_port


@dataclass
class Request:
    method: str
    path: str
    api_version: str
    body: Any


@dataclass
class Operation:
    result: Any = None
    status: int = 200
    polls: int = 0
    error: str | None = None


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written to ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "arm.pem", directory / "arm-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class ArmDouble:
    directory: Path
    # resource id (lower case) -> its JSON, for GETs and for what the handlers change
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    # "<action> <resource id lower>" -> callback(resource id) run when the action completes
    on: dict[str, Callable[[str], Any]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_file, key = self_signed(self.directory)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(self.ca_file, key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> ArmDouble:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._ssl).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # ---- what tests read --------------------------------------------------------------------

    def calls(self) -> list[str]:
        """``METHOD /path`` of each request, operation polls left out."""
        return [
            f"{r.method} {r.path}"
            for r in self.requests
            if not r.path.startswith(("/operations/", "/locations/", "/health/"))
        ]

    def put(self, resource_id: str, document: dict[str, Any]) -> None:
        self.resources[resource_id.lower()] = {"id": resource_id, **document}

    # ---- the API ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            text = await request.text()
            body = json.loads(text) if text else None
        path = request.path
        self.requests.append(
            Request(request.method, path, request.query.get("api-version", ""), body)
        )
        if path.startswith("/health/"):
            return self._health(path.removeprefix("/health/"))
        if path.startswith("/operations/"):
            return self._operation_status(path.rsplit("/", 1)[-1])
        if path.startswith("/locations/"):
            return self._operation_result(path.rsplit("/", 1)[-1])
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "AuthenticationFailed", "no bearer token")
        resource, _, action = path.rpartition("/")
        if request.method == "POST":
            return await self._action(resource, action, body)
        if request.method == "GET":
            return self._get(path, request)
        if request.method in ("PUT", "PATCH"):
            return self._write(path, request.method, body)
        if request.method == "DELETE":
            return self._delete(path)
        return _error(405, "MethodNotAllowed", request.method)

    def _health(self, region: str) -> web.Response:
        stopped = any(
            r.get("properties", {}).get("operationalState") == "Stopped"
            for key, r in self.resources.items()
            if "/applicationgateways/" in key and r.get("tags", {}).get("region") == region
        )
        return web.json_response({"ready": not stopped}, status=503 if stopped else 200)

    def _accepted(self, result: Any = None, status: int = 200) -> web.Response:
        operation = uuid.uuid4().hex
        self.operations[operation] = Operation(result=result, status=status)
        return web.Response(
            status=202,
            headers={
                "Azure-AsyncOperation": f"{self.url}/operations/{operation}",
                "Location": f"{self.url}/locations/{operation}",
                "Retry-After": "0",
            },
        )

    def _operation_status(self, operation: str) -> web.Response:
        state = self.operations.get(operation)
        if state is None:
            return _error(404, "NotFound", operation)
        state.polls += 1
        if state.polls == 1:
            return web.json_response({"name": operation, "status": "InProgress"})
        if state.error:
            return web.json_response(
                {
                    "name": operation,
                    "status": "Failed",
                    "error": {"code": "Failed", "message": state.error},
                }
            )
        return web.json_response({"name": operation, "status": "Succeeded"})

    def _operation_result(self, operation: str) -> web.Response:
        state = self.operations.get(operation)
        if state is None:
            return _error(404, "NotFound", operation)
        if state.result is None:
            return web.Response(status=204)
        return web.json_response(state.result, status=state.status)

    async def _action(self, resource: str, action: str, body: Any) -> web.Response:
        key = resource.lower()
        if key not in self.resources:
            return _error(404, "ResourceNotFound", resource)
        document = self.resources[key]
        properties = document.setdefault("properties", {})
        result: Any = None
        if action in ("stop", "start") and "/applicationgateways/" in key:
            properties["operationalState"] = "Stopped" if action == "stop" else "Running"
        elif action in ("deallocate", "start") and "/virtualmachinescalesets/" in key:
            properties["powerState"] = "deallocated" if action == "deallocate" else "running"
        elif action == "runCommand":
            result = {
                "value": [
                    {
                        "code": "ProvisioningState/succeeded",
                        "level": "Info",
                        "displayStatus": "Provisioning succeeded",
                        "message": "Enable succeeded",
                    }
                ]
            }
            document.setdefault("runCommands", []).append(body)
        elif action == "run" and "/imagetemplates/" in key:
            properties["lastRunStatus"] = {"runState": "Succeeded"}
        else:
            return _error(400, "InvalidAction", f"{action} on {resource}")
        hook = self.on.get(f"{action} {key}")
        if hook is not None:
            await asyncio.to_thread(hook, resource)
        return self._accepted(result)

    def _get(self, path: str, request: web.Request) -> web.Response:
        key = path.lower()
        if key in self.resources:
            return web.json_response(self.resources[key])
        children = [
            document for child, document in self.resources.items() if child.rsplit("/", 1)[0] == key
        ]
        if children or key.endswith(("/virtualmachines", "/versions")):
            return web.json_response({"value": children})
        return _error(404, "ResourceNotFound", path)

    def _write(self, path: str, method: str, body: Any) -> web.Response:
        key = path.lower()
        current = self.resources.get(key)
        if method == "PATCH" and current is None:
            return _error(404, "ResourceNotFound", path)
        document = _merge(current or {"id": path, "name": path.rsplit("/", 1)[-1]}, body or {})
        hook = self.on.get(f"{method} {key}")
        if hook is not None:
            hook(path)
        self.resources[key] = document
        if "/flexibleservers/" in key:
            replica = document["properties"].pop("replica", {}) or {}
            if replica.get("promoteMode"):
                document["properties"]["replica"] = {"role": "None"}
                document["properties"]["replicationRole"] = "None"
        if "/galleries/" in key and "/versions/" in key:
            profile = document["properties"].setdefault("publishingProfile", {})
            profile.setdefault("publishedDate", datetime.datetime.now(datetime.UTC).isoformat())
            document["properties"]["provisioningState"] = "Succeeded"
        self.resources[key] = document
        if method == "PUT":
            operation = uuid.uuid4().hex
            self.operations[operation] = Operation(result=document)
            return web.json_response(
                {**document, "properties": {**document.get("properties", {}),
                                            "provisioningState": "Creating"}},
                status=201,
                headers={
                    "Azure-AsyncOperation": f"{self.url}/operations/{operation}",
                    "Retry-After": "0",
                },
            )  # fmt: skip
        return self._accepted(document, status=200)

    def _delete(self, path: str) -> web.Response:
        if self.resources.pop(path.lower(), None) is None:
            return web.Response(status=204)
        return self._accepted(None)


def _merge(current: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class StaticToken:
    """A credential that hands the SDK a fixed token (the double checks only its presence)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("drill-test-token", 4102444800)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("drill-test-token", 4102444800)
