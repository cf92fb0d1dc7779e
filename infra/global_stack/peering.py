"""Transit-gateway peering between two AWS regions, with the routes of both sides.

Each region stack owns its transit gateway and sends its ``peeredCidrs`` to it; this link
adds the peering attachment (requested from one side, accepted on the other) and each
gateway's route to the other region's range.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

LINK_TAG = "rtcfleet:link"
SIDE_TAG = "rtcfleet:side"


@dataclass(frozen=True)
class AwsRegionEnd:
    """What the global stack reads of one AWS region stack's private network."""

    stack: str
    region: str
    provider: aws.Provider
    cidr: pulumi.Input[str]
    transit_gateway_id: pulumi.Input[str]
    route_table_id: pulumi.Input[str]


def link_name(a: str, b: str) -> str:
    """One name per pair of stacks, whichever side asks."""
    first, second = sorted((a, b))
    return f"{first}--{second}"


@dataclass
class TransitPeeringArgs:
    requester: AwsRegionEnd
    accepter: AwsRegionEnd
    tags: dict[str, str] = field(default_factory=dict)


class TransitPeering(pulumi.ComponentResource):
    """A peering attachment between two regions' transit gateways, routed both ways."""

    attachment: aws.ec2transitgateway.PeeringAttachment

    def __init__(
        self, name: str, args: TransitPeeringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:global:TransitPeering", name, None, opts)
        a, b = args.requester, args.accepter
        link = link_name(a.stack, b.stack)

        def on(
            end: AwsRegionEnd, depends_on: list[pulumi.Resource] | None = None
        ) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=end.provider, depends_on=depends_on)

        def tags(side: str) -> dict[str, str]:
            return {**args.tags, "Name": link, LINK_TAG: link, SIDE_TAG: side}

        self.attachment = aws.ec2transitgateway.PeeringAttachment(
            f"{link}-peering",
            transit_gateway_id=a.transit_gateway_id,
            peer_transit_gateway_id=b.transit_gateway_id,
            peer_region=b.region,
            tags=tags("requester"),
            opts=on(a),
        )
        accepter = aws.ec2transitgateway.PeeringAttachmentAccepter(
            f"{link}-accept",
            transit_gateway_attachment_id=self.attachment.id,
            tags=tags("accepter"),
            opts=on(b),
        )
        # Routes over a peering attachment are accepted only once the peer has accepted it.
        for end, peer in ((a, b), (b, a)):
            aws.ec2transitgateway.Route(
                f"{link}-route-{end.region}",
                destination_cidr_block=peer.cidr,
                transit_gateway_attachment_id=self.attachment.id,
                transit_gateway_route_table_id=end.route_table_id,
                opts=on(end, depends_on=[accepter]),
            )
        self.register_outputs({"attachmentId": self.attachment.id})
