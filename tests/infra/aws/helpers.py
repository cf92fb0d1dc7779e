"""Reading recorded resources back in the engine's terms (camelCase, numbers as floats)."""

from __future__ import annotations

from typing import Any

from infra.plan.mocks import RecordedResource

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"


def of_type(resources: list[RecordedResource], type_token: str) -> list[RecordedResource]:
    return [r for r in resources if r.type == type_token]


def one(resources: list[RecordedResource], type_token: str, name: str | None = None):
    matches = [r for r in of_type(resources, type_token) if name is None or r.name == name]
    assert len(matches) == 1, f"{len(matches)} {type_token} named {name!r}"
    return matches[0]


def by_role(resources: list[RecordedResource], type_token: str) -> dict[str, RecordedResource]:
    return {r.tags["rtcfleet:role"]: r for r in of_type(resources, type_token)}


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
