"""Azure Resource Manager clients: one way to build them for the drill and the bake."""

from __future__ import annotations

from typing import Any


def arm_client_options(
    credential: Any = None, base_url: str | None = None, **options: Any
) -> tuple[Any, dict[str, Any]]:
    """The credential (the machine's default chain unless given) and client options;
    ``base_url`` points a client at another Resource Manager (a test double)."""
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    if base_url is not None:
        options["base_url"] = base_url
    return credential, options
