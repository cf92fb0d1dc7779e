"""CrossGuard policies for an AWS region: the firewall of ``infra.spec`` and the HA minimums.

Each policy reads resource properties in the engine's camelCase form, so the same functions
run under ``pulumi preview --policy-pack policy`` and in the offline ``rtcfleet plan``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network
from typing import Any

from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from infra.policy.props import Report, integral, ipv4_network, resource_policy, tags_of, truthy
from infra.spec import (
    ANYWHERE_V4,
    ANYWHERE_V6,
    FIREWALL,
    MIN_AVAILABILITY_ZONES,
    MIN_GATEWAYS,
    MIN_REDIS_REPLICAS,
    OPTIONAL_SOURCES,
    PRIVATE_RANGES,
    READINESS_PATH,
    REGISTRATION_READINESS_PATH,
    ROLE_TAG,
    SSH_PORT,
    Ingress,
    Role,
    Source,
)

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
STANDALONE_INGRESS = (
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:ec2/securityGroupRule:SecurityGroupRule",
)
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
KEY_PAIR = "aws:ec2/keyPair:KeyPair"
EBS_VOLUME = "aws:ebs/volume:Volume"
AUTOSCALING_GROUP = "aws:autoscaling/group:Group"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
DB_INSTANCE = "aws:rds/instance:Instance"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
# the target group media nodes register through (its Name tag ends so)
SIGNALING_TARGETS_SUFFIX = "-signaling"

_PROTOCOLS = {"6": "tcp", "17": "udp", "-1": "all", "all": "all", "tcp": "tcp", "udp": "udp"}
_PRIVATE = tuple(IPv4Network(cidr) for cidr in PRIVATE_RANGES)
_DATA_ROLES = {Role.REDIS.value, Role.POSTGRES.value}


def _ingress(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [rule for rule in props.get("ingress") or [] if isinstance(rule, Mapping)]


def _protocol(rule: Mapping[str, Any]) -> str:
    return _PROTOCOLS.get(str(rule.get("protocol", rule.get("ipProtocol", ""))).lower(), "?")


def _covers(rule: Mapping[str, Any], port: int) -> bool:
    if _protocol(rule) == "all":
        return True
    # The engine hands numbers over as floats.
    low, high = rule.get("fromPort"), rule.get("toPort")
    return isinstance(low, int | float) and isinstance(high, int | float) and low <= port <= high


def _describe(rule: Mapping[str, Any]) -> str:
    sources = [
        *(rule.get("cidrBlocks") or []),
        *(rule.get("ipv6CidrBlocks") or []),
        *(f"sg:{g}" for g in rule.get("securityGroups") or []),
    ]
    if rule.get("self"):
        sources.append("self")
    ports = f"{integral(rule.get('fromPort'))}-{integral(rule.get('toPort'))}"
    return f"{_protocol(rule)} {ports} from {', '.join(map(str, sources)) or 'nothing'}"


# Sources given as address ranges; the others are security groups.
_CIDR_SOURCES = (Source.ADMIN_ALLOW_LIST, Source.PRIVATE_NETWORK, Source.PEERED_NETWORKS)


def _source_matches(source: Source, rule: Mapping[str, Any]) -> bool:
    cidrs = list(rule.get("cidrBlocks") or [])
    v6 = list(rule.get("ipv6CidrBlocks") or [])
    groups = list(rule.get("securityGroups") or [])
    if rule.get("self") or rule.get("prefixListIds"):
        return False
    if source is Source.ANYWHERE:
        return cidrs == [ANYWHERE_V4] and v6 in ([], [ANYWHERE_V6]) and not groups
    if groups or v6:
        return source not in _CIDR_SOURCES and not cidrs and not v6
    if not cidrs or source not in _CIDR_SOURCES:
        return False
    networks = [ipv4_network(c) for c in cidrs]
    if any(n is None or n.prefixlen == 0 for n in networks):
        return False
    if source in (Source.PRIVATE_NETWORK, Source.PEERED_NETWORKS):
        return all(any(n.subnet_of(p) for p in _PRIVATE) for n in networks if n is not None)
    return True


def _allowed(spec: Ingress, rule: Mapping[str, Any]) -> bool:
    return (
        _protocol(rule) == spec.protocol
        and rule.get("fromPort") == spec.from_port
        and rule.get("toPort") == spec.to_port
        and _source_matches(spec.source, rule)
    )


def firewall_matches_spec(args: ResourceValidationArgs, report: Report) -> None:
    """A role's security group opens exactly what FIREWALL says, from the right kind of source."""
    if args.resource_type in STANDALONE_INGRESS:
        if args.resource_type != STANDALONE_INGRESS[1] or args.props.get("type") == "ingress":
            report("ingress must be inline in its role's security group, where it is checked")
        return
    if args.resource_type != SECURITY_GROUP:
        return
    role_name = tags_of(args.props).get(ROLE_TAG)
    if role_name not in {role.value for role in FIREWALL}:
        report(f"security group has no {ROLE_TAG} tag naming a role of infra.spec.FIREWALL")
        return
    expected = FIREWALL[Role(role_name)]
    rules = _ingress(args.props)
    for rule in rules:
        if not any(_allowed(spec, rule) for spec in expected):
            report(f"{role_name}: ingress {_describe(rule)} is not allowed by FIREWALL")
    for spec in expected:
        if spec.source in OPTIONAL_SOURCES:
            continue
        if not any(_allowed(spec, rule) for rule in rules):
            report(
                f"{role_name}: missing {spec.protocol} {spec.from_port}-{spec.to_port} "
                f"from {spec.source.value} ({spec.description})"
            )


