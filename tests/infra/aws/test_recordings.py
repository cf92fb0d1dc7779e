"""The region's recording bucket, read back from the planned example stack."""

from __future__ import annotations

import json

import pytest

from infra.outputs import RECORDING_BUCKET
from infra.plan.mocks import ACCOUNT_ID
from infra.settings_errors import SettingsError

BUCKET = "rtcfleet-prod-us-east-1-recordings-" + ACCOUNT_ID
S3 = "aws:s3/"


def _for_bucket(plan, kind: str):
    [resource] = [r for r in plan.of_type(f"{S3}{kind}") if r.inputs.get("bucket") == BUCKET]
    return resource


def test_bucket_is_private_encrypted_versioned_and_tls_only(home_plan) -> None:
    [bucket] = home_plan.of_type("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucket"] == BUCKET and bucket.inputs["forceDestroy"] is False
    block = _for_bucket(home_plan, "bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        block.inputs[flag] is True
        for flag in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    ownership = _for_bucket(home_plan, "bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    key = home_plan.named("aws:kms/key:Key", "prod-use1-recordings")
    assert key.inputs["enableKeyRotation"] is True
    sse = _for_bucket(
        home_plan,
        "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    )
    [rule] = sse.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": key.outputs["arn"],
    }
    assert rule["bucketKeyEnabled"] is True
    versioning = _for_bucket(home_plan, "bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    policy = json.loads(_for_bucket(home_plan, "bucketPolicy:BucketPolicy").inputs["policy"])
    [deny] = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]


def test_lifecycle_comes_from_the_stack_settings(home_plan, plan_with) -> None:
    lifecycle = _for_bucket(home_plan, "bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    [rule] = lifecycle.inputs["rules"]
    assert rule["status"] == "Enabled" and rule["filter"]["prefix"] == "recordings/"
    assert rule["transitions"] == [{"days": 30, "storageClass": "GLACIER_IR"}]
    assert rule["expiration"]["days"] == 365
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 30
    assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    longer = plan_with(
        "prod-aws-us-east-1", recordings={"coldAfterDays": 90, "expireAfterDays": 2555}
    )
    [rule] = _for_bucket(
        longer, "bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    ).inputs["rules"]
    assert (rule["transitions"][0]["days"], rule["expiration"]["days"]) == (90, 2555)


@pytest.mark.parametrize(
    ("recordings", "message"),
    [
        ({"coldAfterDays": 60, "expireAfterDays": 30}, "must come after coldAfterDays"),
        ({"coldAfterDays": 7}, "greater than or equal to 30"),
        ({"expireAfterDays": 365, "keepForever": True}, "unknown setting"),
    ],
)
def test_bad_lifecycle_settings_name_the_key(plan_with, recordings, message) -> None:
    with pytest.raises(SettingsError) as caught:
        plan_with("prod-aws-us-east-1", recordings=recordings)
    assert caught.value.keys == ["rtcfleet:recordings"]
    assert message in str(caught.value)


def test_media_nodes_may_only_write_under_the_prefix(home_plan) -> None:
    grant = home_plan.named("aws:iam/rolePolicy:RolePolicy", "prod-use1-recordings-write")
    media_role = home_plan.named("aws:iam/role:Role", "prod-use1-media")
    assert grant.inputs["role"] == media_role.id
    key = home_plan.named("aws:kms/key:Key", "prod-use1-recordings")
    write, use_key = json.loads(grant.inputs["policy"])["Statement"]
    assert write["Action"] == [
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ]
    assert write["Resource"] == f"arn:aws:s3:::{BUCKET}/recordings/*"
    # only through the region's S3 gateway endpoint, on every route table of the VPC
    endpoint = home_plan.named("aws:ec2/vpcEndpoint:VpcEndpoint", "prod-use1-s3")
    assert write["Condition"] == {"StringEquals": {"aws:SourceVpce": endpoint.id}}
    assert endpoint.inputs["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    tables = home_plan.of_type("aws:ec2/routeTable:RouteTable")
    assert sorted(endpoint.inputs["routeTableIds"]) == sorted(t.id for t in tables)
    assert len(tables) == 4  # public (media nodes) and one private per zone
    assert use_key["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert use_key["Resource"] == key.outputs["arn"]
    # the gateways get nothing of it
    gateway_role = home_plan.named("aws:iam/role:Role", "prod-use1-gateway")
    assert not [
        r
        for r in home_plan.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.inputs["role"] == gateway_role.id and "s3:" in r.inputs["policy"]
    ]


def test_media_settings_name_the_bucket(home_plan) -> None:
    parameter = home_plan.named("aws:ssm/parameter:Parameter", "prod-use1-media-settings")
    document = json.loads(parameter.inputs["value"])
    assert document["recording"] == {
        "store": "s3",
        "bucket": BUCKET,
        "region": "us-east-1",
        "prefix": "recordings/",
    }
    gateway = json.loads(
        home_plan.named("aws:ssm/parameter:Parameter", "prod-use1-gateway-settings").inputs["value"]
    )
    assert "recording" not in gateway
    assert home_plan.exports[RECORDING_BUCKET] == BUCKET
