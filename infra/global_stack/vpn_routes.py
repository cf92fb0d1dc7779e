"""Which Azure VPN connections carry traffic to an AWS region, and where it goes when one is down.

A model of the Azure VPN gateway's choice, on the global stack's declared resources:

- a BGP connection carries the routes its peer advertises while its tunnel is up; when the
  tunnel goes down the BGP session ends, the routes are withdrawn and the remaining BGP
  connections to the same AWS region carry the traffic (active-active, equal cost);
- static connections whose local network gateways announce the same prefixes are not
  alternatives: Azure programs the prefix towards one of them, and the route stays on it when
  its tunnel is down, so traffic to that prefix is lost until the tunnel returns.

Resources are matched by the names and tags the global program gives them (an Azure connection
and its local network gateway share a name), never by ids, which a preview does not know.
Kept free of the providers so the policy pack can import it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LOCAL_GATEWAY = "azure-native:network:LocalNetworkGateway"
CONNECTION = "azure-native:network:VirtualNetworkGatewayConnection"
LINK_TAG = "rtcfleet:link"


@dataclass(frozen=True)
class Tunnel:
    """One Azure connection: its name, the link (AWS region <-> Azure region) and how it routes."""

    name: str
    link: str
    bgp: bool
    prefixes: frozenset[str]


def tunnels(resources: Iterable[tuple[str, str, Mapping[str, Any]]]) -> list[Tunnel]:
    """The Azure connections among ``(type, name, props)`` resources, in declaration order."""
    resources = list(resources)
    local = {name: props for kind, name, props in resources if kind == LOCAL_GATEWAY}
    found = []
    for kind, name, props in resources:
        if kind != CONNECTION:
            continue
        gateway = local.get(name, {})
        tags = props.get("tags") or {}
        space = (gateway.get("localNetworkAddressSpace") or {}).get("addressPrefixes") or []
        bgp = bool(props.get("enableBgp")) and bool(
            (gateway.get("bgpSettings") or {}).get("bgpPeeringAddress")
        )
        found.append(Tunnel(name, str(tags.get(LINK_TAG, "")), bgp, frozenset(map(str, space))))
    return found


def carriers(found: list[Tunnel], link: str, down: Collection[str] = ()) -> list[str]:
    """The connections that carry traffic to ``link``'s AWS region with ``down`` tunnels down."""
    mine = [t for t in found if t.link == link]
    carrying = [t.name for t in mine if t.bgp and t.name not in down]
    by_prefixes: dict[frozenset[str], list[Tunnel]] = defaultdict(list)
    for tunnel in mine:
        if not tunnel.bgp and tunnel.prefixes:
            by_prefixes[tunnel.prefixes].append(tunnel)
    for same in by_prefixes.values():
        chosen = min(same, key=lambda t: t.name)
        if chosen.name not in down:
            carrying.append(chosen.name)
    return carrying


def single_points(found: list[Tunnel]) -> dict[str, list[str]]:
    """Per link, the tunnels whose loss alone cuts the link (none, for a sound VPN)."""
    return {
        link: cut
        for link in sorted({t.link for t in found})
        if (
            cut := [t.name for t in found if t.link == link and not carriers(found, link, {t.name})]
        )
    }
