"""Azure RBAC facts shared by the components and the policy pack (no azure-native import)."""

from __future__ import annotations

import uuid

KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
_NAMESPACE = uuid.UUID("8d5e3c4a-5a1f-4b0e-9d1c-7f0e2a6b3c91")


def stable_guid(*parts: str) -> str:
    """A GUID Azure requires as a name, derived from what it names so re-runs find it again."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))
