"""Client-facing DNS: a health check per region, latency records, and a failover name.

The signaling name answers with the nearest healthy region. The fallback name answers with
the home region, or the standby when the home region's check fails; it has its own records
so a client's second try does not go through the first name's answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra import spec

STACK_TAG = "rtcfleet:stack"
HTTPS = "HTTPS"


@dataclass(frozen=True)
class RegionEndpoint:
    """One region's client entry point as DNS sees it."""

    stack: str
    # The AWS region Route 53 measures latency against (Azure regions map to a near one).
    latency_region: str
    dns_name: pulumi.Input[str]


@dataclass
class GlobalDnsArgs:
    zone_id: str
    signaling_fqdn: str
    fallback_fqdn: str
    endpoints: list[RegionEndpoint]
    primary: str
    secondary: str | None
    ttl: int = 60
    interval: int = 10
    failures: int = 3
    tags: dict[str, str] = field(default_factory=dict)


class GlobalDns(pulumi.ComponentResource):
    """Health checks on every region's region health (a room placed on a media node that
    answers, end to end) and the records that obey them."""

    health_checks: dict[str, aws.route53.HealthCheck]

    def __init__(
        self, name: str, args: GlobalDnsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:global:Dns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        by_stack = {endpoint.stack: endpoint for endpoint in args.endpoints}
        self.health_checks = {}
        for endpoint in args.endpoints:
            self.health_checks[endpoint.stack] = aws.route53.HealthCheck(
                f"{endpoint.stack}-region-health",
                type=HTTPS,
                fqdn=endpoint.dns_name,
                port=spec.HTTPS_PORT,
                resource_path=spec.REGION_HEALTH_PATH,
                enable_sni=True,
                request_interval=args.interval,
                failure_threshold=args.failures,
                measure_latency=True,
                tags={
                    **args.tags,
                    "Name": f"{endpoint.stack} {spec.REGION_HEALTH_PATH}",
                    STACK_TAG: endpoint.stack,
                },
                # the same check, updated in place, where it probed a gateway's readiness
                opts=pulumi.ResourceOptions(
                    parent=self, aliases=[pulumi.Alias(name=f"{endpoint.stack}-readyz")]
                ),
            )
            aws.route53.Record(
                f"{endpoint.stack}-latency",
                zone_id=args.zone_id,
                name=args.signaling_fqdn,
                type="CNAME",
                ttl=args.ttl,
                records=[endpoint.dns_name],
                set_identifier=endpoint.stack,
                latency_routing_policies=[
                    aws.route53.RecordLatencyRoutingPolicyArgs(region=endpoint.latency_region)
                ],
                health_check_id=self.health_checks[endpoint.stack].id,
                opts=child,
            )
        for role, stack in (("PRIMARY", args.primary), ("SECONDARY", args.secondary)):
            if stack is None:
                continue
            aws.route53.Record(
                f"{stack}-{role.lower()}",
                zone_id=args.zone_id,
                name=args.fallback_fqdn,
                type="CNAME",
                ttl=args.ttl,
                records=[by_stack[stack].dns_name],
                set_identifier=stack,
                failover_routing_policies=[aws.route53.RecordFailoverRoutingPolicyArgs(type=role)],
                health_check_id=self.health_checks[stack].id,
                opts=child,
            )
        self.register_outputs(
            {"healthCheckIds": {stack: check.id for stack, check in self.health_checks.items()}}
        )
