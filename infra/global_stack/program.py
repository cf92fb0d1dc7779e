"""The ``<env>-global`` stack: DNS over every region, the private network between them.

It reads each region stack's outputs through a StackReference (values stored by the Pulumi
backend, not live cloud calls) and declares the cross-region resources with one explicit
provider per region. No region stack reads this stack, so a region deploys on its own even
when another region's cloud API is down; this stack deploys after the regions
(``rtcfleet stacks order``).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra import outputs
from infra.global_settings import GlobalSettings, latency_region
from infra.global_stack.dns import GlobalDns, GlobalDnsArgs, RegionEndpoint
from infra.global_stack.peering import (
    AwsRegionEnd,
    TransitPeering,
    TransitPeeringArgs,
    link_name,
)
from infra.global_stack.vnet_peering import AzureNetwork, VnetPeering, VnetPeeringArgs
from infra.global_stack.vpn import (
    AzureRegionEnd,
    AzureVpnGateway,
    AzureVpnGatewayArgs,
    CrossCloudVpn,
    CrossCloudVpnArgs,
)
from infra.references import stack_outputs


def required_outputs(cloud: str, private_network: bool) -> tuple[str, ...]:
    """The outputs a region stack of ``cloud`` must export for this stack."""
    if cloud == "azure":
        return outputs.AZURE_REGION_OUTPUTS
    if private_network:
        return outputs.AWS_REGION_OUTPUTS_FOR_PRIVATE_NETWORK
    return (outputs.CLIENT_LB_DNS_NAME,)


def global_program(settings: GlobalSettings) -> dict[str, pulumi.Output[Any]]:
    """Declare the global stack's resources; return its outputs."""
    tags = {"rtcfleet:env": settings.env, "rtcfleet:stack": settings.stack}
    aws_providers: dict[str, aws.Provider] = {}

    def aws_provider(region: str) -> aws.Provider:
        if region not in aws_providers:
            aws_providers[region] = aws.Provider(
                f"aws-{region}",
                region=region,
                default_tags=aws.ProviderDefaultTagsArgs(
                    tags={"rtcfleet:stack": settings.stack, "rtcfleet:managed-by": "pulumi"}
                ),
            )
        return aws_providers[region]

    names = settings.region_names()
    private_network = len(names) > 1
    endpoints: list[RegionEndpoint] = []
    aws_ends: list[AwsRegionEnd] = []
    azure_ends: list[AzureRegionEnd] = []
    azure_networks: list[AzureNetwork] = []
    azure_provider = None
    for stack, name in names.items():
        reference = stack_outputs(stack)
        region_for_latency = latency_region(name)
        assert region_for_latency is not None, "checked by GlobalSettings.check"
        endpoints.append(
            RegionEndpoint(
                stack, region_for_latency, reference.require_output(outputs.CLIENT_LB_DNS_NAME)
            )
        )
        if not private_network:
            continue
        if name.cloud == "aws":
            aws_ends.append(
                AwsRegionEnd(
                    stack=stack,
                    region=name.region,
                    provider=aws_provider(name.region),
                    cidr=reference.require_output(outputs.VPC_CIDR),
                    transit_gateway_id=reference.require_output(outputs.TRANSIT_GATEWAY_ID),
                    route_table_id=reference.require_output(outputs.TRANSIT_ROUTE_TABLE_ID),
                )
            )
        else:
            import pulumi_azure_native as azure_native

            if azure_provider is None:
                azure_provider = azure_native.Provider("azure-native")
            azure_ends.append(
                AzureRegionEnd(
                    stack=stack,
                    location=reference.require_output(outputs.LOCATION),
                    cidr=reference.require_output(outputs.VNET_CIDR),
                    gateway_subnet_id=reference.require_output(outputs.GATEWAY_SUBNET_ID),
                    resource_group_name=reference.require_output(outputs.RESOURCE_GROUP_NAME),
                    provider=azure_provider,
                )
            )
            azure_networks.append(
                AzureNetwork(
                    stack=stack,
                    vnet_id=reference.require_output(outputs.VNET_ID),
                    resource_group_name=reference.require_output(outputs.RESOURCE_GROUP_NAME),
                    provider=azure_provider,
                )
            )

    dns = GlobalDns(
        f"{settings.env}-dns",
        GlobalDnsArgs(
            zone_id=settings.hosted_zone_id,
            signaling_fqdn=settings.signaling_fqdn,
            fallback_fqdn=settings.fallback_fqdn,
            endpoints=endpoints,
            primary=settings.home_region,
            secondary=settings.standby_region,
            ttl=settings.record_ttl,
            interval=settings.health_check_interval,
            failures=settings.health_check_failures,
            tags=tags,
        ),
        opts=pulumi.ResourceOptions(providers=[aws_provider(settings.dns_provider_region)]),
    )

    links: list[str] = []
    for index, requester in enumerate(aws_ends):
        for accepter in aws_ends[index + 1 :]:
            link = link_name(requester.stack, accepter.stack)
            TransitPeering(link, TransitPeeringArgs(requester, accepter, tags))
            links.append(link)
    for azure_end in azure_ends:
        import pulumi_azure_native as azure_native

        client = azure_native.authorization.get_client_config_output(
            opts=pulumi.InvokeOptions(provider=azure_end.provider)
        )
        gateway_args = AzureVpnGatewayArgs(
            azure_end, client.subscription_id, aws_regions=len(aws_ends), tags=tags
        )
        gateway = AzureVpnGateway(f"{azure_end.stack}-vpn-gateway", gateway_args)
        for aws_index, aws_end in enumerate(aws_ends):
            link = link_name(aws_end.stack, azure_end.stack)
            CrossCloudVpn(
                link,
                CrossCloudVpnArgs(aws_end, azure_end, gateway, gateway_args, aws_index, tags),
            )
            links.append(link)

    for index, first in enumerate(azure_networks):
        for second in azure_networks[index + 1 :]:
            link = link_name(first.stack, second.stack)
            VnetPeering(link, VnetPeeringArgs(first, second, tags))
            links.append(link)

    return {
        outputs.HOME_REGION: pulumi.Output.from_input(settings.home_region),
        outputs.STANDBY_REGION: pulumi.Output.from_input(settings.standby_region),
        outputs.REGIONS: pulumi.Output.from_input(list(settings.regions)),
        outputs.SIGNALING_FQDN: pulumi.Output.from_input(settings.signaling_fqdn),
        outputs.FALLBACK_FQDN: pulumi.Output.from_input(settings.fallback_fqdn),
        outputs.HEALTH_CHECK_IDS: pulumi.Output.from_input(
            {stack: check.id for stack, check in dns.health_checks.items()}
        ),
        outputs.PRIVATE_LINKS: pulumi.Output.from_input(links),
    }
