"""Reading another stack's outputs, for every stack program (region and global alike)."""

from __future__ import annotations

import pulumi


def stack_reference_name(stack: str) -> str:
    """The fully qualified name a ``StackReference`` needs for a stack of this project."""
    # Self-managed backends name every organization "organization".
    organization = pulumi.get_organization() or "organization"
    return f"{organization}/{pulumi.get_project()}/{stack}"


def stack_outputs(stack: str) -> pulumi.StackReference:
    """The outputs of another stack of this project (names in ``infra.outputs``)."""
    return pulumi.StackReference(stack_reference_name(stack))
