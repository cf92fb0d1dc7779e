"""Graceful scale-in: the media node's side of its group's decision to remove it.

The agent runs inside the supervisor. While the node hosts rooms it protects itself from
scale-in, and lifts the protection when idle, so the group removes idle nodes first (Jitsi's
autoscaler likewise removes the least busy bridges). When the platform still picks this node
(AWS: the target lifecycle state turns ``Terminated`` under the group's termination hook;
Azure: a ``Terminate`` or ``Preempt`` Scheduled Event), the agent drains the node, keeps the
platform waiting while rooms remain, and releases it exactly once: when the supervisor's drain
ends (rooms gone or drain bound passed) or when the platform's own deadline comes first.

A Spot interruption (EC2's ``spot/instance-action``, Azure's ``Preempt``) cannot wait for rooms
to end: the node evacuates them at once (``media_node.evacuation``). EC2's rebalance
recommendation is the early, softer sign: the node stops taking rooms and drains at the normal
pace, and an interruption that follows turns that drain into an evacuation. When the drain
ends the node reports how long it took to its region (``DrainReport``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiohttp

from infra.spec import DRAIN_HOOK_NAME
from media_node.cloud_metadata import AzureMetadata, Ec2Metadata, MetadataError
from media_node.evacuation import Evacuation
from rtcfleet.nodes import DrainReport

log = logging.getLogger("rtcfleet.media.drain")

POLL_SECONDS = 1.0
# Below the termination hook's heartbeat timeout (infra.spec.LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS).
LIFECYCLE_HEARTBEAT_SECONDS = 60.0
# Idle this long before protection is lifted, so a room that ends and restarts does not flap.
IDLE_GRACE_SECONDS = 30.0
# Approve an Azure event this long before its NotBefore, so approval is never late.
AZURE_APPROVAL_MARGIN_SECONDS = 5.0
AZURE_ARM_URL = "https://management.azure.com"
AZURE_COMPUTE_API = "2024-07-01"
AZURE_TERMINATING_EVENTS = {"Terminate": "scale_in", "Preempt": "interruption"}
NoticeKind = Literal["rebalance", "scale_in", "interruption"]
# A later notice replaces an earlier one only when it is more urgent.
URGENCY: dict[str, int] = {"rebalance": 0, "scale_in": 1, "interruption": 2}
CLOUD_CALL_ERRORS: tuple[type[BaseException], ...] = (
    MetadataError,
    aiohttp.ClientError,
    TimeoutError,
    OSError,
)


class DrainingNode(Protocol):
    """What the agent needs of the supervisor."""

    @property
    def draining(self) -> bool: ...

    @property
    def room_worker(self) -> Mapping[str, Any]: ...

    @property
    def evacuation(self) -> Evacuation: ...

    def start_drain(self) -> None: ...

    async def report_drain(self, report: DrainReport) -> None: ...


@dataclass(frozen=True)
class Termination:
    """The platform's notice that this node is going away."""

    reason: str
    # Event to approve (Azure) or lifecycle action to complete (AWS, by instance id).
    reference: str
    # Epoch seconds after which the platform acts anyway; the agent releases before it.
    deadline: float | None = None
    kind: NoticeKind = "scale_in"
    # Azure: approving an event lets it proceed for every VM it names, so an event shared
    # with other VMs is never approved early (their drains would be cut short).
    approvable: bool = True


class ScaleInCloud(Protocol):
    """One cloud's scale-in API, as the agent uses it."""

    async def protect(self, protected: bool) -> None: ...

    async def termination(self) -> Termination | None: ...

    async def keep_waiting(self, termination: Termination) -> None: ...

    async def release(self, termination: Termination) -> None: ...


