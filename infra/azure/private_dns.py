"""Private DNS zones linked to the region's VNet, so managed services resolve to private IPs."""

from __future__ import annotations

import pulumi
import pulumi_azure_native as azure_native


def private_zone(
    name: str,
    zone: str,
    resource_group_name: pulumi.Input[str],
    vnet_id: pulumi.Input[str],
    tags: dict[str, str],
    parent: pulumi.Resource,
) -> azure_native.privatedns.PrivateZone:
    """A private zone and its link to the VNet (no auto-registration of VMs)."""
    child = pulumi.ResourceOptions(parent=parent)
    private = azure_native.privatedns.PrivateZone(
        name,
        private_zone_name=zone,
        resource_group_name=resource_group_name,
        location="global",
        tags=tags,
        opts=child,
    )
    azure_native.privatedns.VirtualNetworkLink(
        name,
        virtual_network_link_name="vnet",
        private_zone_name=private.name,
        resource_group_name=resource_group_name,
        location="global",
        virtual_network=azure_native.privatedns.SubResourceArgs(id=vnet_id),
        registration_enabled=False,
        tags=tags,
        opts=child,
    )
    return private
