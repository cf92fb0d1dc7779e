"""What a machine learns about itself from its cloud's link-local metadata service.

AWS: IMDSv2 (a session token from ``PUT /latest/api/token`` sent with every read), the
instance's identity, tags, Auto Scaling target lifecycle state, the Spot interruption notice and
the rebalance recommendation. Azure: the Instance Metadata
Service (``Metadata: true``), Scheduled Events (read and approve) and managed-identity tokens.
Both base URLs are overridable so tests serve them from a local server.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

LINK_LOCAL = "http://169.254.169.254"
TIMEOUT = aiohttp.ClientTimeout(total=5)


class MetadataError(RuntimeError):
    """The metadata service did not answer as documented."""


def _iso_time(value: object, what: str) -> float:
    """Epoch seconds of an IMDS timestamp (``2017-09-18T08:22:00Z``)."""
    try:
        parsed = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise MetadataError(f"{what}: {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        raise MetadataError(f"{what} is not JSON: {text[:80]!r}") from None
    if not isinstance(body, dict):
        raise MetadataError(f"{what} is not a JSON object")
    return body


@dataclass(frozen=True)
class SpotInstanceAction:
    """EC2's Spot interruption notice: what happens to the instance (``terminate``, ``stop``,
    ``hibernate``) and when (epoch seconds; two minutes after the notice, except hibernate)."""

    action: str
    time: float


class Ec2Metadata:
    """IMDSv2 client: token-authenticated reads of ``/latest/meta-data/...``."""

    TOKEN_TTL_SECONDS = 21600
    # Renewed this long before it expires, so no read races the expiry.
    TOKEN_MARGIN_SECONDS = 60

    def __init__(self, session: aiohttp.ClientSession, base_url: str | None = None) -> None:
        self.session = session
        self.base_url = (base_url or LINK_LOCAL).rstrip("/")
        self._token: str | None = None
        self._token_expires = 0.0

    async def token(self) -> str:
        if self._token is None or time.monotonic() > self._token_expires:
            async with self.session.put(
                f"{self.base_url}/latest/api/token",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(self.TOKEN_TTL_SECONDS)},
                timeout=TIMEOUT,
            ) as response:
                if response.status != 200:
                    raise MetadataError(f"IMDSv2 token request answered {response.status}")
                self._token = (await response.text()).strip()
            self._token_expires = (
                time.monotonic() + self.TOKEN_TTL_SECONDS - self.TOKEN_MARGIN_SECONDS
            )
        return self._token

    async def get(self, path: str) -> str | None:
        """A metadata item's text, or ``None`` where the instance has no such item (404)."""
        for attempt in range(2):
            async with self.session.get(
                f"{self.base_url}/latest/{path.lstrip('/')}",
                headers={"X-aws-ec2-metadata-token": await self.token()},
                timeout=TIMEOUT,
            ) as response:
                if response.status == 401 and attempt == 0:
                    self._token = None  # expired or revoked: fetch a fresh one once
                    continue
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise MetadataError(f"IMDS {path} answered {response.status}")
                return (await response.text()).strip()
        raise MetadataError(f"IMDS {path} refused a fresh token")

    async def require(self, path: str) -> str:
        value = await self.get(path)
        if value is None:
            raise MetadataError(f"IMDS has no {path}")
        return value

    async def instance_id(self) -> str:
        return await self.require("meta-data/instance-id")

    async def region(self) -> str:
        return await self.require("meta-data/placement/region")

    async def tag(self, key: str) -> str | None:
        """An instance tag (the launch template enables tags in metadata)."""
        return await self.get(f"meta-data/tags/instance/{key}")

    async def target_lifecycle_state(self) -> str | None:
        """``InService``, ``Terminated``...: where Auto Scaling is moving this instance."""
        return await self.get("meta-data/autoscaling/target-lifecycle-state")

    async def spot_instance_action(self) -> SpotInstanceAction | None:
        """The Spot interruption notice, or ``None`` while EC2 intends none (404)."""
        text = await self.get("meta-data/spot/instance-action")
        if text is None:
            return None
        body = _json_object(text, "spot/instance-action")
        action = body.get("action")
        if action not in ("terminate", "stop", "hibernate"):
            raise MetadataError(f"spot/instance-action names no known action: {action!r}")
        return SpotInstanceAction(str(action), _iso_time(body.get("time"), "spot/instance-action"))

    async def rebalance_recommendation(self) -> float | None:
        """When EC2 said this Spot instance is at elevated risk of interruption (epoch seconds),
        or ``None`` (404). It stays once given."""
        text = await self.get("meta-data/events/recommendations/rebalance")
        if text is None:
            return None
        body = _json_object(text, "events/recommendations/rebalance")
        return _iso_time(body.get("noticeTime"), "events/recommendations/rebalance")