class AwsScaleIn:
    """Auto Scaling: target lifecycle state from IMDSv2, protection and hook calls by boto3."""

    GROUP_TAG = "aws:autoscaling:groupName"

    def __init__(
        self,
        metadata: Ec2Metadata,
        endpoint_url: str | None = None,
        hook_name: str = DRAIN_HOOK_NAME,
    ) -> None:
        self.metadata = metadata
        self.endpoint_url = endpoint_url
        self.hook_name = hook_name
        self._client: Any = None
        self._instance_id: str | None = None
        self._group: str | None = None

    async def _identity(self) -> tuple[Any, str, str]:
        if self._client is None:
            import boto3

            region = await self.metadata.region()
            self._client = boto3.client(
                "autoscaling", region_name=region, endpoint_url=self.endpoint_url
            )
        if self._instance_id is None:
            self._instance_id = await self.metadata.instance_id()
        if self._group is None:
            self._group = await self.metadata.tag(self.GROUP_TAG)
        if self._group is None:
            found = await asyncio.to_thread(
                self._client.describe_auto_scaling_instances, InstanceIds=[self._instance_id]
            )
            instances = found.get("AutoScalingInstances") or []
            if not instances:
                raise MetadataError(f"{self._instance_id} is in no Auto Scaling group")
            self._group = str(instances[0]["AutoScalingGroupName"])
        return self._client, self._instance_id, self._group

    async def protect(self, protected: bool) -> None:
        client, instance_id, group = await self._identity()
        await asyncio.to_thread(
            client.set_instance_protection,
            InstanceIds=[instance_id],
            AutoScalingGroupName=group,
            ProtectedFromScaleIn=protected,
        )

    async def termination(self) -> Termination | None:
        """The most urgent notice: Spot interruption, then scale-in, then rebalance."""
        action = await self.metadata.spot_instance_action()
        if action is not None:
            return Termination(
                f"spot interruption ({action.action})",
                await self.metadata.instance_id(),
                action.time,
                kind="interruption",
            )
        if await self.metadata.target_lifecycle_state() == "Terminated":
            _, instance_id, _ = await self._identity()
            return Termination("auto scaling terminates the instance", instance_id)
        if await self.metadata.rebalance_recommendation() is not None:
            return Termination(
                "spot rebalance recommendation", await self.metadata.instance_id(), kind="rebalance"
            )
        return None

    def _hook_call(self, group: str, instance_id: str) -> dict[str, str]:
        return {
            "LifecycleHookName": self.hook_name,
            "AutoScalingGroupName": group,
            "InstanceId": instance_id,
        }

    async def keep_waiting(self, termination: Termination) -> None:
        if termination.kind != "scale_in":
            return  # EC2's interruption time stands whatever the hook is told
        client, instance_id, group = await self._identity()
        await asyncio.to_thread(
            client.record_lifecycle_action_heartbeat, **self._hook_call(group, instance_id)
        )

    async def release(self, termination: Termination) -> None:
        """Complete the termination hook, if Auto Scaling is holding the instance in it (a
        Spot interruption of a group's instance passes through the hook too, bounded by EC2's
        two minutes)."""
        if (
            termination.kind != "scale_in"
            and await self.metadata.target_lifecycle_state() != "Terminated"
        ):
            return
        client, instance_id, group = await self._identity()
        await asyncio.to_thread(
            client.complete_lifecycle_action,
            LifecycleActionResult="CONTINUE",
            **self._hook_call(group, instance_id),
        )


