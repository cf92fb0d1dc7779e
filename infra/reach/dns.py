"""Names: whether a private DNS zone resolves from a network (Azure VNet links)."""

from __future__ import annotations

from infra.reach.network import NetworkModel, Step, block


def zone_linked(model: NetworkModel, zone_id: str, vnet_id: str) -> Step:
    zone = model.by_id.get(zone_id)
    if zone is None:
        raise block("dns", zone_id, "private DNS zone not declared by any stack")
    name = zone.inputs.get("privateZoneName")
    group = zone.inputs.get("resourceGroupName")
    for link in model.of("azure-native:privatedns:VirtualNetworkLink"):
        if (
            link.inputs.get("privateZoneName") == name
            and link.inputs.get("resourceGroupName") == group
            and (link.inputs.get("virtualNetwork") or {}).get("id") == vnet_id
        ):
            return Step("dns", link.label, f"{name} linked to {model.network_label(vnet_id)}")
    raise block(
        "dns",
        zone.label,
        f"private zone {name} is not linked to {model.network_label(vnet_id)}: "
        "the name does not resolve there",
    )
