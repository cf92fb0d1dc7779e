"""Picking a cloud's machine type for a role at one of the cloud-neutral size classes."""

from __future__ import annotations

from collections.abc import Mapping

from infra.spec import Role, Size

SizeTable = Mapping[Role, Mapping[Size, str]]


def machine_type(table: SizeTable, role: Role, size: Size, override: str | None = None) -> str:
    """The type to run a role at a size, unless the stack names one itself."""
    return override or table[role][size]