def no_ssh(args: ResourceValidationArgs, report: Report) -> None:
    """Operators use Session Manager: no port 22 from anywhere, no key pairs on machines."""
    if args.resource_type == SECURITY_GROUP:
        for rule in _ingress(args.props):
            if _covers(rule, SSH_PORT) and _protocol(rule) in ("tcp", "all"):
                report(f"ingress {_describe(rule)} opens SSH (port {SSH_PORT})")
    elif args.resource_type in STANDALONE_INGRESS:
        rule = {**args.props, "protocol": args.props.get("protocol", args.props.get("ipProtocol"))}
        if args.props.get("type", "ingress") == "ingress" and _covers(rule, SSH_PORT):
            report(f"ingress rule opens SSH (port {SSH_PORT})")
    elif args.resource_type in (LAUNCH_TEMPLATE, INSTANCE) and args.props.get("keyName"):
        report("machines must not carry an SSH key pair: use Session Manager")
    elif args.resource_type == KEY_PAIR:
        report("SSH key pairs are not used: use Session Manager")


def imdsv2_required(args: ResourceValidationArgs, report: Report) -> None:
    """Instance metadata only through session tokens (IMDSv2)."""
    if args.resource_type not in (LAUNCH_TEMPLATE, INSTANCE):
        return
    options = args.props.get("metadataOptions") or {}
    if options.get("httpTokens") != "required":
        report("metadataOptions.httpTokens must be 'required' (IMDSv2)")


def encryption_at_rest(args: ResourceValidationArgs, report: Report) -> None:
    """Volumes, databases and caches are encrypted at rest."""
    props = args.props
    if args.resource_type == LAUNCH_TEMPLATE:
        mappings = [m for m in props.get("blockDeviceMappings") or [] if isinstance(m, Mapping)]
        if not mappings:
            report("declare the root volume so its encryption does not depend on the image")
        for mapping in mappings:
            if not truthy((mapping.get("ebs") or {}).get("encrypted")):
                report(f"volume {mapping.get('deviceName')} is not encrypted")
    elif args.resource_type == EBS_VOLUME and not truthy(props.get("encrypted")):
        report("EBS volume is not encrypted")
    elif args.resource_type == DB_INSTANCE and not truthy(props.get("storageEncrypted")):
        report("RDS storage is not encrypted (storageEncrypted)")
    elif args.resource_type == REPLICATION_GROUP and not truthy(
        props.get("atRestEncryptionEnabled")
    ):
        report("ElastiCache data is not encrypted at rest (atRestEncryptionEnabled)")


def redis_encrypted_in_transit(args: ResourceValidationArgs, report: Report) -> None:
    """Redis carries session state and its auth token: TLS and AUTH always."""
    if args.resource_type != REPLICATION_GROUP:
        return
    if not truthy(args.props.get("transitEncryptionEnabled")):
        report("transitEncryptionEnabled must be true")
    if not args.props.get("authToken") and not args.props.get("userGroupIds"):
        report("Redis needs an auth token (or user groups)")


def no_public_data_stores(args: ResourceValidationArgs, report: Report) -> None:
    """Redis and Postgres are reachable from groups and peered private ranges only."""
    props = args.props
    if args.resource_type == DB_INSTANCE and truthy(props.get("publiclyAccessible")):
        report("RDS instance is publicly accessible")
    elif args.resource_type in (DB_INSTANCE, REPLICATION_GROUP):
        groups = props.get("vpcSecurityGroupIds") or props.get("securityGroupIds")
        if not groups:
            report("data store without security groups falls back to the VPC default group")
    elif args.resource_type == SECURITY_GROUP and tags_of(props).get(ROLE_TAG) in _DATA_ROLES:
        for rule in _ingress(props):
            networks = [ipv4_network(c) for c in rule.get("cidrBlocks") or []]
            public = any(n is None or not any(n.subnet_of(p) for p in _PRIVATE) for n in networks)
            if public or rule.get("ipv6CidrBlocks"):
                report(f"data store ingress {_describe(rule)} admits public address ranges")


