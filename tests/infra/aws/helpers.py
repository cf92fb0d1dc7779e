"""Reading recorded resources back in the engine's terms (camelCase, numbers as floats)."""

from __future__ import annotations

from typing import Any

from infra.plan.mocks import RecordedResource
from tests.infra.helpers import by_role, of_type, one

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"

__all__ = ["SECURITY_GROUP", "by_role", "of_type", "one", "rule_set"]


def rule_set(group: RecordedResource, key: str = "ingress") -> set[tuple[Any, ...]]:
    """A group's rules as (protocol, from, to, cidrs, groups) for exact comparison."""
    return {
        (
            rule["protocol"],
            int(rule["fromPort"]),
            int(rule["toPort"]),
            tuple(rule.get("cidrBlocks") or ()),
            tuple(rule.get("securityGroups") or ()),
        )
        for rule in group.inputs.get(key) or []
    }
