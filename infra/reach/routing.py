"""Routes between the environment's networks: route tables, transit gateways, VPNs, peerings.

A route is followed the way the clouds pick one: the subnet's route table by longest prefix,
then each transit gateway's route table (propagated VPC attachments and static routes), a
peering attachment only once its peer has accepted it, and a site-to-site VPN into the Azure
VPN gateway that holds the customer gateway's address; on Azure, the VNet's own space, VNet
peerings declared on both sides, and VPN connections whose local network gateways cover the
destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Network
from typing import Any

from infra.reach.network import (
    NetworkModel,
    Resource,
    Step,
    Subnet,
    block,
    covered,
    is_private,
    network,
)


class Router:
    """Follows a destination from a subnet to the network that holds it."""

    def __init__(self, model: NetworkModel) -> None:
        self.model = model

    def aws_route_table(self, subnet: Subnet) -> Resource | None:
        for assoc in self.model.of("aws:ec2/routeTableAssociation:RouteTableAssociation"):
            if assoc.inputs.get("subnetId") == subnet.id:
                return self.model.by_id.get(str(assoc.inputs.get("routeTableId")))
        return None

    def aws_routes(self, table: Resource) -> list[dict[str, Any]]:
        routes = [dict(r) for r in table.inputs.get("routes") or [] if isinstance(r, Mapping)]
        for route in self.model.of("aws:ec2/route:Route"):
            if route.inputs.get("routeTableId") == table.id:
                routes.append(
                    {**route.inputs, "cidrBlock": route.inputs.get("destinationCidrBlock")}
                )
        return routes

    def aws_route(self, subnet: Subnet, destination: IPv4Network, steps: list[Step]) -> str:
        """Follow the subnet's routes to ``destination``; returns the network reached."""
        vpc_cidrs = self.model.network_cidrs(subnet.network_id)
        if covered([destination], vpc_cidrs):
            steps.append(Step("route", self.model.network_label(subnet.network_id), "local"))
            return subnet.network_id
        table = self.aws_route_table(subnet)
        if table is None:
            raise block("route", subnet.resource.label, "no route table associated")
        best: dict[str, Any] | None = None
        best_len = -1
        for route in self.aws_routes(table):
            cidr = network(route.get("cidrBlock"))
            if cidr is not None and destination.subnet_of(cidr) and cidr.prefixlen > best_len:
                best, best_len = route, cidr.prefixlen
        if best is None:
            raise block("route", table.label, f"no route to {destination}")
        target = (
            best.get("transitGatewayId")
            or best.get("gatewayId")
            or best.get("natGatewayId")
            or best.get("vpcPeeringConnectionId")
        )
        steps.append(Step("route", table.label, f"{best.get('cidrBlock')} -> {target}"))
        if best.get("transitGatewayId"):
            return self.transit(str(best["transitGatewayId"]), destination, steps, set())
        if best.get("gatewayId") or best.get("natGatewayId"):
            if is_private(destination):
                raise block("route", table.label, f"{destination} routed to the internet")
            return "internet"
        raise block("route", table.label, f"route to {destination} has no usable target")

    def _tgw_route_table(self, tgw: Resource) -> str:
        return str(tgw.outputs.get("associationDefaultRouteTableId") or tgw.id)

    def transit(
        self, tgw_id: str, destination: IPv4Network, steps: list[Step], seen: set[str]
    ) -> str:
        """Route ``destination`` through a transit gateway's (default) route table."""
        tgw = self.model.by_id.get(tgw_id)
        if tgw is None:
            raise block("route", tgw_id, "transit gateway not declared by any stack")
        if tgw_id in seen:
            raise block("route", tgw.label, f"routing loop towards {destination}")
        seen.add(tgw_id)
        table = self._tgw_route_table(tgw)
        candidates: list[tuple[IPv4Network, str, str]] = []
        propagate = tgw.inputs.get("defaultRouteTablePropagation", "enable") == "enable"
        for attachment in self.model.of("aws:ec2transitgateway/vpcAttachment:VpcAttachment"):
            if attachment.inputs.get("transitGatewayId") != tgw_id or not propagate:
                continue
            for vpc_cidr in self.model.network_cidrs(str(attachment.inputs.get("vpcId"))):
                candidates.append((vpc_cidr, attachment.id, "propagated"))
        for vpn in self.model.of("aws:ec2/vpnConnection:VpnConnection"):
            # a BGP VPN propagates what its peer advertises: the Azure gateway's VNet range
            if vpn.inputs.get("transitGatewayId") != tgw_id or not propagate:
                continue
            if vpn.inputs.get("staticRoutesOnly") is not False:
                continue
            gateway = self._vpn_gateway(vpn)
            if gateway is None:
                continue
            vpn_attachment = str(vpn.outputs.get("transitGatewayAttachmentId"))
            for cidr in self.model.network_cidrs(self.model.gateway_vnet(gateway)):
                candidates.append((cidr, vpn_attachment, f"propagated over BGP ({vpn.label})"))
        for route in self.model.of("aws:ec2transitgateway/route:Route"):
            if route.inputs.get("transitGatewayRouteTableId") != table:
                continue
            route_cidr = network(route.inputs.get("destinationCidrBlock"))
            if route_cidr is not None:
                candidates.append(
                    (
                        route_cidr,
                        str(route.inputs.get("transitGatewayAttachmentId")),
                        f"static ({route.label})",
                    )
                )
        matches = [c for c in candidates if destination.subnet_of(c[0])]
        if not matches:
            raise block("route", f"{tgw.label} route table", f"no route to {destination}")
        cidr, attachment_id, how = max(matches, key=lambda c: c[0].prefixlen)
        steps.append(Step("route", f"{tgw.label} route table", f"{cidr} -> {attachment_id} {how}"))
        return self._attachment(tgw, attachment_id, destination, steps, seen)

    def _attachment(
        self,
        tgw: Resource,
        attachment_id: str,
        destination: IPv4Network,
        steps: list[Step],
        seen: set[str],
    ) -> str:
        for attachment in self.model.of("aws:ec2transitgateway/vpcAttachment:VpcAttachment"):
            if attachment.id == attachment_id:
                vpc = str(attachment.inputs.get("vpcId"))
                steps.append(
                    Step("attachment", attachment.label, f"into {self.model.network_label(vpc)}")
                )
                return vpc
        for peering in self.model.of("aws:ec2transitgateway/peeringAttachment:PeeringAttachment"):
            if peering.id != attachment_id:
                continue
            accepted = [
                a
                for a in self.model.of(
                    "aws:ec2transitgateway/peeringAttachmentAccepter:PeeringAttachmentAccepter"
                )
                if a.inputs.get("transitGatewayAttachmentId") == peering.id
            ]
            if not accepted:
                raise block("peering", peering.label, "peering attachment is never accepted")
            ends = {
                str(peering.inputs.get("transitGatewayId")),
                str(peering.inputs.get("peerTransitGatewayId")),
            }
            other = next(iter(ends - {tgw.id}), None)
            if other is None:
                raise block("peering", peering.label, "peers a transit gateway with itself")
            steps.append(Step("peering", peering.label, f"accepted by {accepted[0].label}"))
            return self.transit(other, destination, steps, seen)
        for vpn in self.model.of("aws:ec2/vpnConnection:VpnConnection"):
            if vpn.outputs.get("transitGatewayAttachmentId") != attachment_id:
                continue
            return self._vpn_to_azure(vpn, destination, steps)
        raise block(
            "route",
            f"{tgw.label} route table",
            f"route to {destination} names attachment {attachment_id}, which no stack declares",
        )

    def _vpn_gateway(self, vpn: Resource) -> Resource | None:
        customer = self.model.by_id.get(str(vpn.inputs.get("customerGatewayId")))
        if customer is None:
            return None
        return self.model.azure_gateway_at(str(customer.inputs.get("ipAddress")))

    def _vpn_to_azure(self, vpn: Resource, destination: IPv4Network, steps: list[Step]) -> str:
        customer = self.model.by_id.get(str(vpn.inputs.get("customerGatewayId")))
        if customer is None:
            raise block("vpn", vpn.label, "customer gateway not declared")
        gateway = self.model.azure_gateway_at(str(customer.inputs.get("ipAddress")))
        if gateway is None:
            raise block("vpn", customer.label, "no Azure VPN gateway holds its address")
        tunnels = {vpn.outputs.get("tunnel1Address"), vpn.outputs.get("tunnel2Address")}
        connections = [
            c
            for c in self.model.gateway_connections(gateway)
            if c[1].inputs.get("gatewayIpAddress") in tunnels
        ]
        if not connections:
            raise block("vpn", gateway.label, f"no connection to the tunnels of {vpn.label}")
        steps.append(
            Step("vpn", vpn.label, f"tunnels to {gateway.label} ({connections[0][0].label})")
        )
        vnet = self.model.gateway_vnet(gateway)
        if not covered([destination], self.model.network_cidrs(vnet)):
            raise block("vpn", gateway.label, f"{destination} is not in its VNet")
        return vnet

    def azure_route(self, subnet: Subnet, destination: IPv4Network, steps: list[Step]) -> str:
        vnet = subnet.network_id
        if covered([destination], self.model.network_cidrs(vnet)):
            steps.append(
                Step("route", self.model.network_label(vnet), "local (VNet address space)")
            )
            return vnet
        if not is_private(destination):
            steps.append(
                Step("route", self.model.network_label(vnet), "system route 0.0.0.0/0 -> Internet")
            )
            return "internet"
        for peering in self.model.vnet_peerings(vnet):
            remote = str((peering.inputs.get("remoteVirtualNetwork") or {}).get("id"))
            if not covered([destination], self.model.network_cidrs(remote)):
                continue
            back = [
                p
                for p in self.model.vnet_peerings(remote)
                if (p.inputs.get("remoteVirtualNetwork") or {}).get("id") == vnet
            ]
            if not back:
                raise block(
                    "peering",
                    peering.label,
                    f"{self.model.network_label(remote)} has no peering back: not connected",
                )
            steps.append(Step("peering", peering.label, f"connected with {back[0].label}"))
            return remote
        for gateway in self.model.of("azure-native:network:VirtualNetworkGateway"):
            if self.model.gateway_vnet(gateway) != vnet:
                continue
            for connection, local in self.model.gateway_connections(gateway):
                space = (local.inputs.get("localNetworkAddressSpace") or {}).get("addressPrefixes")
                learned = [n for n in map(network, space or []) if n]
                if connection.inputs.get("enableBgp") and local.inputs.get("bgpSettings"):
                    learned += self.model.aws_prefixes_behind(
                        str(local.inputs.get("gatewayIpAddress"))
                    )
                if not covered([destination], learned):
                    continue
                address = local.inputs.get("gatewayIpAddress")
                vpn = next(
                    (
                        v
                        for v in self.model.of("aws:ec2/vpnConnection:VpnConnection")
                        if address
                        in (v.outputs.get("tunnel1Address"), v.outputs.get("tunnel2Address"))
                    ),
                    None,
                )
                if vpn is None:
                    raise block("vpn", local.label, f"no AWS tunnel at {address}")
                steps.append(Step("vpn", connection.label, f"{local.label} -> {vpn.label}"))
                return self.transit(
                    str(vpn.inputs.get("transitGatewayId")), destination, steps, set()
                )
        raise block(
            "route",
            self.model.network_label(vnet),
            f"no peering or VPN connection covers {destination}",
        )

    def route(self, subnet: Subnet, destination: IPv4Network, steps: list[Step]) -> str:
        if subnet.cloud == "aws":
            return self.aws_route(subnet, destination, steps)
        return self.azure_route(subnet, destination, steps)
