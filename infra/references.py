"""Names of the stacks a region reads outputs from, shared by every cloud's region program."""

from __future__ import annotations

import pulumi


def stack_reference_name(stack: str) -> str:
    """The fully qualified name a ``StackReference`` needs for a stack of this project."""
    # Self-managed backends name every organization "organization".
    organization = pulumi.get_organization() or "organization"
    return f"{organization}/{pulumi.get_project()}/{stack}"
