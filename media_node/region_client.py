"""The media node's calls to its region's gateways: registration and heartbeats.

Calls go through the media-signaling load balancer (or, in a local fleet, to each gateway in
turn) with the cluster secret; the first gateway that answers is asked first next time.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from media_node.settings import MediaNodeSettings
from rtcfleet.nodes import DrainReport, Heartbeat, NodeRegistration

log = logging.getLogger("rtcfleet.media")

HTTP_TIMEOUT_S = 3.0
REGISTER_PATH = "/internal/nodes/register"


class RegistrationFailed(RuntimeError):
    """No gateway accepted the node's registration."""


class UnknownToRegion(RuntimeError):
    """The region's registry forgot the node (Redis failover, a long pause): register again."""


class RegionClient:
    def __init__(self, settings: MediaNodeSettings) -> None:
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None
        self._gateway_index = 0

    async def open(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.settings.cluster_secret.get_secret_value()}",
            "Content-Type": "application/json",
        }

    async def _post(self, path: str, body: str) -> tuple[int, dict[str, Any]]:
        """POST to the first gateway that answers, starting with the last one that did."""
        assert self._http is not None, "region client not open"
        urls = self.settings.gateway_urls
        last_error: Exception | None = None
        for offset in range(len(urls)):
            index = (self._gateway_index + offset) % len(urls)
            try:
                async with self._http.post(
                    urls[index] + path, data=body, headers=self._headers()
                ) as response:
                    payload = await response.json(content_type=None)
                    self._gateway_index = index
                    return response.status, payload if isinstance(payload, dict) else {}
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                last_error = exc
        raise ConnectionError(f"no gateway reachable: {last_error}")

    async def register(self, registration: NodeRegistration) -> float:
        """Register the node; returns the heartbeat interval the region asks for."""
        status, body = await self._post(REGISTER_PATH, registration.model_dump_json())
        if status != 200:
            raise RegistrationFailed(f"gateway answered {status}: {body}")
        log.info("registered as %s in %s", registration.node_id, registration.region)
        return float(body.get("heartbeat_interval_seconds", 1.0))

    async def heartbeat(self, node_id: str, beat: Heartbeat) -> bool:
        """Send one heartbeat; True when an operator asked the node to drain."""
        status, body = await self._post(
            f"/internal/nodes/{node_id}/heartbeat", beat.model_dump_json()
        )
        if status == 404:
            raise UnknownToRegion(node_id)
        return status == 200 and bool(body.get("drain"))

    async def drained(self, node_id: str, report: DrainReport) -> None:
        """How the node's drain went, for the region's metrics."""
        status, body = await self._post(
            f"/internal/nodes/{node_id}/drained", report.model_dump_json()
        )
        if status != 200:
            log.warning("drain report refused (%d): %s", status, body)
