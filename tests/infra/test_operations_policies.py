"""The storage, spot and certificate policies pass the example stacks and each fails on a
broken copy of a planned one."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest

from infra.plan.checks import evaluate
from infra.plan.mocks import RecordedResource
from infra.plan.runner import StackPlan
from infra.policy import OPERATIONS_POLICIES

Breakage = Callable[[list[RecordedResource]], None]


def _one(resources, type_suffix: str, name: str | None = None) -> RecordedResource:
    matches = [
        r for r in resources if r.type.endswith(type_suffix) and (name is None or r.name == name)
    ]
    assert len(matches) == 1, [r.name for r in matches]
    return matches[0]


# AWS (prod-aws-us-east-1)


def public_bucket(rs):
    _one(rs, "BucketPublicAccessBlock").inputs["restrictPublicBuckets"] = False


def bucket_without_access_block(rs):
    rs.remove(_one(rs, "BucketPublicAccessBlock"))


def bucket_open_to_anyone(rs):
    policy = _one(rs, "bucketPolicy:BucketPolicy")
    document = json.loads(policy.inputs["policy"])
    document["Statement"].append(
        {"Sid": "Anyone", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}
    )
    policy.inputs["policy"] = json.dumps(document)


def unencrypted_bucket(rs):
    rule = _one(rs, "BucketServerSideEncryptionConfiguration").inputs["rules"][0]
    rule["applyServerSideEncryptionByDefault"] = {"sseAlgorithm": "AES256"}


def bucket_over_plain_http(rs):
    rs.remove(_one(rs, "bucketPolicy:BucketPolicy"))


def unversioned_bucket(rs):
    _one(rs, "BucketVersioning").inputs["versioningConfiguration"]["status"] = "Suspended"


def bucket_without_lifecycle(rs):
    rs.remove(_one(rs, "BucketLifecycleConfiguration"))


def recordings_kept_forever(rs):
    _one(rs, "BucketLifecycleConfiguration").inputs["rules"][0].pop("expiration")


def media_reads_recordings(rs):
    grant = _one(rs, "rolePolicy:RolePolicy", "prod-use1-recordings-write")
    document = json.loads(grant.inputs["policy"])
    document["Statement"][0]["Action"].append("s3:GetObject")
    grant.inputs["policy"] = json.dumps(document)


def gateways_on_spot(rs):
    group = _one(rs, "autoscaling/group:Group", "prod-use1-gateway")
    media = _one(rs, "autoscaling/group:Group", "prod-use1-media")
    group.inputs["mixedInstancesPolicy"] = copy.deepcopy(media.inputs["mixedInstancesPolicy"])
    group.inputs["mixedInstancesPolicy"]["instancesDistribution"][
        "onDemandPercentageAboveBaseCapacity"
    ] = 50


def spot_without_rebalancing(rs):
    _one(rs, "autoscaling/group:Group", "prod-use1-media").inputs["capacityRebalance"] = False


def self_signed_in_prod(rs):
    certificate = _one(rs, "acm/certificate:Certificate", "prod-use1-client-tls")
    certificate.inputs["tags"]["rtcfleet:certificate-mode"] = "self-signed"


def unvalidated_certificate(rs):
    rs.remove(_one(rs, "certificateValidation:CertificateValidation", "prod-use1-admin-tls"))


# Azure (prod-azure-westeurope)


def public_blob_access(rs):
    _one(rs, "storage:StorageAccount").inputs["allowBlobPublicAccess"] = True


def old_tls(rs):
    _one(rs, "storage:StorageAccount").inputs["minimumTlsVersion"] = "TLS1_0"


def account_keys(rs):
    _one(rs, "storage:StorageAccount").inputs.pop("allowSharedKeyAccess")


def storage_open_to_every_network(rs):
    _one(rs, "storage:StorageAccount").inputs["networkRuleSet"]["defaultAction"] = "Allow"


def storage_open_to_an_address(rs):
    rules = _one(rs, "storage:StorageAccount").inputs["networkRuleSet"]
    rules["ipRules"] = [{"iPAddressOrRange": "203.0.113.0/24", "action": "Allow"}]


def media_subnet_without_storage_endpoint(rs):
    subnet = _one(rs, "network:Subnet", "prod-weu-media")
    subnet.inputs["serviceEndpoints"] = [{"service": "Microsoft.KeyVault"}]


def public_container(rs):
    _one(rs, "storage:BlobContainer").inputs["publicAccess"] = "Blob"


def no_blob_versions(rs):
    _one(rs, "storage:BlobServiceProperties").inputs["isVersioningEnabled"] = False


def blobs_kept_forever(rs):
    policy = _one(rs, "storage:ManagementPolicy")
    policy.inputs["policy"]["rules"][0]["definition"]["actions"]["baseBlob"].pop("delete")


def contributor_for_media(rs):
    grant = _one(rs, "RoleAssignment", "prod-weu-recordings-media-writes")
    grant.inputs["roleDefinitionId"] = (
        "/subscriptions/0/providers/Microsoft.Authorization/roleDefinitions/"
        "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    )


def writer_role_reads(rs):
    role = _one(rs, "RoleDefinition", "prod-weu-recordings-writer")
    role.inputs["permissions"][0]["dataActions"].append(
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
    )


def gateway_scale_set_on_spot(rs):
    profile = _one(rs, "VirtualMachineScaleSet", "prod-weu-gateway").inputs["virtualMachineProfile"]
    profile["priority"] = "Spot"


def spot_deallocated(rs):
    profile = _one(rs, "VirtualMachineScaleSet", "prod-weu-spot-media").inputs[
        "virtualMachineProfile"
    ]
    profile["evictionPolicy"] = "Deallocate"


AWS_CASES: list[tuple[str, Breakage, str]] = [
    ("rtcfleet-buckets-private", public_bucket, "leaves restrictPublicBuckets off"),
    ("rtcfleet-buckets-private", bucket_without_access_block, "no public access block"),
    ("rtcfleet-buckets-private", bucket_open_to_anyone, "allows anyone (Anyone)"),
    ("rtcfleet-buckets-encrypted-tls-only", unencrypted_bucket, "not encrypted with a KMS key"),
    ("rtcfleet-buckets-encrypted-tls-only", bucket_over_plain_http, "denies requests without TLS"),
    ("rtcfleet-buckets-versioned-aged-out", unversioned_bucket, "versioning is not enabled"),
    ("rtcfleet-buckets-versioned-aged-out", bucket_without_lifecycle, "no lifecycle rule"),
    ("rtcfleet-buckets-versioned-aged-out", recordings_kept_forever, "lacks an expiration"),
    ("rtcfleet-node-roles-write-only", media_reads_recordings, "grants s3:getobject"),
    ("rtcfleet-gateways-on-demand", gateways_on_spot, "runs 50 % spot above the base"),
    ("rtcfleet-spot-leaves-cleanly", spot_without_rebalancing, "needs capacityRebalance"),
    ("rtcfleet-self-signed-only-in-dev", self_signed_in_prod, "self-signed certificate in a prod"),
    ("rtcfleet-issued-certificates-validated", unvalidated_certificate, "without a Certificate"),
]
AZURE_CASES: list[tuple[str, Breakage, str]] = [
    ("rtcfleet-storage-accounts-private", public_blob_access, "allowBlobPublicAccess"),
    ("rtcfleet-storage-accounts-private", old_tls, "minimumTlsVersion"),
    ("rtcfleet-storage-accounts-private", account_keys, "allowSharedKeyAccess"),
    ("rtcfleet-storage-accounts-private", public_container, "publicAccess Blob"),
    (
        "rtcfleet-storage-accounts-network-rules",
        storage_open_to_every_network,
        "defaultAction must be Deny",
    ),
    ("rtcfleet-storage-accounts-network-rules", storage_open_to_an_address, "IP rules admit"),
    (
        "rtcfleet-storage-accounts-network-rules",
        media_subnet_without_storage_endpoint,
        "subnet media has no Microsoft.Storage service endpoint",
    ),
    ("rtcfleet-storage-versioned-aged-out", no_blob_versions, "blob versioning is off"),
    ("rtcfleet-storage-versioned-aged-out", blobs_kept_forever, "no lifecycle rule deletes blobs"),
    ("rtcfleet-blob-writers-write-only", contributor_for_media, "Storage Blob Data Contributor"),
    ("rtcfleet-blob-writers-write-only", writer_role_reads, "blobs/read"),
    ("rtcfleet-gateways-on-demand", gateway_scale_set_on_spot, "has Spot priority"),
    ("rtcfleet-spot-leaves-cleanly", spot_deallocated, "evicts with 'Deallocate'"),
]


def test_every_operations_policy_has_a_failing_case() -> None:
    covered = {name for name, _, _ in AWS_CASES + AZURE_CASES}
    assert {p.name for p in OPERATIONS_POLICIES} == covered


def _fails(plan: StackPlan, policy: str, breakage: Breakage, message: str) -> None:
    assert evaluate(plan.resources, OPERATIONS_POLICIES) == []
    resources = copy.deepcopy(plan.resources)
    breakage(resources)
    violations = evaluate(resources, OPERATIONS_POLICIES)
    assert any(v.policy == policy and message in v.message for v in violations), violations


@pytest.mark.parametrize(
    ("policy", "breakage", "message"), AWS_CASES, ids=[c[1].__name__ for c in AWS_CASES]
)
def test_aws_policy_fails_on_a_broken_plan(home_plan, policy, breakage, message) -> None:
    _fails(home_plan, policy, breakage, message)


@pytest.mark.parametrize(
    ("policy", "breakage", "message"), AZURE_CASES, ids=[c[1].__name__ for c in AZURE_CASES]
)
def test_azure_policy_fails_on_a_broken_plan(planner, policy, breakage, message) -> None:
    _fails(planner.plan("prod-azure-westeurope"), policy, breakage, message)
