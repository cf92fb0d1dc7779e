"""Managed identities and Azure RBAC role assignments, named so re-runs find the same ones.

Role assignment names are GUIDs Azure requires to be unique; deriving them from the stack,
the role and the scope keeps them stable across ``pulumi up`` runs.
"""

from __future__ import annotations

import pulumi
import pulumi_azure_native as azure_native

from infra.azure.rbac import KEY_VAULT_SECRETS_USER, stable_guid

__all__ = ["KEY_VAULT_SECRETS_USER", "grant", "role_definition_id", "stable_guid"]


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
