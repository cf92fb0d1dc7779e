"""Requests Azure Resource Manager refuses, as plain functions of a resource's camelCase inputs.

Each rule is one that Azure documents (the reference is next to it) and that a mocked plan
would otherwise pass silently: the offline plan's mocks answer a refused create the way ARM
does, and the policy pack reports the same rule under ``pulumi preview``. Kept free of
pulumi_azure_native so the policy pack's virtualenv can import it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

SCALE_SET = "azure-native:compute:VirtualMachineScaleSet"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
REDIS = "azure-native:redis:Redis"
NSG = "azure-native:network:NetworkSecurityGroup"
SUBNET = "azure-native:network:Subnet"
APPLICATION_GATEWAY = "azure-native:network:ApplicationGateway"
NAT_GATEWAY = "azure-native:network:NatGateway"
PUBLIC_IP = "azure-native:network:PublicIPAddress"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
STORAGE_ENDPOINT = "Microsoft.Storage"

FLEXIBLE = "Flexible"
# Service tags whose Application Gateway v2 subnet rules must name Any as destination.
APP_GATEWAY_TAGS = ("GatewayManager", "AzureLoadBalancer")
_ANY = ("*", "Any")
# Scopes a custom role may be assignable at.
_ASSIGNABLE = re.compile(
    r"^(/providers/Microsoft\.Management/managementGroups/[^/]+"
    r"|/subscriptions/[^/]+(/resourceGroups/[^/]+)?)/?$",
    re.IGNORECASE,
)


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def scale_set_refusals(props: Mapping[str, Any]) -> list[str]:
    """Flexible-only properties on a Uniform scale set.

    Compute REST reference: ``networkApiVersion`` is "used when creating networking resources
    ... for Virtual Machine Scale Set with orchestration mode 'Flexible'"; the OS disk's
    ``deleteOption`` "is available for VMSS with Flexible OrchestrationMode only"; the public
    IP configuration's ``sku`` "can only be set with OrchestrationMode as Flexible";
    ``priorityMixPolicy`` "specifies the target splits for Spot and Regular priority VMs
    within a scale set with flexible orchestration mode".
    """
    if props.get("orchestrationMode") == FLEXIBLE:
        return []
    profile = props.get("virtualMachineProfile") or {}
    refusals = []
    if props.get("priorityMixPolicy"):
        refusals.append("priorityMixPolicy is for Flexible orchestration only")
    if _get(profile, "networkProfile", "networkApiVersion"):
        refusals.append("networkProfile.networkApiVersion is for Flexible orchestration only")
    if _get(profile, "storageProfile", "osDisk", "deleteOption"):
        refusals.append("storageProfile.osDisk.deleteOption is for Flexible orchestration only")
    for nic in _get(profile, "networkProfile", "networkInterfaceConfigurations") or []:
        for ip in _get(nic, "ipConfigurations") or []:
            if _get(ip, "publicIPAddressConfiguration", "sku"):
                refusals.append(
                    f"{nic.get('name')}/{ip.get('name')}: a public IP sku is for Flexible "
                    "orchestration only"
                )
    return refusals


def role_definition_refusals(props: Mapping[str, Any]) -> list[str]:
    """Custom roles are assignable at a management group, subscription or resource group."""
    return [
        f"assignableScopes {scope!r}: only a management group, subscription or resource group"
        for scope in props.get("assignableScopes") or []
        if not _ASSIGNABLE.match(str(scope))
    ]


def redis_refusals(props: Mapping[str, Any]) -> list[str]:
    """A zonal cache needs at least as many nodes (primary + replicas per shard) as zones."""
    zones = props.get("zones") or []
    replicas = int(props.get("replicasPerPrimary") or props.get("replicasPerMaster") or 1)
    nodes = replicas + 1
    if len(zones) > nodes:
        return [
            f"{len(zones)} zones for {nodes} nodes (1 primary + {replicas} replica(s)): "
            "Azure needs at least as many nodes as zones"
        ]
    return []


def app_gateway_nsg_refusals(props: Mapping[str, Any]) -> list[str]:
    """An Application Gateway v2 subnet's NSG: GatewayManager/AzureLoadBalancer rules to Any."""
    refusals = []
    for rule in props.get("securityRules") or []:
        sources = [rule.get("sourceAddressPrefix"), *(rule.get("sourceAddressPrefixes") or [])]
        if rule.get("access") != "Allow" or not any(s in APP_GATEWAY_TAGS for s in sources):
            continue
        destination = rule.get("destinationAddressPrefix") or rule.get("destinationAddressPrefixes")
        if destination not in _ANY:
            refusals.append(
                f"rule {rule.get('name')}: from {'/'.join(s for s in sources if s)} the "
                f"destination must be Any, not {destination}"
            )
    return refusals


def nat_zone_problems(nat: Mapping[str, Any], ips: Sequence[Mapping[str, Any]]) -> list[str]:
    """A NAT gateway lives in one zone; it and its addresses name that zone explicitly."""
    zones = list(nat.get("zones") or [])
    if len(zones) != 1:
        return [f"NAT gateway zones {zones}: pin it to one zone (a NAT gateway is zonal)"]
    return [
        f"public IP {ip.get('publicIpAddressName')} zones {ip.get('zones')}: "
        f"must be {zones} like its NAT gateway"
        for ip in ips
        if list(ip.get("zones") or []) != zones
    ]


def storage_network_rule_refusals(
    account: Mapping[str, Any], subnets: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """A storage account's virtual-network rule names a subnet with a ``Microsoft.Storage``
    service endpoint (Storage firewall reference: "Before you can add a virtual network rule,
    enable a service endpoint for Azure Storage in the subnet"; ARM answers
    NetworkAclsValidationFailure, SubnetsHaveNoServiceEndpointsConfigured). ``subnets``: the
    known subnets' inputs by resource id; a subnet not among them is not judged."""
    refusals = []
    for rule in _get(account, "networkRuleSet", "virtualNetworkRules") or []:
        subnet = subnets.get(str(rule.get("virtualNetworkResourceId")))
        if subnet is None:
            continue
        services = {e.get("service") for e in subnet.get("serviceEndpoints") or []}
        if STORAGE_ENDPOINT not in services:
            refusals.append(
                f"virtual network rule for subnet {subnet.get('subnetName')}: it has no "
                f"{STORAGE_ENDPOINT} service endpoint (SubnetsHaveNoServiceEndpointsConfigured)"
            )
    return refusals


RESOURCE_RULES = {
    SCALE_SET: scale_set_refusals,
    ROLE_DEFINITION: role_definition_refusals,
    REDIS: redis_refusals,
}


def refusals(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """What ARM answers a create of this resource with, judged on its own inputs."""
    rule = RESOURCE_RULES.get(resource_type)
    return rule(props) if rule else []
