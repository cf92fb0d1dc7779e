"""The drain agent in-process: metadata flows, protection rules, deadlines, one release."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.stub import Stubber

from media_node.cloud_metadata import AzureMetadata, Ec2Metadata
from media_node.drain_agent import AwsScaleIn, AzureScaleIn, DrainAgent, Termination
from tests.media_node.cloud_double import AwsInstance, AzureInstance, CloudDouble

RESOURCE_ID = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute"
    "/virtualMachineScaleSets/media/virtualMachines/7"
)


class FakeNode:
    def __init__(self) -> None:
        self.draining = False
        self.room_worker: dict[str, Any] = {}
        self.drains = 0

    def start_drain(self) -> None:
        self.drains += 1
        self.draining = True


class RecordingCloud:
    """A ScaleInCloud that records calls; ``terminate`` makes the next poll see a notice."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.notice: Termination | None = None

    async def protect(self, protected: bool) -> None:
        self.calls.append(("protect", protected))

    async def termination(self) -> Termination | None:
        return self.notice

    async def keep_waiting(self, termination: Termination) -> None:
        self.calls.append(("keep_waiting", termination.reference))

    async def release(self, termination: Termination) -> None:
        self.calls.append(("release", termination.reference))


@pytest.fixture
def double() -> Iterator[CloudDouble]:
    cloud = CloudDouble().start()
    cloud.aws = AwsInstance("i-0abc", "eu-west-1", "media-group")
    cloud.azure = AzureInstance("media_7", RESOURCE_ID)
    yield cloud
    cloud.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def test_imdsv2_reads_carry_a_token_and_renew_it_when_refused(double, session) -> None:
    metadata = Ec2Metadata(session, double.url)
    assert await metadata.instance_id() == "i-0abc"
    assert await metadata.region() == "eu-west-1"
    assert await metadata.tag("aws:autoscaling:groupName") == "media-group"
    assert await metadata.tag("absent") is None
    assert double.aws.token_requests == 1  # one session token serves every read
    double.aws.tokens.clear()  # the token expired on the service's side
    double.aws.lifecycle_state = "Terminated"
    assert await metadata.target_lifecycle_state() == "Terminated"
    assert double.aws.token_requests == 2
    assert double.aws.unauthenticated_reads == 1


async def test_guard_protects_while_busy_and_lifts_after_the_idle_grace() -> None:
    node, cloud = FakeNode(), RecordingCloud()
    agent = DrainAgent(node, cloud, idle_grace_seconds=0.3)
    node.room_worker["r1"] = object()
    await agent.step()
    await agent.step()
    assert cloud.calls == [("protect", True)]
    node.room_worker.clear()
    await agent.step()
    assert cloud.calls == [("protect", True)], "lifted before the idle grace"
    await asyncio.sleep(0.35)
    await agent.step()
    await agent.step()
    assert cloud.calls == [("protect", True), ("protect", False)]


async def test_termination_drains_keeps_the_platform_waiting_and_releases_once() -> None:
    node, cloud = FakeNode(), RecordingCloud()
    agent = DrainAgent(node, cloud, heartbeat_seconds=0.1, idle_grace_seconds=0)
    node.room_worker["r1"] = object()
    cloud.notice = Termination("test", "i-0abc")
    await agent.step()
    assert node.drains == 1 and node.draining
    for _ in range(3):
        await asyncio.sleep(0.12)
        await agent.step()
    assert node.drains == 1
    assert [c for c in cloud.calls if c[0] == "keep_waiting"] == [("keep_waiting", "i-0abc")] * 3
    await asyncio.gather(agent.release(), agent.release())
    await agent.release()
    assert [c for c in cloud.calls if c[0] == "release"] == [("release", "i-0abc")]


async def test_release_without_a_notice_does_nothing() -> None:
    """An operator's drain ends the node; only the platform's notice is answered."""
    cloud = RecordingCloud()
    agent = DrainAgent(FakeNode(), cloud)
    await agent.release()
    assert cloud.calls == [] and not agent.released


async def test_azure_deadline_approves_with_rooms_still_live(double, session) -> None:
    node = FakeNode()
    node.room_worker["r1"] = object()
    metadata = AzureMetadata(session, double.url)
    cloud = AzureScaleIn(metadata, session, double.url, margin_seconds=5.0)
    agent = DrainAgent(node, cloud, poll_seconds=0.1)
    # an event for another VM and one already started are not ours to act on
    other = double.schedule_azure_event("Terminate", 60)
    double.azure.events[-1]["Resources"] = ["media_8"]
    started = double.schedule_azure_event("Reboot", 60)
    ours = double.schedule_azure_event("Preempt", 7.5)  # deadline 1.5-2.5 s away (whole seconds)
    began = time.monotonic()
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
    assert node.draining
    assert double.azure.approvals == [ours]
    assert 1.3 <= time.monotonic() - began <= 4.0
    assert {e["EventId"] for e in double.azure.events} == {other, started}
    await agent.release()  # the supervisor's own release after the drain: already done
    assert double.azure.approvals == [ours]


async def test_azure_protection_goes_to_the_vm_with_a_managed_identity_token(
    double, session
) -> None:
    cloud = AzureScaleIn(AzureMetadata(session, double.url), session, double.url)
    await cloud.protect(True)
    await cloud.protect(False)
    assert double.azure.protection == [True, False]


async def test_aws_calls_match_the_autoscaling_api(double, session) -> None:
    """Botocore's Stubber checks every parameter against the service model."""
    client = boto3.client(
        "autoscaling",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    cloud = AwsScaleIn(Ec2Metadata(session, double.url))
    cloud._client = client
    hook = {
        "LifecycleHookName": "rtcfleet-drain",
        "AutoScalingGroupName": "media-group",
        "InstanceId": "i-0abc",
    }
    with Stubber(client) as stub:
        stub.add_response(
            "set_instance_protection",
            {},
            {
                "InstanceIds": ["i-0abc"],
                "AutoScalingGroupName": "media-group",
                "ProtectedFromScaleIn": True,
            },
        )
        stub.add_response("record_lifecycle_action_heartbeat", {}, hook)
        stub.add_response(
            "complete_lifecycle_action", {}, {**hook, "LifecycleActionResult": "CONTINUE"}
        )
        await cloud.protect(True)
        assert await cloud.termination() is None
        double.aws.lifecycle_state = "Terminated"
        notice = await cloud.termination()
        assert notice is not None and notice.reference == "i-0abc"
        await cloud.keep_waiting(notice)
        await cloud.release(notice)
        stub.assert_no_pending_responses()
