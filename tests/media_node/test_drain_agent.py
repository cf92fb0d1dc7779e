"""The drain agent in-process: metadata flows, protection rules, deadlines, one release."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import boto3
import pytest
import redis.asyncio as aioredis
from botocore.stub import Stubber

from media_node.cloud_metadata import AzureMetadata, Ec2Metadata, MetadataError
from media_node.drain_agent import AwsScaleIn, AzureScaleIn, DrainAgent, Termination
from media_node.evacuation import Evacuation
from rtcfleet.node_messages import AnyNodeCommand
from rtcfleet.nodes import DrainReport
from tests.media_node.cloud_double import AwsInstance, AzureInstance, CloudDouble

RESOURCE_ID = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute"
    "/virtualMachineScaleSets/media/virtualMachines/7"
)


class RecordingEvacuation(Evacuation):
    """Records the deadlines it was run with instead of moving rooms."""

    def __init__(self, node: FakeNode) -> None:
        super().__init__(node, node.room_participants, node.heartbeat)
        self.runs: list[float | None] = []

    async def run(self, deadline: float | None) -> None:
        self.runs.append(deadline)


class FakeNode:
    def __init__(self) -> None:
        self.node_id = "media-1"
        self.draining = False
        self.room_worker: dict[str, Any] = {}
        self.sessions: dict[str, str] = {}
        self.claims = asyncio.Lock()
        self.drains = 0
        self.reports: list[DrainReport] = []
        self.evacuation = RecordingEvacuation(self)

    @property
    def redis(self) -> aioredis.Redis:
        raise AssertionError("the agent's tests move no room")

    def start_drain(self) -> None:
        self.drains += 1
        self.draining = True

    async def report_drain(self, report: DrainReport) -> None:
        self.reports.append(report)

    def room_participants(self) -> dict[str, int]:
        return dict.fromkeys(self.room_worker, 1)

    def to_session(self, session: str, message: dict[str, Any]) -> None:
        raise AssertionError("the agent's tests move no room")

    async def heartbeat(self) -> None:
        pass

    async def handle_command(self, command: AnyNodeCommand) -> None:
        raise AssertionError("the agent's tests move no room")


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
    assert double.azure.token_client_ids == [None, None]


async def test_azure_protection_signs_in_as_the_nodes_user_assigned_identity(
    double, session
) -> None:
    identity = "5ca1ab1e-0000-4000-8000-00000000c1d0"
    cloud = AzureScaleIn(
        AzureMetadata(session, double.url), session, double.url, client_id=identity
    )
    await cloud.protect(True)
    assert double.azure.protection == [True]
    assert double.azure.token_client_ids == [identity]


def stubbable_scale_in(double: Any, session: Any) -> tuple[AwsScaleIn, Any]:
    """The AWS scale-in client, its Auto Scaling calls going through a client a Stubber holds."""
    client = boto3.client(
        "autoscaling",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    cloud = AwsScaleIn(Ec2Metadata(session, double.url))
    cloud._client = client
    return cloud, client


async def test_aws_calls_match_the_autoscaling_api(double, session) -> None:
    """Botocore's Stubber checks every parameter against the service model."""
    cloud, client = stubbable_scale_in(double, session)
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


async def test_spot_notices_read_as_imds_serves_them(double, session) -> None:
    metadata = Ec2Metadata(session, double.url)
    assert await metadata.spot_instance_action() is None
    assert await metadata.rebalance_recommendation() is None
    double.recommend_rebalance()
    noticed = await metadata.rebalance_recommendation()
    assert noticed is not None and abs(noticed - time.time()) < 2
    double.interrupt_spot(120)
    action = await metadata.spot_instance_action()
    assert action is not None and action.action == "terminate"
    assert 117 <= action.time - time.time() <= 121
    assert double.aws.unauthenticated_reads == 0
    double.aws.spot_action = {"action": "explode", "time": "2030-01-01T00:00:00Z"}
    with pytest.raises(MetadataError, match="no known action"):
        await metadata.spot_instance_action()
    double.aws.spot_action = {"action": "stop", "time": "soon"}
    with pytest.raises(MetadataError, match="not an ISO 8601 time"):
        await metadata.spot_instance_action()


