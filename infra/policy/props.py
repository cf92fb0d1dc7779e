"""Reading resource properties as the policy engine hands them over, and declaring policies.

The engine passes properties in camelCase as read-only ``Mapping``/``Sequence`` proxies and
numbers as floats; every cloud's pack reads them through these helpers, so a property means
the same thing to the AWS, Azure and global policies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Network, ip_network
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

Report = Callable[..., None]


def tags_of(props: Mapping[str, Any]) -> dict[str, Any]:
    """A resource's tags, given as a mapping or (Auto Scaling groups) a list of key/value."""
    tags = props.get("tags")
    if isinstance(tags, Mapping):
        return dict(tags)
    if isinstance(tags, Sequence) and not isinstance(tags, str):
        return {str(t.get("key")): t.get("value") for t in tags if isinstance(t, Mapping)}
    return {}


def truthy(value: Any) -> bool:
    """A boolean property, which some providers hand over as the string ``"true"``."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def integral(value: Any) -> Any:
    """A whole number the engine handed over as a float, back as an int (for messages)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def ipv4_network(value: Any) -> IPv4Network | None:
    """An IPv4 range or address as a network; ``None`` for anything else."""
    try:
        network = ip_network(str(value), strict=False)
    except ValueError:
        return None
    return network if isinstance(network, IPv4Network) else None


def resource_policy(
    name: str, validate: Callable[[ResourceValidationArgs, Report], None]
) -> ResourceValidationPolicy:
    """A mandatory policy over each resource, described by its check's docstring."""
    return ResourceValidationPolicy(
        name=name,
        description=(validate.__doc__ or name).strip(),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def stack_policy(
    name: str, validate: Callable[[StackValidationArgs, Report], None]
) -> StackValidationPolicy:
    """A mandatory policy over a whole stack, described by its check's docstring."""
    return StackValidationPolicy(
        name=name,
        description=(validate.__doc__ or name).strip(),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )
