"""Managed identities and Azure RBAC role assignments, named so re-runs find the same ones.

Role assignment names are GUIDs Azure requires to be unique; deriving them from the stack,
the role and the scope keeps them stable across ``pulumi up`` runs.
"""

from __future__ import annotations

import uuid

import pulumi
import pulumi_azure_native as azure_native

KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
_NAMESPACE = uuid.UUID("8d5e3c4a-5a1f-4b0e-9d1c-7f0e2a6b3c91")


def stable_guid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def role_definition_id(subscription_id: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    """The subscription-scoped id of a built-in role."""
    return pulumi.Output.concat(
        "/subscriptions/",
        subscription_id,
        "/providers/Microsoft.Authorization/roleDefinitions/",
        role,
    )


def grant(
    name: str,
    principal_id: pulumi.Input[str],
    role_definition: pulumi.Input[str],
    scope: pulumi.Input[str],
    description: str,
    parent: pulumi.Resource,
) -> azure_native.authorization.RoleAssignment:
    """A managed identity gets one role on one scope, and nothing wider."""
    return azure_native.authorization.RoleAssignment(
        name,
        role_assignment_name=stable_guid(name),
        principal_id=principal_id,
        principal_type="ServicePrincipal",
        role_definition_id=role_definition,
        scope=scope,
        description=description,
        opts=pulumi.ResourceOptions(parent=parent),
    )