def gateways_span_zones(args: ResourceValidationArgs, report: Report) -> None:
    """Any gateway serves any client, so at least two, in at least two zones."""
    if args.resource_type != AUTOSCALING_GROUP or tags_of(args.props).get(ROLE_TAG) != "gateway":
        return
    subnets = args.props.get("vpcZoneIdentifiers") or args.props.get("availabilityZones") or []
    if len(set(subnets)) < MIN_AVAILABILITY_ZONES:
        report(f"gateways span {len(set(subnets))} zone(s); at least {MIN_AVAILABILITY_ZONES}")
    if (args.props.get("minSize") or 0) < MIN_GATEWAYS:
        report(
            f"gateway group minSize {integral(args.props.get('minSize'))} is below {MIN_GATEWAYS}"
        )


def redis_multi_az_failover(args: ResourceValidationArgs, report: Report) -> None:
    """A primary and a replica in another zone, promoted automatically."""
    if args.resource_type != REPLICATION_GROUP:
        return
    props = args.props
    if not truthy(props.get("automaticFailoverEnabled")):
        report("automaticFailoverEnabled must be true")
    if not truthy(props.get("multiAzEnabled")):
        report("multiAzEnabled must be true")
    replicas = props.get("replicasPerNodeGroup")
    if replicas is None:
        replicas = (props.get("numCacheClusters") or 1) - 1
    replicas = integral(replicas)
    if replicas < MIN_REDIS_REPLICAS:
        report(f"{replicas} replica(s); at least {MIN_REDIS_REPLICAS}")
    zones = props.get("preferredCacheClusterAzs")
    if zones and len(set(zones)) < MIN_AVAILABILITY_ZONES:
        report(f"cache nodes placed in {len(set(zones))} zone(s)")


def postgres_multi_az_with_backups(args: ResourceValidationArgs, report: Report) -> None:
    """The writer, and any cross-region replica that failover may promote, survive a zone."""
    if args.resource_type != DB_INSTANCE:
        return
    source = args.props.get("replicateSourceDb")
    promotable = source is None or str(source).startswith("arn:")
    if promotable and not truthy(args.props.get("multiAz")):
        kind = "primary" if source is None else "cross-region replica"
        report(f"{kind} must be multi-AZ (multiAz)")
    if promotable and not (args.props.get("backupRetentionPeriod") or 0) >= 1:
        report("backups are off (backupRetentionPeriod < 1)")


def node_groups_act_on_liveness(args: ResourceValidationArgs, report: Report) -> None:
    """A node group replaces machines on their own state, never on a load balancer's readiness
    ("ELB"): a regional fault (Redis failover) would replace every gateway of the region."""
    if args.resource_type != AUTOSCALING_GROUP:
        return
    kind = args.props.get("healthCheckType") or "EC2"
    if kind != "EC2":
        report(f"healthCheckType {kind} replaces machines on readiness; use EC2 (liveness only)")


def load_balancers_route_on_readiness(args: ResourceValidationArgs, report: Report) -> None:
    """HTTP target groups probe readiness; the media-signaling group probes registration
    readiness, which a region without media nodes passes (else no first node can register)."""
    if args.resource_type != TARGET_GROUP or args.props.get("protocol") != "HTTP":
        return
    name = str(tags_of(args.props).get("Name", ""))
    expected = (
        REGISTRATION_READINESS_PATH if name.endswith(SIGNALING_TARGETS_SUFFIX) else READINESS_PATH
    )
    check = args.props.get("healthCheck") or {}
    if not truthy(check.get("enabled", True)) or check.get("path") != expected:
        report(f"target group {name} must probe {expected}, not {check.get('path')!r}")


AWS_POLICIES: Sequence[ResourceValidationPolicy] = (
    resource_policy("rtcfleet-firewall-matches-spec", firewall_matches_spec),
    resource_policy("rtcfleet-no-ssh", no_ssh),
    resource_policy("rtcfleet-imdsv2-required", imdsv2_required),
    resource_policy("rtcfleet-encryption-at-rest", encryption_at_rest),
    resource_policy("rtcfleet-redis-encrypted-in-transit", redis_encrypted_in_transit),
    resource_policy("rtcfleet-no-public-data-stores", no_public_data_stores),
    resource_policy("rtcfleet-gateways-span-zones", gateways_span_zones),
    resource_policy("rtcfleet-redis-multi-az-failover", redis_multi_az_failover),
    resource_policy("rtcfleet-postgres-multi-az-with-backups", postgres_multi_az_with_backups),
    resource_policy("rtcfleet-node-groups-act-on-liveness", node_groups_act_on_liveness),
    resource_policy(
        "rtcfleet-load-balancers-route-on-readiness", load_balancers_route_on_readiness
    ),
)

__all__ = ["AWS_POLICIES"]
