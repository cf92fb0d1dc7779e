"""``rtcfleet bake aws`` against moto: build, health report, image, copies, tags, pruning."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from rtcfleet.bake import aws as bake
from rtcfleet.bake.report import report
from rtcfleet.cli import app
from tests.media_node.cloud_double import AwsInstance, CloudDouble

HOME, OTHERS = "us-east-1", ["eu-west-1", "ap-southeast-2"]
BASE = "ssm:/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2"
BUCKET = "rtcfleet-bundles"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": HOME,
    }.items():
        monkeypatch.setenv(key, value)
    # images an hour apart, as real bakes are, so "older than the last N" is well defined
    clock = iter(
        datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(hours=h)
        for h in range(10_000)
    )
    monkeypatch.setattr("moto.ec2.models.amis.utcnow", lambda: next(clock))
    with mock_aws():
        boto3.client("s3", region_name=HOME).create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "rtcfleet-node-1.2.3.tar.gz"
    path.write_bytes(b"bundle bytes")
    return path


@pytest.fixture
def metadata() -> Iterator[CloudDouble]:
    double = CloudDouble().start()
    yield double
    double.stop()


def builder_reports(status: str, metadata: CloudDouble) -> threading.Thread:
    """Plays the builder: once it runs, its own report script tags it through IMDSv2."""

    def run() -> None:
        ec2 = boto3.client("ec2", region_name=HOME)
        for _ in range(200):
            reservations = ec2.describe_instances(
                Filters=[{"Name": "tag:Name", "Values": ["rtcfleet-node-builder-*"]}]
            )["Reservations"]
            if reservations:
                instance = reservations[0]["Instances"][0]
                metadata.aws = AwsInstance(instance["InstanceId"], HOME, "")
                time.sleep(0.05)  # the bake is already polling
                report(status, metadata_url=metadata.url)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def old_image(region: str, version: str) -> tuple[str, str]:
    """An earlier bake's AMI in ``region``; returns its id and snapshot."""
    ec2 = boto3.client("ec2", region_name=region)
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]
    image = ec2.create_image(InstanceId=instance["InstanceId"], Name=f"rtcfleet-node-{version}")
    ec2.create_tags(
        Resources=[image["ImageId"]], Tags=[{"Key": "rtcfleet:image", "Value": "rtcfleet-node"}]
    )
    found = ec2.describe_images(ImageIds=[image["ImageId"]])["Images"][0]
    return image["ImageId"], found["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]


Copy = tuple[str, str, str, str]


def recording_copies(clients: bake.ClientFactory) -> tuple[bake.ClientFactory, list[Copy]]:
    """Clients that record each CopyImage as (region, source region, source image, new image):
    moto's DescribeImages does not report an AMI's source, so the calls themselves are read."""
    copies: list[Copy] = []

    def client(service: str, region: str) -> Any:
        made = clients(service, region)
        if service != "ec2":
            return made

        def keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            context["copy_params"] = dict(params)

        def record(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            params = context["copy_params"]
            copies.append(
                (region, params["SourceRegion"], params["SourceImageId"], parsed["ImageId"])
            )

        made.meta.events.register("provide-client-params.ec2.CopyImage", keep_params)
        made.meta.events.register("after-call.ec2.CopyImage", record)
        return made

    return client, copies


def spec(bundle: Path, **changes) -> bake.AwsBakeSpec:
    values: dict[str, Any] = dict(
        bundle=bundle,
        version="1.2.3",
        bucket=BUCKET,
        home_region=HOME,
        regions=[HOME, *OTHERS],
        base_image=BASE,
        keep=2,
        poll_seconds=0.05,
        health_timeout_seconds=10,
        tags={"rtcfleet:env": "prod"},
    )
    return bake.AwsBakeSpec(**(values | changes))


def test_bake_copies_tags_and_keeps_the_last_n(aws, bundle: Path, metadata: CloudDouble) -> None:
    olds = {region: [old_image(region, f"1.0.{i}") for i in range(3)] for region in [HOME, *OTHERS]}
    reporter = builder_reports("healthy", metadata)
    clients, copies = recording_copies(bake.boto3_clients())
    result = bake.AwsBaker(spec(bundle), clients).bake()
    reporter.join(5)

    assert set(result.images) == {HOME, *OTHERS}
    assert len(set(result.images.values())) == 3
    ssm = boto3.client("ssm", region_name=HOME)
    base_id = ssm.get_parameter(Name=BASE.removeprefix("ssm:"))["Parameter"]["Value"]
    home = boto3.client("ec2", region_name=HOME)
    builder = home.describe_instances(InstanceIds=[result.builder_instance])
    builder = builder["Reservations"][0]["Instances"][0]
    assert builder["ImageId"] == base_id
    assert builder["MetadataOptions"]["HttpTokens"] == "required"
    assert builder["State"]["Name"] == "terminated"
    user_data = home.describe_instance_attribute(
        InstanceId=result.builder_instance, Attribute="userData"
    )["UserData"]["Value"]
    import base64

    script = base64.b64decode(user_data).decode()
    assert f"echo '{result.bundle_sha256}  '" in script and "sha256sum -c" in script
    assert "/opt/rtcfleet/bin/rtcfleet-health-check" in script
    assert "X-Amz-Signature" in script or "Signature=" in script  # a presigned S3 URL

    s3_keys = [
        o["Key"]
        for o in boto3.client("s3", region_name=HOME).list_objects_v2(Bucket=BUCKET)["Contents"]
    ]
    assert s3_keys == [f"bundles/rtcfleet-node-1.2.3-{result.bundle_sha256[:12]}.tar.gz"]

    for region, image_id in result.images.items():
        ec2 = boto3.client("ec2", region_name=region)
        image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        tags = {t["Key"]: t["Value"] for t in image["Tags"]}
        assert tags == {
            "rtcfleet:image": "rtcfleet-node",
            "rtcfleet:version": "1.2.3",
            "rtcfleet:bundle-sha256": result.bundle_sha256,
            "rtcfleet:env": "prod",
        }
        assert image["Name"].startswith("rtcfleet-node-1.2.3-")
        assert image["State"] == "available"
        # the last N (2): this bake and the newest earlier one; the two oldest are gone
        (a, snap_a), (b, snap_b), (newest_old, _) = olds[region]
        assert sorted(result.removed[region]) == sorted([a, b])
        remaining = ec2.describe_images(
            Owners=["self"], Filters=[{"Name": "tag:rtcfleet:image", "Values": ["rtcfleet-node"]}]
        )["Images"]
        assert {i["ImageId"] for i in remaining} == {image_id, newest_old}
        snapshots = {
            s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
        }
        assert snap_a not in snapshots and snap_b not in snapshots
    # every other region's AMI is a CopyImage of the home AMI, made in that region
    assert sorted(copies) == sorted(
        (region, HOME, result.images[HOME], result.images[region]) for region in OTHERS
    ), f"copies made: {copies}"


def test_failed_health_check_makes_no_image(aws, bundle: Path, metadata: CloudDouble) -> None:
    reporter = builder_reports("failed", metadata)
    with pytest.raises(bake.BakeFailed, match="failed"):
        bake.AwsBaker(spec(bundle), bake.boto3_clients()).bake()
    reporter.join(5)
    for region in [HOME, *OTHERS]:
        images = boto3.client("ec2", region_name=region).describe_images(Owners=["self"])
        assert images["Images"] == []
    home = boto3.client("ec2", region_name=HOME)
    states = {
        i["State"]["Name"]
        for r in home.describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    assert states == {"terminated"}, "the builder was left running"


def test_silent_builder_times_out(aws, bundle: Path) -> None:
    with pytest.raises(bake.BakeFailed, match="no health report"):
        bake.AwsBaker(spec(bundle, health_timeout_seconds=0.3), bake.boto3_clients()).bake()


def test_bake_command_prints_the_image_ids(aws, bundle: Path, metadata: CloudDouble) -> None:
    reporter = builder_reports("healthy", metadata)
    result = CliRunner().invoke(
        app,
        [
            "bake",
            "aws",
            "--bundle",
            str(bundle),
            "--version",
            "1.2.3",
            "--bucket",
            BUCKET,
            "--home-region",
            HOME,
            "--region",
            OTHERS[0],
            "--base-image",
            BASE,
            "--keep",
            "2",
            "--poll-seconds",
            "0.05",
        ],
    )
    reporter.join(5)
    assert result.exit_code == 0, result.output
    import json

    printed = json.loads(result.stdout)
    assert set(printed["imageIds"]) == {HOME, OTHERS[0]}
    assert all(ami.startswith("ami-") for ami in printed["imageIds"].values())
