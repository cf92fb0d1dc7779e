"""How the recording mocks answer for azure-native: resource ids, names, endpoints and invokes.

Azure programs wire resources together by ARM id and by name, and azure-native returns both
only once a resource exists; these answers have the shapes Azure gives them so the program's
references (a subnet's id in a scale set, a vault's URI in custom data) resolve offline.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

SUBSCRIPTION_ID = "5ca1ab1e-0000-4000-8000-000000000001"
TENANT_ID = "5ca1ab1e-0000-4000-8000-000000000002"
DEPLOYER_OBJECT_ID = "5ca1ab1e-0000-4000-8000-000000000003"
PREFIX = "azure-native:"

_NAMESPACES = {
    "resources": "Microsoft.Resources",
    "network": "Microsoft.Network",
    "compute": "Microsoft.Compute",
    "keyvault": "Microsoft.KeyVault",
    "redis": "Microsoft.Cache",
    "dbforpostgresql": "Microsoft.DBforPostgreSQL",
    "managedidentity": "Microsoft.ManagedIdentity",
    "authorization": "Microsoft.Authorization",
    "monitor": "Microsoft.Insights",
    "privatedns": "Microsoft.Network",
    "virtualmachineimages": "Microsoft.VirtualMachineImages",
}
# ARM type segments that are not the kind's name in lower camel case plus "s".
_ARM_TYPES = {
    "Server": "flexibleServers",
    "Redis": "redis",
    "UserAssignedIdentity": "userAssignedIdentities",
    "PrivateZone": "privateDnsZones",
    "AutoscaleSetting": "autoscalesettings",
    "PublicIPAddress": "publicIPAddresses",
    "WebApplicationFirewallPolicy": "ApplicationGatewayWebApplicationFirewallPolicies",
    "Gallery": "galleries",
    "VirtualMachineImageTemplate": "imageTemplates",
}
# The input holding a resource's own name, where it is not ``<kind>Name``.
_NAME_KEYS = {
    "VirtualMachineScaleSet": "vmScaleSetName",
    "UserAssignedIdentity": "resourceName",
    "PublicIPAddress": "publicIpAddressName",
    "Server": "serverName",
    "Vault": "vaultName",
    "Secret": "secretName",
    "RoleAssignment": "roleAssignmentName",
    "RoleDefinition": "roleDefinitionId",
    "WebApplicationFirewallPolicy": "policyName",
}
# Child resources: (parent ARM type, input naming the parent, child ARM type).
_CHILDREN = {
    "Subnet": ("virtualNetworks", "virtualNetworkName", "subnets"),
    "Secret": ("vaults", "vaultName", "secrets"),
    "VirtualNetworkLink": ("privateDnsZones", "privateZoneName", "virtualNetworkLinks"),
    "VirtualNetworkPeering": ("virtualNetworks", "virtualNetworkName", "virtualNetworkPeerings"),
    "PrivateDnsZoneGroup": ("privateEndpoints", "privateEndpointName", "privateDnsZoneGroups"),
    "GalleryImage": ("galleries", "galleryName", "images"),
}


def _digest(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()


def _kind(typ: str) -> tuple[str, str]:
    _, module, kind = typ.split(":", 2)
    return module, kind


def own_name(typ: str, name: str, inputs: Mapping[str, Any]) -> str:
    """The resource's Azure name: the input that names it, else Pulumi's auto-name."""
    _, kind = _kind(typ)
    key = _NAME_KEYS.get(kind, kind[0].lower() + kind[1:] + "Name")
    for candidate in (key, "name"):
        value = inputs.get(candidate)
        if isinstance(value, str):
            return value
    return f"{name}{_digest(typ, name)[:8]}"


def resource_id(typ: str, name: str, inputs: Mapping[str, Any]) -> str:
    """An ARM resource id shaped as Azure returns it."""
    module, kind = _kind(typ)
    physical = own_name(typ, name, inputs)
    subscription = f"/subscriptions/{SUBSCRIPTION_ID}"
    if kind == "ResourceGroup":
        return f"{subscription}/resourceGroups/{physical}"
    namespace = _NAMESPACES.get(module, f"Microsoft.{module}")
    if kind in ("RoleAssignment", "RoleDefinition"):
        scope = str(inputs.get("scope") or subscription)
        return f"{scope}/providers/{namespace}/{kind[0].lower() + kind[1:]}s/{physical}"
    group = f"{subscription}/resourceGroups/{inputs.get('resourceGroupName', 'unknown')}"
    if kind in _CHILDREN:
        parent_type, parent_key, child_type = _CHILDREN[kind]
        parent = inputs.get(parent_key, "unknown")
        return f"{group}/providers/{namespace}/{parent_type}/{parent}/{child_type}/{physical}"
    arm_type = _ARM_TYPES.get(kind, kind[0].lower() + kind[1:] + "s")
    return f"{group}/providers/{namespace}/{arm_type}/{physical}"


def _uuid(*parts: str) -> str:
    return str(uuid.UUID(_digest(*parts)[:32]))


def outputs(typ: str, name: str, inputs: Mapping[str, Any], region: str | None) -> dict[str, Any]:
    """Computed properties the programs read back from azure-native resources."""
    _, kind = _kind(typ)
    physical = own_name(typ, name, inputs)
    out: dict[str, Any] = {"name": physical}
    if region and "location" not in inputs and kind not in ("RoleAssignment", "Secret"):
        out["location"] = region
    identity = inputs.get("identity")
    if isinstance(identity, Mapping) and isinstance(identity.get("userAssignedIdentities"), list):
        # Given as a list of ids, returned by Azure as a map from id to the identity's ids.
        out["identity"] = {
            **identity,
            "userAssignedIdentities": {
                str(i): {"principalId": _uuid(str(i), "principal"), "clientId": _uuid(str(i))}
                for i in identity["userAssignedIdentities"]
            },
        }
    if kind == "UserAssignedIdentity":
        out |= {
            "principalId": _uuid(typ, name, "principal"),
            "clientId": _uuid(typ, name, "client"),
            "tenantId": TENANT_ID,
        }
    elif kind == "Vault":
        properties = dict(inputs.get("properties") or {})
        out["properties"] = {**properties, "vaultUri": f"https://{physical}.vault.azure.net/"}
    elif kind == "Secret":
        vault = inputs.get("vaultName", "unknown")
        out["properties"] = {
            "secretUri": f"https://{vault}.vault.azure.net/secrets/{physical}",
            "secretUriWithVersion": (
                f"https://{vault}.vault.azure.net/secrets/{physical}/{_digest(typ, name)[:32]}"
            ),
        }
    elif kind == "Redis" and typ == "azure-native:redis:Redis":
        out |= {"hostName": f"{physical}.redis.cache.windows.net", "sslPort": 6380, "port": 6379}
    elif kind == "Server" and typ.startswith("azure-native:dbforpostgresql:"):
        out["fullyQualifiedDomainName"] = f"{physical}.postgres.database.azure.com"
    elif kind == "PublicIPAddress":
        label = (inputs.get("dnsSettings") or {}).get("domainNameLabel")
        if label and region:
            out["dnsSettings"] = {
                "domainNameLabel": label,
                "fqdn": f"{label}.{region}.cloudapp.azure.com",
            }
    return out


def call(token: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Answers to the azure-native invokes the programs make."""
    if token == "azure-native:authorization:getClientConfig":
        return {
            "clientId": _uuid("deployer-client"),
            "objectId": DEPLOYER_OBJECT_ID,
            "subscriptionId": SUBSCRIPTION_ID,
            "tenantId": TENANT_ID,
        }
    if token == "azure-native:redis:listRedisKeys":
        cache = str(args.get("name"))
        return {
            "primaryKey": f"planned-redis-key-{_digest(cache, 'primary')[:24]}",
            "secondaryKey": f"planned-redis-key-{_digest(cache, 'secondary')[:24]}",
        }
    return {}
