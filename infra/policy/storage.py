"""CrossGuard policies for recording storage: S3 buckets and Azure storage accounts.

Recordings are people's faces and voices. Wherever the stack stores objects, the store is
private, encrypted, refuses plain HTTP, keeps earlier versions, ages its objects out on a
schedule, and the machines that write to it can neither read nor delete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import Policy, ResourceValidationArgs, StackValidationArgs

from infra.policy.props import Report, resource_policy, stack_policy, truthy
from infra.recordings import CONTAINER_NAME

BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_ACL = "aws:s3/bucketAcl:BucketAcl"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
BLOB_SERVICE = "azure-native:storage:BlobServiceProperties"
BLOB_CONTAINER = "azure-native:storage:BlobContainer"
MANAGEMENT_POLICY = "azure-native:storage:ManagementPolicy"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
SUBNET = "azure-native:network:Subnet"
STORAGE_ENDPOINT = "Microsoft.Storage"

PUBLIC_ACCESS_FLAGS = (
    "blockPublicAcls",
    "blockPublicPolicy",
    "ignorePublicAcls",
    "restrictPublicBuckets",
)
PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
# What no machine role needs on S3: every action, reads, deletes, bucket settings and ACLs.
NODE_FORBIDDEN_S3 = ("*", "s3:*")
NODE_FORBIDDEN_S3_PREFIXES = ("s3:get", "s3:delete", "s3:putbucket", "s3:putobjectacl")
# Built-in Azure roles that read or delete blobs (Storage Blob Data Owner / Contributor /
# Reader): no node identity holds them.
BROAD_BLOB_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
}
BLOB_DATA = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/"
NODE_FORBIDDEN_BLOB = ("read", "delete", "*", "deleteBlobVersion/action", "permanentDelete/action")
TLS_VERSIONS = ("TLS1_2", "TLS1_3")


def _of(args: StackValidationArgs, type_token: str) -> list[Any]:
    return [r for r in args.resources if r.resource_type == type_token]


def _for_bucket(args: StackValidationArgs, type_token: str, bucket: Any) -> list[Any]:
    return [r for r in _of(args, type_token) if r.props.get("bucket") == bucket]


def _statements(document: Any) -> list[Mapping[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return []
    if not isinstance(document, Mapping):
        return []
    statements = document.get("Statement") or []
    if isinstance(statements, Mapping):
        statements = [statements]
    return [s for s in statements if isinstance(s, Mapping)]


def _listed(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    return []


def buckets_private(args: StackValidationArgs, report: Report) -> None:
    """Every bucket blocks public ACLs and policies, and no ACL or policy makes it public."""
    for bucket in _of(args, BUCKET):
        name = bucket.props.get("bucket") or bucket.name
        if str(bucket.props.get("acl") or "") in PUBLIC_ACLS:
            report(f"bucket {name}: acl {bucket.props.get('acl')} is public")
        blocks = _for_bucket(args, PUBLIC_ACCESS_BLOCK, name)
        if not blocks:
            report(f"bucket {name} has no public access block")
        for block in blocks:
            off = [flag for flag in PUBLIC_ACCESS_FLAGS if not truthy(block.props.get(flag))]
            if off:
                report(f"bucket {name}: public access block leaves {', '.join(off)} off")
        for acl in _for_bucket(args, BUCKET_ACL, name):
            if str(acl.props.get("acl") or "") in PUBLIC_ACLS:
                report(f"bucket {name}: acl {acl.props.get('acl')} is public")
        for policy in _for_bucket(args, BUCKET_POLICY, name):
            for statement in _statements(policy.props.get("policy")):
                principal = statement.get("Principal")
                anyone = principal == "*" or (
                    isinstance(principal, Mapping) and "*" in _listed(principal.get("AWS"))
                )
                if statement.get("Effect") == "Allow" and anyone:
                    report(f"bucket {name}: its policy allows anyone ({statement.get('Sid')})")


def buckets_encrypted_tls_only(args: StackValidationArgs, report: Report) -> None:
    """Every bucket encrypts with a KMS key by default and its policy denies plain HTTP."""
    for bucket in _of(args, BUCKET):
        name = bucket.props.get("bucket") or bucket.name
        configurations = _for_bucket(args, ENCRYPTION, name)
        kms = any(
            (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            in ("aws:kms", "aws:kms:dsse")
            for configuration in configurations
            for rule in configuration.props.get("rules") or []
        )
        if not kms:
            report(f"bucket {name} is not encrypted with a KMS key by default (SSE-KMS)")
        denies_http = any(
            statement.get("Effect") == "Deny"
            and str(
                ((statement.get("Condition") or {}).get("Bool") or {}).get("aws:SecureTransport")
            ).lower()
            == "false"
            for policy in _for_bucket(args, BUCKET_POLICY, name)
            for statement in _statements(policy.props.get("policy"))
        )
        if not denies_http:
            report(f"bucket {name}: no policy statement denies requests without TLS")


def buckets_versioned_aged_out(args: StackValidationArgs, report: Report) -> None:
    """Every bucket keeps versions, moves objects to cold storage, expires them (and their old
    versions), and aborts multipart uploads a dead writer left behind."""
    for bucket in _of(args, BUCKET):
        name = bucket.props.get("bucket") or bucket.name
        versioned = any(
            (v.props.get("versioningConfiguration") or {}).get("status") == "Enabled"
            for v in _for_bucket(args, VERSIONING, name)
        )
        if not versioned:
            report(f"bucket {name}: versioning is not enabled")
        rules = [
            rule
            for lifecycle in _for_bucket(args, LIFECYCLE, name)
            for rule in lifecycle.props.get("rules") or []
            if rule.get("status") == "Enabled"
        ]
        if not rules:
            report(f"bucket {name} has no lifecycle rule")
            continue
        checks = {
            "a transition to cold storage": lambda r: bool(r.get("transitions")),
            "an expiration": lambda r: bool((r.get("expiration") or {}).get("days")),
            "an expiration of old versions": lambda r: bool(r.get("noncurrentVersionExpiration")),
            "an abort of incomplete multipart uploads": lambda r: bool(
                r.get("abortIncompleteMultipartUpload")
            ),
        }
        for what, present in checks.items():
            if not any(present(rule) for rule in rules):
                report(f"bucket {name}: its lifecycle lacks {what}")


def node_roles_write_only(args: StackValidationArgs, report: Report) -> None:
    """Roles write the stack's buckets and do nothing more to them: no reads, deletes, bucket
    settings or wildcards (the stack's own buckets hold recordings)."""
    arns = {f"arn:aws:s3:::{b.props.get('bucket') or b.name}" for b in _of(args, BUCKET)}
    if not arns:
        return
    for policy in _of(args, ROLE_POLICY):
        for statement in _statements(policy.props.get("policy")):
            if statement.get("Effect") != "Allow":
                continue
            resources = _listed(statement.get("Resource"))
            if not any(
                r in ("*", "arn:aws:s3:::*") or r.split("/", 1)[0] in arns for r in resources
            ):
                continue
            actions = [a.lower() for a in _listed(statement.get("Action"))]
            broad = [
                a
                for a in actions
                if a in NODE_FORBIDDEN_S3 or a.startswith(NODE_FORBIDDEN_S3_PREFIXES)
            ]
            if broad:
                report(
                    f"{policy.name}: statement {statement.get('Sid')} grants "
                    f"{', '.join(broad)} on a recording bucket"
                )


def storage_accounts_private(args: ResourceValidationArgs, report: Report) -> None:
    """No anonymous blob access, TLS 1.2 or newer, HTTPS only, no account keys; containers
    private."""
    props = args.props
    if args.resource_type == BLOB_CONTAINER:
        if props.get("publicAccess") not in (None, "None"):
            report(
                f"container {props.get('containerName')}: publicAccess {props.get('publicAccess')}"
            )
        return
    if args.resource_type != STORAGE_ACCOUNT:
        return
    name = props.get("accountName")
    if props.get("allowBlobPublicAccess") is not False:
        report(f"storage account {name}: allowBlobPublicAccess must be false")
    if props.get("minimumTlsVersion") not in TLS_VERSIONS:
        report(f"storage account {name}: minimumTlsVersion must be TLS1_2 or newer")
    if props.get("enableHttpsTrafficOnly") is False:
        report(f"storage account {name}: enableHttpsTrafficOnly must be true")
    if props.get("allowSharedKeyAccess") is not False:
        report(f"storage account {name}: allowSharedKeyAccess must be false (identities only)")
    blob = ((props.get("encryption") or {}).get("services") or {}).get("blob") or {}
    if blob.get("enabled") is False:
        report(f"storage account {name}: blob encryption is off")


def storage_accounts_network_rules(args: StackValidationArgs, report: Report) -> None:
    """Every storage account denies the network by default and admits subnets only, each over
    its ``Microsoft.Storage`` service endpoint (Azure refuses a virtual-network rule for a
    subnet without one: NetworkAclsValidationFailure)."""
    for account in _of(args, STORAGE_ACCOUNT):
        name = account.props.get("accountName") or account.name
        rules = account.props.get("networkRuleSet") or {}
        if (
            account.props.get("publicNetworkAccess") != "Disabled"
            and rules.get("defaultAction") != "Deny"
        ):
            report(f"storage account {name}: networkRuleSet.defaultAction must be Deny")
        if rules.get("ipRules"):
            report(f"storage account {name}: IP rules admit networks outside the region's VNet")
        if (
            not rules.get("virtualNetworkRules")
            and account.props.get("publicNetworkAccess") != "Disabled"
        ):
            report(f"storage account {name}: no virtual-network rule admits the media subnet")
        for subnet in account.dependencies:
            if subnet.resource_type != SUBNET:
                continue
            services = {e.get("service") for e in subnet.props.get("serviceEndpoints") or []}
            if STORAGE_ENDPOINT not in services:
                report(
                    f"storage account {name}: subnet {subnet.props.get('subnetName')} has no "
                    f"{STORAGE_ENDPOINT} service endpoint, so Azure refuses its network rule"
                )


def storage_versioned_aged_out(args: StackValidationArgs, report: Report) -> None:
    """Every storage account keeps versions and deleted blobs a while, and a lifecycle policy
    moves blobs to a colder tier and deletes them (and their old versions)."""
    for account in _of(args, STORAGE_ACCOUNT):
        name = account.props.get("accountName") or account.name
        services = [r for r in _of(args, BLOB_SERVICE) if r.props.get("accountName") == name]
        if not any(truthy(s.props.get("isVersioningEnabled")) for s in services):
            report(f"storage account {name}: blob versioning is off")
        if not any(
            truthy((s.props.get("deleteRetentionPolicy") or {}).get("enabled")) for s in services
        ):
            report(f"storage account {name}: blob soft delete is off")
        rules = [
            rule
            for policy in _of(args, MANAGEMENT_POLICY)
            if policy.props.get("accountName") == name
            for rule in (policy.props.get("policy") or {}).get("rules") or []
            if rule.get("enabled") is not False
        ]
        actions = [(rule.get("definition") or {}).get("actions") or {} for rule in rules]
        base = [a.get("baseBlob") or {} for a in actions]
        if not any(
            b.get("tierToCool") or b.get("tierToCold") or b.get("tierToArchive") for b in base
        ):
            report(f"storage account {name}: no lifecycle rule moves blobs to a colder tier")
        if not any(b.get("delete") for b in base):
            report(f"storage account {name}: no lifecycle rule deletes blobs")
        if not any((a.get("version") or {}).get("delete") for a in actions):
            report(f"storage account {name}: no lifecycle rule deletes old versions")


def blob_writers_write_only(args: StackValidationArgs, report: Report) -> None:
    """Identities get no built-in blob role that reads or deletes on the stack's recording
    containers, and no custom role of the stack grants blob reads or deletes."""
    recording = {
        r.urn for r in _of(args, BLOB_CONTAINER) if r.props.get("containerName") == CONTAINER_NAME
    }
    accounts = {r.props.get("accountName") for r in _of(args, BLOB_CONTAINER) if r.urn in recording}
    recording |= {
        r.urn for r in _of(args, STORAGE_ACCOUNT) if r.props.get("accountName") in accounts
    }
    for grant in _of(args, ROLE_ASSIGNMENT):
        if not any(dependency.urn in recording for dependency in grant.dependencies):
            continue
        definition = str(grant.props.get("roleDefinitionId") or "").rsplit("/", 1)[-1].lower()
        if definition in BROAD_BLOB_ROLES:
            report(f"{grant.name}: holds {BROAD_BLOB_ROLES[definition]} (reads or deletes blobs)")
    for role in _of(args, ROLE_DEFINITION):
        for permission in role.props.get("permissions") or []:
            for action in _listed(permission.get("dataActions")):
                if action == "*" or (
                    action.startswith(BLOB_DATA)
                    and action.removeprefix(BLOB_DATA) in NODE_FORBIDDEN_BLOB
                ):
                    report(f"custom role {role.props.get('roleName')} grants {action}")


STORAGE_POLICIES: Sequence[Policy] = (
    stack_policy("rtcfleet-buckets-private", buckets_private),
    stack_policy("rtcfleet-buckets-encrypted-tls-only", buckets_encrypted_tls_only),
    stack_policy("rtcfleet-buckets-versioned-aged-out", buckets_versioned_aged_out),
    stack_policy("rtcfleet-node-roles-write-only", node_roles_write_only),
    resource_policy("rtcfleet-storage-accounts-private", storage_accounts_private),
    stack_policy("rtcfleet-storage-accounts-network-rules", storage_accounts_network_rules),
    stack_policy("rtcfleet-storage-versioned-aged-out", storage_versioned_aged_out),
    stack_policy("rtcfleet-blob-writers-write-only", blob_writers_write_only),
)

__all__ = ["STORAGE_POLICIES"]
