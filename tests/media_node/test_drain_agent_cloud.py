"""Scale-in of a media node process with a live bot call, on AWS and on Azure.

A local fleet (Redis, Postgres, a gateway) runs a media node whose metadata service and cloud
APIs are a local double; AWS Auto Scaling state lives in a moto server. The platform tells the
node to terminate while two bots talk through it: the call keeps its media, the node takes no
new room, and only after the bots leave does the node release itself, exactly once, and exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import aiohttp
import boto3
import pytest
from moto.server import ThreadedMotoServer

from rtcfleet.client.bot import Bot
from rtcfleet.local import LocalFleet
from rtcfleet.local.fleet import ServiceProcess
from rtcfleet.servers import free_port
from rtcfleet.signaling import Join, encode
from tests.media_node.cloud_double import (
    AwsInstance,
    AzureInstance,
    CloudDouble,
    cloud_env,
    exit_code,
    start_cloud_fleet,
)
from tests.platform.conftest import admin, receives_from, wait_until

pytestmark = pytest.mark.slow

REGION = "us-east-1"
GROUP = "prod-use1-media-test"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def autoscaling(moto_url: str):
    return boto3.client(
        "autoscaling",
        region_name=REGION,
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def media_instance(moto_url: str, autoscaling) -> str:
    """One instance in a media group of moto's, as the group the node lives in."""
    ec2 = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName="media",
        LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"},
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateName": "media", "Version": "$Latest"},
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=1,
        AvailabilityZones=[f"{REGION}a"],
        # new instances start protected: the agent decides when a node may go
        NewInstancesProtectedFromScaleIn=True,
    )
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    return str(group["AutoScalingGroups"][0]["Instances"][0]["InstanceId"])


@pytest.fixture(scope="module")
def cloud(moto_url: str, media_instance: str) -> Iterator[CloudDouble]:
    double = CloudDouble(moto_url).start()
    double.aws = AwsInstance(media_instance, REGION, GROUP)
    double.azure = AzureInstance(
        name="media_3",
        resource_id=(
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rtcfleet-prod"
            "/providers/Microsoft.Compute/virtualMachineScaleSets/media/virtualMachines/3"
        ),
        tags={"rtcfleet-role": "media"},
    )
    yield double
    double.stop()


@pytest.fixture(scope="module")
def fleet(cloud: CloudDouble) -> Iterator[LocalFleet]:
    """One region, one gateway; its media node is started by each test with its cloud."""
    fleet = start_cloud_fleet(cloud)
    yield fleet
    fleet.remove()


def video_frames(bot: Bot, publisher: str) -> int:
    stats = bot.peer.received(publisher, "video")
    return stats.frames_decoded if stats is not None else 0


async def live_call(fleet: LocalFleet, room: str) -> tuple[Bot, Bot]:
    urls = [g.signal_url for g in fleet.regions[fleet.home].gateways]
    alice = Bot(urls, fleet.token(room, "alice"), name="alice")
    bob = Bot(urls, fleet.token(room, "bob"), name="bob")
    await alice.start()
    await bob.start()
    await wait_until(
        lambda: receives_from(alice, ["bob"]) and receives_from(bob, ["alice"]), 30, "the call"
    )
    return alice, bob


async def call_survives_drain(
    fleet: LocalFleet, alice: Bot, bob: Bot, node: ServiceProcess, released: Callable[[], bool]
) -> None:
    """Media keeps flowing for 3 s of drain; the node stays and is not released meanwhile."""
    before = video_frames(alice, "bob"), video_frames(bob, "alice")
    await asyncio.sleep(3.0)
    after = video_frames(alice, "bob"), video_frames(bob, "alice")
    assert after[0] - before[0] >= 60 and after[1] - before[1] >= 60, (before, after)
    assert exit_code(node) is None, "the node left during a live call"
    assert not released(), "the node was released while its call was live"


def node_state(fleet: LocalFleet, node_id: str) -> str:
    """healthy, draining or stale, as the admin API reports the node."""
    status, nodes = admin(fleet, "GET", "/api/nodes")
    assert status == 200, nodes
    return next((str(n["state"]) for n in nodes if n["node_id"] == node_id), "absent")


async def join_answer(fleet: LocalFleet, room: str, identity: str) -> dict[str, str]:
    """The gateway's answer to one join, as type and error code (signaling only)."""
    url = fleet.regions[fleet.home].gateways[0].signal_url
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(encode(Join(token=fleet.token(room, identity))))
        answer = await ws.receive_json(timeout=10)
    return {"type": answer["type"], "code": answer.get("code", "")}


