"""The region's recording bucket: private, encrypted with its own KMS key, versioned, aged out.

Media nodes may only write under ``recordings/`` (single and multipart uploads); they cannot
list, read or delete, so a compromised node cannot read or destroy what others recorded.
Reading is for the operators' own tools, granted outside this stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.recordings import INCOMPLETE_UPLOAD_DAYS, RECORDING_PREFIX, RecordingSettings

# S3 Glacier Instant Retrieval: millisecond reads of an old recording, at a cold price
COLD_STORAGE_CLASS = "GLACIER_IR"
# What a media node does to its region's bucket: upload objects, one part at a time if large.
# s3:PutObject covers CreateMultipartUpload, UploadPart and CompleteMultipartUpload.
NODE_WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
# SSE-KMS: data keys for new objects; multipart uploads also decrypt the key to join parts.
NODE_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


def bucket_name(env: str, region: str, account_id: str) -> str:
    """Globally unique and readable: the account id keeps two accounts' names apart."""
    return f"rtcfleet-{env}-{region}-recordings-{account_id}"


def bucket_arn(name: str) -> str:
    return f"arn:aws:s3:::{name}"


def deny_insecure_transport(name: str) -> str:
    """Bucket policy: nothing reaches the bucket over plain HTTP, whoever asks."""
    arn = bucket_arn(name)
    statement = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def node_write_policy(name: str, key_arn: str, endpoint_id: str | None = None) -> str:
    """The media nodes' grant: write under the recording prefix, with the bucket's key only,
    and (given the VPC's S3 endpoint) only through that endpoint, so the nodes' credentials
    write nothing from outside the region's network."""
    write: dict[str, object] = {
        "Sid": "WriteRecordings",
        "Effect": "Allow",
        "Action": list(NODE_WRITE_ACTIONS),
        "Resource": f"{bucket_arn(name)}/{RECORDING_PREFIX}*",
    }
    if endpoint_id is not None:
        write["Condition"] = {"StringEquals": {"aws:SourceVpce": endpoint_id}}
    statements = [
        write,
        {
            "Sid": "RecordingKey",
            "Effect": "Allow",
            "Action": list(NODE_KEY_ACTIONS),
            "Resource": key_arn,
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@dataclass
class RecordingStoreArgs:
    prefix: str
    env: str
    region: str
    settings: RecordingSettings
    # keep the bucket and its key when the stack is destroyed (production)
    retain: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class RecordingStore(pulumi.ComponentResource):
    """KMS key, bucket, and the bucket's access block, encryption, versioning, lifecycle and
    TLS-only policy; ``grant_writer`` adds the media role's write grant."""

    bucket: aws.s3.Bucket
    key: aws.kms.Key
    name: pulumi.Output[str]

    def __init__(
        self, name: str, args: RecordingStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:RecordingStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain)
        base = f"{args.prefix}-recordings"
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self))
        self.name = account.account_id.apply(
            lambda account_id: bucket_name(args.env, args.region, account_id)
        )

        self.key = aws.kms.Key(
            base,
            description=f"rtcfleet recordings in {args.region}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=args.tags,
            opts=kept,
        )
        aws.kms.Alias(
            base,
            name=f"alias/rtcfleet/{args.env}/{args.region}/recordings",
            target_key_id=self.key.key_id,
            opts=child,
        )
        self.bucket = aws.s3.Bucket(
            base, bucket=self.name, force_destroy=False, tags=args.tags, opts=kept
        )
        access = aws.s3.BucketPublicAccessBlock(
            base,
            bucket=self.bucket.bucket,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            base,
            bucket=self.bucket.bucket,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            base,
            bucket=self.bucket.bucket,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=self.key.arn
                    ),
                    # one data key per bucket, not per object: far fewer KMS calls per segment
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            base,
            bucket=self.bucket.bucket,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        lifecycle = args.settings
        aws.s3.BucketLifecycleConfiguration(
            base,
            bucket=self.bucket.bucket,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="recordings-age-out",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(
                        prefix=RECORDING_PREFIX
                    ),
                    transitions=[
                        aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                            days=lifecycle.cold_after_days, storage_class=COLD_STORAGE_CLASS
                        )
                    ],
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                        days=lifecycle.expire_after_days
                    ),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=lifecycle.noncurrent_days
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=INCOMPLETE_UPLOAD_DAYS
                    ),
                )
            ],
            # S3 refuses lifecycle rules that need versioning before versioning is on
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            base,
            bucket=self.bucket.bucket,
            policy=self.name.apply(deny_insecure_transport),
            # a bucket policy put before the access block could still be a public one
            opts=pulumi.ResourceOptions(parent=self, depends_on=[access]),
        )
        self._base = base
        self.register_outputs({"bucket": self.name, "keyArn": self.key.arn})

    def grant_writer(
        self, role: aws.iam.Role, endpoint_id: pulumi.Input[str] | None = None
    ) -> aws.iam.RolePolicy:
        """The media nodes' role, the only writer (the role exists after the bucket: the
        nodes read the bucket's name from their settings); through ``endpoint_id`` only."""
        return aws.iam.RolePolicy(
            f"{self._base}-write",
            role=role.id,
            policy=pulumi.Output.all(self.name, self.key.arn, endpoint_id).apply(
                lambda values: node_write_policy(
                    str(values[0]), str(values[1]), None if values[2] is None else str(values[2])
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
