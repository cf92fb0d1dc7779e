"""AWS and Azure open the same ports to the same kinds of sources: both come from FIREWALL.

Each cloud's planned rules are read back from the recorded resources and each address is
resolved to a kind of source by what it is in that plan (a security group's role, a subnet's
role, the allow list, the private ranges), independently of how the components map kinds.
"""

from __future__ import annotations

import pytest

from infra.azure.firewall_rules import (
    AZURE_REDIS_TLS_PORT,
    NSG_ROLES,
    PLATFORM_RULES,
    nsg_ingress,
)
from infra.plan.runner import StackPlan
from infra.settings import RegionSettings
from infra.spec import FIREWALL, REDIS_PORT, ROLE_TAG, Role, Source

Rule = tuple[str, str, int, int, str]
SOURCE_OF_ROLE = {
    Role.CLIENT_LB.value: Source.CLIENT_LB,
    Role.ADMIN_LB.value: Source.ADMIN_LB,
    Role.SIGNALING_LB.value: Source.SIGNALING_LB,
    Role.GATEWAY.value: Source.GATEWAYS,
    Role.MEDIA_NODE.value: Source.MEDIA_NODES,
}


def _spec(firewall: dict[Role, tuple]) -> set[Rule]:
    return {
        (role.value, rule.protocol, rule.from_port, rule.to_port, rule.source.value)
        for role, rules in firewall.items()
        for rule in rules
    }


def region_settings(plan: StackPlan) -> RegionSettings:
    assert isinstance(plan.settings, RegionSettings), "a region stack's plan"
    return plan.settings


def _aws_rules(plan: StackPlan) -> set[Rule]:
    groups = plan.of_type("aws:ec2/securityGroup:SecurityGroup")
    role_of_group = {g.id: g.tags[ROLE_TAG] for g in groups}
    settings = region_settings(plan)
    allow_list = sorted(str(c) for c in settings.admin_allow_list)
    private = sorted(settings.private_cidrs)
    peered = sorted(str(c) for c in settings.peered_cidrs)
    found: set[Rule] = set()
    for group in groups:
        for rule in group.inputs.get("ingress") or []:
            cidrs = sorted(rule.get("cidrBlocks") or [])
            for source_group in rule.get("securityGroups") or []:
                kind = SOURCE_OF_ROLE[role_of_group[source_group]].value
                found.add(_entry(group.tags[ROLE_TAG], rule, kind))
            if cidrs:
                kind = {
                    ("0.0.0.0/0",): Source.ANYWHERE,
                    tuple(allow_list): Source.ADMIN_ALLOW_LIST,
                    tuple(private): Source.PRIVATE_NETWORK,
                    tuple(peered): Source.PEERED_NETWORKS,
                }[tuple(cidrs)].value
                found.add(_entry(group.tags[ROLE_TAG], rule, kind))
    return found


def _entry(role: str, rule: dict, kind: str) -> Rule:
    return (role, rule["protocol"], int(rule["fromPort"]), int(rule["toPort"]), kind)


def _azure_rules(plan: StackPlan) -> tuple[set[Rule], set[tuple[str, str]]]:
    """Spec rules as (role, protocol, from, to, kind), and platform rules as (role, name)."""
    subnets = {
        s.inputs["addressPrefix"]: SOURCE_OF_ROLE.get(s.inputs["subnetName"])
        for s in plan.of_type("azure-native:network:Subnet")
    }
    settings = region_settings(plan)
    allow_list = tuple(sorted(str(c) for c in settings.admin_allow_list))
    private = tuple(sorted(settings.private_cidrs))
    peered = tuple(sorted(str(c) for c in settings.peered_cidrs))
    found: set[Rule] = set()
    platform: set[tuple[str, str]] = set()
    for group in plan.of_type("azure-native:network:NetworkSecurityGroup"):
        role = group.tags[ROLE_TAG]
        for rule in group.inputs["securityRules"]:
            if rule["access"] != "Allow":
                continue
            if rule["name"].startswith("platform-"):
                platform.add((role, rule["name"]))
                continue
            sources = tuple(
                sorted(rule.get("sourceAddressPrefixes") or [rule["sourceAddressPrefix"]])
            )
            if sources == ("*",):
                kind = Source.ANYWHERE
            elif sources == allow_list:
                kind = Source.ADMIN_ALLOW_LIST
            elif sources == private:
                kind = Source.PRIVATE_NETWORK
            elif sources == peered:
                kind = Source.PEERED_NETWORKS
            else:
                [subnet] = sources
                from_subnet = subnets[subnet]
                assert from_subnet is not None, f"{rule['name']}: from an unknown subnet"
                kind = from_subnet
            low, _, high = rule["destinationPortRange"].partition("-")
            found.add((role, rule["protocol"].lower(), int(low), int(high or low), kind.value))
    return found, platform


@pytest.fixture(scope="module")
def planned(planner) -> tuple[StackPlan, StackPlan]:
    return planner.plan("prod-aws-us-east-1"), planner.plan("prod-azure-westeurope")


def test_aws_opens_exactly_firewall(planned) -> None:
    aws, _ = planned
    assert _aws_rules(aws) == _spec(FIREWALL)


def test_azure_opens_exactly_firewall_as_nsgs_enforce_it(planned) -> None:
    _, azure = planned
    rules, platform = _azure_rules(azure)
    assert rules == _spec({role: nsg_ingress(role) for role in NSG_ROLES})
    assert platform == {
        (role.value, f"platform-{rule.name}")
        for role, rules in PLATFORM_RULES.items()
        for rule in rules
    }


def test_the_clouds_differ_only_by_the_two_documented_translations(planned) -> None:
    aws, azure = planned
    aws_rules = _aws_rules(aws)
    azure_rules, _ = _azure_rules(azure)
    # Redis: Azure Cache for Redis serves TLS on 6380 where ElastiCache serves it on 6379.
    redis_port = {AZURE_REDIS_TLS_PORT: REDIS_PORT}

    def as_aws(rule: Rule) -> set[Rule]:
        role, protocol, low, high, kind = rule
        low, high = redis_port.get(low, low), redis_port.get(high, high)
        if role == Role.GATEWAY.value and kind == Source.PRIVATE_NETWORK.value:
            # The internal Standard LB passes callers through: the gateway admits the LB's
            # callers, which is both AWS rules (LB from private network, gateway from LB).
            return {
                (Role.SIGNALING_LB.value, protocol, low, high, kind),
                (role, protocol, low, high, Source.SIGNALING_LB.value),
            }
        return {(role, protocol, low, high, kind)}

    assert set().union(*(as_aws(rule) for rule in azure_rules)) == aws_rules


@pytest.mark.parametrize("kind", [Source.ANYWHERE, Source.ADMIN_ALLOW_LIST])
def test_internet_exposure_is_identical_without_translation(planned, kind: Source) -> None:
    aws, azure = planned
    azure_rules, _ = _azure_rules(azure)
    exposed = {r for r in _aws_rules(aws) if r[4] == kind.value}
    assert exposed and exposed == {r for r in azure_rules if r[4] == kind.value}


def test_platform_rules_never_come_from_the_internet(planned) -> None:
    _, azure = planned
    for group in azure.of_type("azure-native:network:NetworkSecurityGroup"):
        for rule in group.inputs["securityRules"]:
            if rule["name"].startswith("platform-"):
                sources = rule.get("sourceAddressPrefixes") or [rule["sourceAddressPrefix"]]
                assert not {"*", "Internet", "0.0.0.0/0"} & set(sources), rule["name"]