def protected_in_moto(autoscaling, instance_id: str) -> bool:
    found = autoscaling.describe_auto_scaling_instances(InstanceIds=[instance_id])
    return bool(found["AutoScalingInstances"][0]["ProtectedFromScaleIn"])


async def test_aws_scale_in_waits_for_the_call_then_completes_once(
    fleet: LocalFleet, cloud: CloudDouble, autoscaling, media_instance: str
) -> None:
    assert cloud.aws is not None
    node = fleet.regions[fleet.home].media_nodes[-1]
    # idle: the agent lifts the launch-time protection so scale-in may take this node first
    await wait_until(
        lambda: not protected_in_moto(autoscaling, media_instance),
        20,
        "protection lifted on an idle node",
    )

    alice, bob = await live_call(fleet, "scale-in-aws")
    try:
        await wait_until(
            lambda: protected_in_moto(autoscaling, media_instance),
            10,
            "scale-in protection while a room is live",
        )

        cloud.aws.lifecycle_state = "Terminated"
        await wait_until(
            lambda: len(cloud.calls("RecordLifecycleActionHeartbeat")) >= 1,
            10,
            "a lifecycle heartbeat while rooms remain",
        )
        await call_survives_drain(
            fleet, alice, bob, node, lambda: bool(cloud.calls("CompleteLifecycleAction"))
        )
        assert len(cloud.calls("RecordLifecycleActionHeartbeat")) >= 3
    finally:
        await asyncio.gather(alice.close(), bob.close())

    seconds = await wait_until(lambda: exit_code(node) is not None, 20, "the node to exit")
    assert exit_code(node) == 0
    completions = cloud.calls("CompleteLifecycleAction")
    assert completions == [
        {
            "LifecycleHookName": "rtcfleet-drain",
            "AutoScalingGroupName": GROUP,
            "InstanceId": media_instance,
            "LifecycleActionResult": "CONTINUE",
        }
    ]
    heartbeat = cloud.calls("RecordLifecycleActionHeartbeat")[0]
    assert heartbeat == {
        "LifecycleHookName": "rtcfleet-drain",
        "AutoScalingGroupName": GROUP,
        "InstanceId": media_instance,
    }
    assert cloud.aws.unauthenticated_reads == 0, "a metadata read went without an IMDSv2 token"
    print(
        f"aws: node exited {seconds:.1f} s after the bots left; "
        f"{len(cloud.calls('RecordLifecycleActionHeartbeat'))} heartbeats, 1 completion"
    )


async def test_azure_scale_in_approves_the_event_after_the_call(
    fleet: LocalFleet, cloud: CloudDouble
) -> None:
    azure = cloud.azure
    assert azure is not None
    # the region's only node, so a room it refuses has nowhere else to go
    for other in fleet.regions[fleet.home].media_nodes:
        if other.process.running():
            other.process.stop(timeout=30)

            def gone(name: str = other.name) -> bool:
                return node_state(fleet, name) in ("stale", "absent")

            await wait_until(
                gone,
                15,
                f"{other.name} out of the registry",
            )
    fleet.spec.media_env = cloud_env(cloud, "azure")
    node = fleet.start_media_node(fleet.home)
    fleet.wait_ready(30)
    alice, bob = await live_call(fleet, "scale-in-azure")
    try:
        await wait_until(lambda: azure.protection[-1:] == [True], 10, "instance protection")
        protection_changes = len(azure.protection)
        # the platform's notice: Terminate no earlier than 5 minutes from now
        event_id = cloud.schedule_azure_event("Terminate", 300)
        await wait_until(
            lambda: node_state(fleet, node.name) == "draining", 10, "the node to report draining"
        )
        # the only node drains: a new room finds no node to take it
        assert await join_answer(fleet, "scale-in-azure-2", "carol") == {
            "type": "error",
            "code": "no_media_node",
        }
        await call_survives_drain(fleet, alice, bob, node, lambda: bool(azure.approvals))
        await alice.close()
        await asyncio.sleep(2.0)  # two polls of the agent with bob still in the room
        assert not azure.approvals, "approved while a participant was still in the room"
        assert exit_code(node) is None, "the node left while a participant was still in the room"
    finally:
        await asyncio.gather(alice.close(), bob.close())

    seconds = await wait_until(lambda: exit_code(node) is not None, 20, "the node to exit")
    assert exit_code(node) == 0
    assert azure.approvals == [event_id]
    assert len(azure.protection) == protection_changes, "protection changed during the drain"
    print(f"azure: node exited {seconds:.1f} s after the bots left; event approved once")