@dataclass(frozen=True)
class ScheduledEvent:
    """One Azure Scheduled Event, with the fields the drain agent acts on."""

    event_id: str
    event_type: str
    status: str
    resources: tuple[str, ...]
    # Wall-clock time (epoch seconds) after which the platform acts without approval.
    not_before: float | None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> ScheduledEvent:
        not_before = None
        if raw.get("NotBefore"):
            parsed = email.utils.parsedate_to_datetime(str(raw["NotBefore"]))
            not_before = parsed.timestamp()
        return cls(
            event_id=str(raw["EventId"]),
            event_type=str(raw.get("EventType", "")),
            status=str(raw.get("EventStatus", "")),
            resources=tuple(str(r) for r in raw.get("Resources") or ()),
            not_before=not_before,
        )


class AzureMetadata:
    """Azure IMDS: instance document, Scheduled Events and managed-identity tokens."""

    INSTANCE_API = "2021-02-01"
    EVENTS_API = "2020-07-01"
    IDENTITY_API = "2018-02-01"

    def __init__(self, session: aiohttp.ClientSession, base_url: str | None = None) -> None:
        self.session = session
        self.base_url = (base_url or LINK_LOCAL).rstrip("/")
        self._instance: dict[str, Any] | None = None

    async def _get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        async with self.session.get(
            f"{self.base_url}{path}",
            params=params,
            headers={"Metadata": "true"},
            timeout=TIMEOUT,
        ) as response:
            if response.status != 200:
                raise MetadataError(f"Azure IMDS {path} answered {response.status}")
            body = await response.json(content_type=None)
        if not isinstance(body, dict):
            raise MetadataError(f"Azure IMDS {path} answered a non-object")
        return body

    async def instance(self) -> dict[str, Any]:
        """The instance document (``compute`` and ``network``); it does not change, so cached."""
        if self._instance is None:
            self._instance = await self._get_json(
                "/metadata/instance", {"api-version": self.INSTANCE_API}
            )
        return self._instance

    async def compute(self) -> dict[str, Any]:
        compute = (await self.instance()).get("compute")
        if not isinstance(compute, dict):
            raise MetadataError("Azure IMDS instance document has no compute section")
        return compute

    async def tags(self) -> dict[str, str]:
        compute = await self.compute()
        return {str(t["name"]): str(t["value"]) for t in compute.get("tagsList") or ()}

    async def scheduled_events(self) -> list[ScheduledEvent]:
        body = await self._get_json("/metadata/scheduledevents", {"api-version": self.EVENTS_API})
        return [ScheduledEvent.parse(raw) for raw in body.get("Events") or ()]

    async def approve(self, event_id: str) -> None:
        """Tell the platform it may act now (``StartRequests``)."""
        async with self.session.post(
            f"{self.base_url}/metadata/scheduledevents",
            params={"api-version": self.EVENTS_API},
            headers={"Metadata": "true"},
            json={"StartRequests": [{"EventId": event_id}]},
            timeout=TIMEOUT,
        ) as response:
            if response.status != 200:
                raise MetadataError(f"approving scheduled event answered {response.status}")

    async def access_token(self, resource: str, client_id: str | None = None) -> str:
        """A managed-identity bearer token for ``resource`` (ARM, Key Vault).

        ``client_id`` picks the user-assigned identity when the machine has several.
        """
        params = {"api-version": self.IDENTITY_API, "resource": resource}
        if client_id:
            params["client_id"] = client_id
        body = await self._get_json("/metadata/identity/oauth2/token", params)
        token = body.get("access_token")
        if not isinstance(token, str):
            raise MetadataError("managed identity answered no access_token")
        return token
