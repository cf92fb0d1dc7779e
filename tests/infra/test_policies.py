"""Each policy of the pack passes the example stacks and fails on a deliberately broken copy."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from infra.plan.checks import evaluate
from infra.plan.mocks import RecordedResource
from infra.plan.runner import StackPlan
from infra.policy import OPERATIONS_POLICIES, POLICIES
from infra.policy.azure import AZURE_POLICIES
from infra.policy.global_stack import GLOBAL_POLICIES

Breakage = Callable[[list[RecordedResource]], None]


def _find(resources, type_suffix: str, name_suffix: str) -> RecordedResource:
    return next(
        r for r in resources if r.type.endswith(type_suffix) and r.name.endswith(name_suffix)
    )


def _rule(resources, group: str, port: int) -> dict:
    sg = _find(resources, "SecurityGroup", group)
    return next(r for r in sg.inputs["ingress"] if r["fromPort"] == port)


def open_admin(rs):
    _rule(rs, "-admin-lb", 443)["cidrBlocks"] = ["0.0.0.0/0"]


def extra_media_port(rs):
    _find(rs, "SecurityGroup", "-media").inputs["ingress"].append(
        {"protocol": "tcp", "fromPort": 8080.0, "toPort": 8080.0, "cidrBlocks": ["0.0.0.0/0"]}
    )


def gateway_from_anywhere(rs):
    rule = _rule(rs, "-gateway", 9090)
    rule.pop("securityGroups")
    rule["cidrBlocks"] = ["0.0.0.0/0"]


def standalone_rule(rs):
    rs.append(
        RecordedResource(
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            "sneaky",
            {"ipProtocol": "tcp", "fromPort": 6379, "toPort": 6379, "cidrIpv4": "0.0.0.0/0"},
            None,
            "sneaky",
            True,
        )
    )


def ssh_open(rs):
    _find(rs, "SecurityGroup", "-media").inputs["ingress"].append(
        {"protocol": "tcp", "fromPort": 22.0, "toPort": 22.0, "cidrBlocks": ["10.0.0.0/8"]}
    )


def key_pair(rs):
    _find(rs, "LaunchTemplate", "-gateway").inputs["keyName"] = "ops"


def imds_v1(rs):
    _find(rs, "LaunchTemplate", "-media").inputs["metadataOptions"]["httpTokens"] = "optional"


def plain_volume(rs):
    _find(rs, "LaunchTemplate", "-media").inputs["blockDeviceMappings"][0]["ebs"]["encrypted"] = (
        "false"
    )


def plain_database(rs):
    _find(rs, "rds/instance:Instance", "-postgres").inputs["storageEncrypted"] = False


def plain_redis_at_rest(rs):
    _find(rs, "ReplicationGroup", "-redis").inputs["atRestEncryptionEnabled"] = False


def redis_without_tls(rs):
    _find(rs, "ReplicationGroup", "-redis").inputs["transitEncryptionEnabled"] = False


def public_database(rs):
    _find(rs, "rds/instance:Instance", "-postgres").inputs["publiclyAccessible"] = True


def database_open_to_the_internet(rs):
    # Peered private ranges may write settings; a public range may not.
    _rule(rs, "-postgres", 5432)["cidrBlocks"] = ["0.0.0.0/0"]


def one_zone_gateways(rs):
    group = _find(rs, "autoscaling/group:Group", "-gateway")
    group.inputs["vpcZoneIdentifiers"] = group.inputs["vpcZoneIdentifiers"][:1]


def one_gateway(rs):
    _find(rs, "autoscaling/group:Group", "-gateway").inputs["minSize"] = 1.0


def redis_without_failover(rs):
    _find(rs, "ReplicationGroup", "-redis").inputs["automaticFailoverEnabled"] = False


def redis_without_replica(rs):
    _find(rs, "ReplicationGroup", "-redis").inputs["numCacheClusters"] = 1.0


def single_az_postgres(rs):
    _find(rs, "rds/instance:Instance", "-postgres").inputs["multiAz"] = False


def postgres_without_backups(rs):
    _find(rs, "rds/instance:Instance", "-postgres").inputs["backupRetentionPeriod"] = 0.0


def gateways_replaced_on_readiness(rs):
    _find(rs, "autoscaling/group:Group", "-gateway").inputs["healthCheckType"] = "ELB"


def client_targets_probe_liveness(rs):
    _find(rs, "lb/targetGroup:TargetGroup", "-client").inputs["healthCheck"]["path"] = "/healthz"


def signaling_targets_probe_join_readiness(rs):
    # today's deadlock: registration waits for a registered media node
    targets = _find(rs, "lb/targetGroup:TargetGroup", "-signaling")
    targets.inputs["healthCheck"]["path"] = "/readyz"


CASES: list[tuple[str, Breakage, str]] = [
    ("rtcfleet-firewall-matches-spec", open_admin, "admin-lb: ingress tcp 443-443 from 0.0.0.0/0"),
    ("rtcfleet-firewall-matches-spec", extra_media_port, "media: ingress tcp 8080-8080"),
    ("rtcfleet-firewall-matches-spec", gateway_from_anywhere, "gateway: missing tcp 9090-9090"),
    ("rtcfleet-firewall-matches-spec", standalone_rule, "must be inline"),
    ("rtcfleet-no-ssh", ssh_open, "opens SSH"),
    ("rtcfleet-no-ssh", key_pair, "SSH key pair"),
    ("rtcfleet-imdsv2-required", imds_v1, "httpTokens"),
    ("rtcfleet-encryption-at-rest", plain_volume, "not encrypted"),
    ("rtcfleet-encryption-at-rest", plain_database, "storageEncrypted"),
    ("rtcfleet-encryption-at-rest", plain_redis_at_rest, "atRestEncryptionEnabled"),
    ("rtcfleet-redis-encrypted-in-transit", redis_without_tls, "transitEncryptionEnabled"),
    ("rtcfleet-no-public-data-stores", public_database, "publicly accessible"),
    ("rtcfleet-no-public-data-stores", database_open_to_the_internet, "public address ranges"),
    ("rtcfleet-gateways-span-zones", one_zone_gateways, "span 1 zone"),
    ("rtcfleet-gateways-span-zones", one_gateway, "minSize 1"),
    ("rtcfleet-redis-multi-az-failover", redis_without_failover, "automaticFailoverEnabled"),
    ("rtcfleet-redis-multi-az-failover", redis_without_replica, "0 replica"),
    ("rtcfleet-postgres-multi-az-with-backups", single_az_postgres, "primary must be multi-AZ"),
    ("rtcfleet-postgres-multi-az-with-backups", postgres_without_backups, "backups are off"),
    ("rtcfleet-node-groups-act-on-liveness", gateways_replaced_on_readiness, "healthCheckType ELB"),
    (
        "rtcfleet-load-balancers-route-on-readiness",
        client_targets_probe_liveness,
        "-client must probe /readyz, not '/healthz'",
    ),
    (
        "rtcfleet-load-balancers-route-on-readiness",
        signaling_targets_probe_join_readiness,
        "-signaling must probe /readyz/registration, not '/readyz'",
    ),
]


def test_every_policy_has_a_failing_case() -> None:
    # The global stack's policies fail on broken global plans in tests/infra/global_stack,
    # the Azure ones on broken Azure plans in tests/infra/azure, storage, spot and certificate
    # ones in tests/infra/test_operations_policies.py.
    region_policies = (
        {p.name for p in POLICIES}
        - {p.name for p in GLOBAL_POLICIES}
        - {p.name for p in AZURE_POLICIES}
        - {p.name for p in OPERATIONS_POLICIES}
    )
    assert region_policies == {name for name, _, _ in CASES}


@pytest.mark.parametrize("stack", ["dev_plan", "home_plan", "eu_plan"])
def test_example_stacks_pass_every_policy(stack: str, request: pytest.FixtureRequest) -> None:
    plan: StackPlan = request.getfixturevalue(stack)
    assert evaluate(plan.resources, POLICIES) == []


@pytest.mark.parametrize(
    ("policy", "breakage", "message"), CASES, ids=[c[1].__name__ for c in CASES]
)
def test_policy_fails_on_a_broken_resource_set(home_plan, policy, breakage, message) -> None:
    resources = copy.deepcopy(home_plan.resources)
    breakage(resources)
    violations = evaluate(resources, POLICIES)
    assert violations, "the broken set passed"
    assert any(v.policy == policy and message in v.message for v in violations), violations


def test_cross_region_replica_must_be_multi_az(eu_plan) -> None:
    resources = copy.deepcopy(eu_plan.resources)
    _find(resources, "rds/instance:Instance", "-postgres-replica").inputs["multiAz"] = False
    [violation] = evaluate(resources, POLICIES)
    assert violation.policy == "rtcfleet-postgres-multi-az-with-backups"
    assert "cross-region replica" in violation.message
    assert violation.resource.endswith("::prod-euw1-postgres-replica")