async def test_aws_notice_precedence_interruption_over_scale_in_over_rebalance(
    double, session
) -> None:
    cloud = AwsScaleIn(Ec2Metadata(session, double.url))
    cloud._group = "media-group"
    cloud._client = object()  # a lifecycle hook call would fail on it
    double.recommend_rebalance()
    notice = await cloud.termination()
    assert notice is not None and notice.kind == "rebalance" and notice.deadline is None
    double.aws.lifecycle_state = "Terminated"
    notice = await cloud.termination()
    assert notice is not None and notice.kind == "scale_in"
    double.interrupt_spot(120)
    notice = await cloud.termination()
    assert notice is not None and notice.kind == "interruption"
    assert notice.reference == "i-0abc" and notice.deadline is not None


async def test_rebalance_drains_softly_and_an_interruption_then_evacuates() -> None:
    node, cloud = FakeNode(), RecordingCloud()
    agent = DrainAgent(node, cloud, heartbeat_seconds=0.05, idle_grace_seconds=0)
    node.room_worker["r1"] = object()
    cloud.notice = Termination("rebalance", "i-0abc", kind="rebalance")
    await agent.step()
    await asyncio.sleep(0.06)
    await agent.step()
    assert node.draining and node.drains == 1
    assert node.evacuation.runs == [], "a rebalance recommendation moved rooms"
    assert not [c for c in cloud.calls if c[0] in ("keep_waiting", "protect")]
    await asyncio.sleep(0.3)
    deadline = time.time() + 120
    cloud.notice = Termination("spot", "i-0abc", deadline, kind="interruption")
    await agent.step()
    await agent.step()
    assert agent.evacuating is not None
    await agent.evacuating
    assert node.evacuation.runs == [deadline]
    # a less urgent notice after it changes nothing
    cloud.notice = Termination("rebalance", "i-0abc", kind="rebalance")
    await agent.step()
    assert agent.termination is not None and agent.termination.kind == "interruption"
    await agent.release()
    [report] = node.reports
    assert report.cloud == "aws" and report.notice == "interruption"
    assert report.notice_seconds is not None and 118 <= report.notice_seconds <= 120
    # counted from the interruption, not from the rebalance recommendation before it
    assert report.seconds < 0.3 and report.rooms_left == 1


async def test_azure_preempt_is_approved_only_when_it_names_this_vm_alone(double, session) -> None:
    metadata = AzureMetadata(session, double.url)
    cloud = AzureScaleIn(metadata, session, double.url)
    terminate = double.schedule_azure_event("Terminate", 300)
    shared = double.schedule_azure_event("Preempt", 30)
    double.azure.events[-1]["Resources"] = ["media_7", "media_8"]
    notice = await cloud.termination()
    assert notice is not None and notice.kind == "interruption" and notice.reference == shared
    assert not notice.approvable
    assert notice.deadline is not None and 23 <= notice.deadline - time.time() <= 25
    await cloud.release(notice)
    assert double.azure.approvals == [], "approved an eviction other VMs are still draining for"
    double.azure.events = [e for e in double.azure.events if e["EventId"] != shared]
    alone = double.schedule_azure_event("Preempt", 30)
    notice = await cloud.termination()
    assert notice is not None and notice.reference == alone and notice.approvable
    await cloud.release(notice)
    assert double.azure.approvals == [alone]
    assert [e["EventId"] for e in double.azure.events] == [terminate]


async def test_aws_interruption_release_completes_no_hook_unless_auto_scaling_holds_one(
    double, session
) -> None:
    cloud, client = stubbable_scale_in(double, session)
    notice = Termination("spot", "i-0abc", time.time() + 120, kind="interruption")
    with Stubber(client) as stub:
        await cloud.release(notice)  # a call here would find no stubbed response
        double.aws.lifecycle_state = "Terminated"
        stub.add_response(
            "complete_lifecycle_action",
            {},
            {
                "LifecycleHookName": "rtcfleet-drain",
                "AutoScalingGroupName": "media-group",
                "InstanceId": "i-0abc",
                "LifecycleActionResult": "CONTINUE",
            },
        )
        await cloud.release(notice)
        stub.assert_no_pending_responses()