class AzureScaleIn:
    """Scale set: Scheduled Events from IMDS, instance protection through ARM.

    The region stack's scale set enables terminate notifications (``scheduledEventsProfile``,
    at most 15 minutes); that notice, not the node, bounds how long a drain may hold scale-in.
    """

    def __init__(
        self,
        metadata: AzureMetadata,
        session: aiohttp.ClientSession,
        arm_url: str | None = None,
        margin_seconds: float = AZURE_APPROVAL_MARGIN_SECONDS,
        client_id: str | None = None,
    ) -> None:
        """``client_id``: the user-assigned identity to sign in as (first boot's
        ``AZURE_CLIENT_ID``); IMDS refuses a token without it once a VM has two identities."""
        self.metadata = metadata
        self.session = session
        self.arm_url = (arm_url or AZURE_ARM_URL).rstrip("/")
        self.margin_seconds = margin_seconds
        self.client_id = client_id

    async def protect(self, protected: bool) -> None:
        compute = await self.metadata.compute()
        token = await self.metadata.access_token(AZURE_ARM_URL + "/", client_id=self.client_id)
        async with self.session.put(
            f"{self.arm_url}{compute['resourceId']}",
            params={"api-version": AZURE_COMPUTE_API},
            headers={"Authorization": f"Bearer {token}"},
            json={"properties": {"protectionPolicy": {"protectFromScaleIn": protected}}},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            if response.status not in (200, 202):
                raise MetadataError(f"ARM instance protection answered {response.status}")

    async def termination(self) -> Termination | None:
        name = str((await self.metadata.compute()).get("name", ""))
        found: list[Termination] = []
        for event in await self.metadata.scheduled_events():
            kind = AZURE_TERMINATING_EVENTS.get(event.event_type)
            if kind is not None and event.status == "Scheduled" and name in event.resources:
                deadline = None
                if event.not_before is not None:
                    deadline = event.not_before - self.margin_seconds
                found.append(
                    Termination(
                        f"scheduled event {event.event_type}",
                        event.event_id,
                        deadline,
                        kind="interruption" if kind == "interruption" else "scale_in",
                        approvable=event.resources == (name,),
                    )
                )
        return max(found, key=lambda t: URGENCY[t.kind], default=None)

    async def keep_waiting(self, termination: Termination) -> None:
        """Scheduled Events cannot be extended: the deadline stands."""

    async def release(self, termination: Termination) -> None:
        if termination.approvable:
            await self.metadata.approve(termination.reference)
        else:
            log.info("event %s names other VMs too: left to its NotBefore", termination.reference)


class DrainAgent:
    def __init__(
        self,
        node: DrainingNode,
        cloud: ScaleInCloud,
        cloud_name: Literal["aws", "azure"] = "aws",
        *,
        poll_seconds: float = POLL_SECONDS,
        heartbeat_seconds: float = LIFECYCLE_HEARTBEAT_SECONDS,
        idle_grace_seconds: float = IDLE_GRACE_SECONDS,
    ) -> None:
        self.node = node
        self.cloud = cloud
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.idle_grace_seconds = idle_grace_seconds
        self.cloud_name: Literal["aws", "azure"] = cloud_name
        self.termination: Termination | None = None
        # monotonic time of the notice that set the drain's pace, and its deadline's distance
        self.noticed_at: float | None = None
        self.notice_seconds: float | None = None
        self.evacuating: asyncio.Task[None] | None = None
        self.protected: bool | None = None
        self.released = False
        self._idle_since: float | None = None
        self._last_heartbeat = 0.0
        self._release_lock = asyncio.Lock()

    async def run(self) -> None:
        while not self.released:
            try:
                await self.step()
            except CLOUD_CALL_ERRORS as exc:
                log.warning("scale-in agent: %s", exc)
            except Exception as exc:  # boto3's ClientError and friends: log, retry next poll
                log.warning("scale-in agent: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.poll_seconds)

    async def step(self) -> None:
        notice = await self.cloud.termination()
        if notice is not None and (
            self.termination is None or URGENCY[notice.kind] > URGENCY[self.termination.kind]
        ):
            self._begin(notice)
        if self.termination is not None and self.termination.kind != "rebalance":
            await self._hold()
        elif not self.node.draining:
            await self._guard()

    def _begin(self, notice: Termination) -> None:
        """Drain for ``notice``; an interruption moves every room off at once."""
        # a drain's time counts from the notice that set its pace (an interruption after a
        # rebalance recommendation counts from the interruption)
        self.noticed_at = time.monotonic()
        if self.termination is None:
            self._last_heartbeat = self.noticed_at
        if notice.deadline is not None:
            self.notice_seconds = max(0.0, notice.deadline - time.time())
        self.termination = notice
        log.warning(
            "%s: draining%s",
            notice.reason,
            "" if self.notice_seconds is None else f" ({self.notice_seconds:.0f} s of notice)",
        )
        self.node.start_drain()
        if notice.kind == "interruption" and self.evacuating is None:
            self.evacuating = asyncio.create_task(self.node.evacuation.run(notice.deadline))

    async def _guard(self) -> None:
        """Protected while rooms live; unprotected once idle for the grace period."""
        busy = bool(self.node.room_worker)
        now = time.monotonic()
        if busy:
            self._idle_since = None
            if self.protected is not True:
                await self.cloud.protect(True)
                self.protected = True
                log.info("rooms live: protected from scale-in")
            return
        if self._idle_since is None:
            self._idle_since = now
        if self.protected is not False and now - self._idle_since >= self.idle_grace_seconds:
            await self.cloud.protect(False)
            self.protected = False
            log.info("idle: scale-in may remove this node")

    async def _hold(self) -> None:
        assert self.termination is not None
        deadline = self.termination.deadline
        if deadline is not None and time.time() >= deadline:
            log.warning("platform deadline reached with %d rooms", len(self.node.room_worker))
            await self.release()
            return
        if time.monotonic() - self._last_heartbeat >= self.heartbeat_seconds:
            await self.cloud.keep_waiting(self.termination)
            self._last_heartbeat = time.monotonic()

    async def release(self) -> None:
        """Let the platform remove the node; only once, and only if it asked to."""
        async with self._release_lock:
            if self.released or self.termination is None:
                return
            for attempt in range(3):
                try:
                    await self.cloud.release(self.termination)
                    break
                except Exception as exc:
                    log.warning("releasing the node failed (attempt %d): %s", attempt + 1, exc)
                    await asyncio.sleep(1.0)
            self.released = True
            log.info("released to the platform: %s", self.termination.reason)
            await self._report(self.termination)

    async def _report(self, termination: Termination) -> None:
        """Log and send how long the drain took, from the first notice to now."""
        seconds = 0.0 if self.noticed_at is None else time.monotonic() - self.noticed_at
        report = DrainReport(
            cloud=self.cloud_name,
            notice=termination.kind,
            seconds=round(seconds, 3),
            notice_seconds=None if self.notice_seconds is None else round(self.notice_seconds, 3),
            sessions_moved=self.node.evacuation.sessions_moved,
            rooms_left=len(self.node.room_worker),
        )
        log.warning(
            "drain for %s took %.1f s of %s s notice: %d sessions moved, %d rooms left",
            termination.reason,
            seconds,
            "no" if self.notice_seconds is None else f"{self.notice_seconds:.0f}",
            report.sessions_moved,
            report.rooms_left,
        )
        try:
            await self.node.report_drain(report)
        except Exception as exc:  # the region is unreachable: the log line above stays
            log.warning("drain report not sent: %s", exc)


@contextlib.asynccontextmanager
async def cloud_agent(
    node: DrainingNode,
    cloud: str | None,
    metadata_url: str | None = None,
    api_url: str | None = None,
    **tuning: float,
) -> Any:
    """The agent for ``cloud`` (``aws``/``azure``) with its HTTP session, or ``None``."""
    if cloud is None:
        yield None
        return
    async with aiohttp.ClientSession() as session:
        if cloud == "aws":
            aws = AwsScaleIn(Ec2Metadata(session, metadata_url), endpoint_url=api_url)
            yield DrainAgent(node, aws, "aws", **tuning)
        elif cloud == "azure":
            azure = AzureScaleIn(
                AzureMetadata(session, metadata_url),
                session,
                api_url,
                client_id=os.environ.get("AZURE_CLIENT_ID") or None,
            )
            yield DrainAgent(node, azure, "azure", **tuning)
        else:
            raise ValueError(f"unknown cloud {cloud!r}")
