"""Global VNet peering between two Azure regions of the environment, both directions.

Azure regions reach each other over Microsoft's backbone through peering rather than
through their VPN gateways: no gateway hop, no tunnel bandwidth limit, and no transit
through another cloud. A peering is connected only once both VNets declare it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from infra.global_stack.peering import link_name


@dataclass(frozen=True)
class AzureNetwork:
    """One Azure region's VNet, as the global stack reads it."""

    stack: str
    vnet_id: pulumi.Input[str]
    resource_group_name: pulumi.Input[str]
    provider: azure_native.Provider


@dataclass
class VnetPeeringArgs:
    first: AzureNetwork
    second: AzureNetwork
    tags: dict[str, str] = field(default_factory=dict)


def _vnet_name(vnet_id: str) -> str:
    return vnet_id.rstrip("/").rsplit("/", 1)[-1]


class VnetPeering(pulumi.ComponentResource):
    """Both halves of a global VNet peering."""

    def __init__(
        self, name: str, args: VnetPeeringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:global:VnetPeering", name, None, opts)
        link = link_name(args.first.stack, args.second.stack)
        for local, remote in ((args.first, args.second), (args.second, args.first)):
            azure_native.network.VirtualNetworkPeering(
                f"{link}-{local.stack}",
                virtual_network_peering_name=f"to-{remote.stack}",
                virtual_network_name=pulumi.Output.from_input(local.vnet_id).apply(_vnet_name),
                resource_group_name=local.resource_group_name,
                remote_virtual_network=azure_native.network.SubResourceArgs(id=remote.vnet_id),
                allow_virtual_network_access=True,
                allow_forwarded_traffic=False,
                allow_gateway_transit=False,
                use_remote_gateways=False,
                opts=pulumi.ResourceOptions(parent=self, provider=local.provider),
            )
        self.register_outputs({})
