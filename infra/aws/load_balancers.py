"""The region's load balancers: client and admin ALBs, the internal media-signaling ALB.

Target ports and health checks come from ``infra.spec`` so the gateways and the load balancers
agree on where a node answers. The client and admin target groups route on readiness; the
media-signaling one on registration readiness, which no media node is needed to pass, so the
first media node of a new region can register. When every target of a group fails its check,
an ALB routes to all of them (fails open): a region-wide readiness fault degrades to errors on
the affected requests, never to a load balancer that refuses everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.spec import (
    ADMIN_PORT,
    CLIENT_SIGNALING_PORT,
    HTTPS_PORT,
    INTERNAL_PATH_PREFIX,
    READINESS_PATH,
    REGISTRATION_READINESS_PATH,
    ROLE_TAG,
    SIGNALING_IDLE_TIMEOUT_SECONDS,
    Role,
)

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Long enough for the browser's cookie to outlive a call: reconnects land on the same gateway.
STICKINESS_SECONDS = 86400
# The admin console is request/response; it need not hold connections for a whole call.
ADMIN_IDLE_TIMEOUT_SECONDS = 300
# In-flight signaling requests finish before a gateway leaves its target group.
DEREGISTRATION_DELAY_SECONDS = 30


@dataclass
class LoadBalancersArgs:
    prefix: str
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    client_security_group_id: pulumi.Input[str]
    admin_security_group_id: pulumi.Input[str]
    signaling_security_group_id: pulumi.Input[str]
    certificate_arn: pulumi.Input[str]
    admin_certificate_arn: pulumi.Input[str]
    deletion_protection: bool = False
    tags: dict[str, str] = field(default_factory=dict)


def _http_health_check(port: int, path: str = READINESS_PATH) -> aws.lb.TargetGroupHealthCheckArgs:
    return aws.lb.TargetGroupHealthCheckArgs(
        enabled=True,
        protocol="HTTP",
        port=str(port),
        path=path,
        matcher="200",
        interval=10,
        timeout=5,
        healthy_threshold=2,
        unhealthy_threshold=2,
    )


class LoadBalancers(pulumi.ComponentResource):
    """Where clients, admins and media nodes reach the gateways.

    Media nodes have none: clients reach each node at its own public address (1:1 NAT),
    TURN on UDP and TCP 3478 (see docs/network.md for why there is no TURN over TLS).
    """

    client: aws.lb.LoadBalancer
    admin: aws.lb.LoadBalancer
    signaling: aws.lb.LoadBalancer
    gateway_target_groups: list[aws.lb.TargetGroup]

    def __init__(
        self, name: str, args: LoadBalancersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:LoadBalancers", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.prefix

        def tags(role: Role, name: str) -> dict[str, str]:
            return {**args.tags, ROLE_TAG: role.value, "Name": f"{prefix}-{name}"}

        client_targets = aws.lb.TargetGroup(
            f"{prefix}-client",
            port=CLIENT_SIGNALING_PORT,
            protocol="HTTP",
            target_type="instance",
            vpc_id=args.vpc_id,
            health_check=_http_health_check(CLIENT_SIGNALING_PORT),
            stickiness=aws.lb.TargetGroupStickinessArgs(
                enabled=True, type="lb_cookie", cookie_duration=STICKINESS_SECONDS
            ),
            deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
            tags=tags(Role.GATEWAY, "client"),
            opts=child,
        )
        admin_targets = aws.lb.TargetGroup(
            f"{prefix}-admin",
            port=ADMIN_PORT,
            protocol="HTTP",
            target_type="instance",
            vpc_id=args.vpc_id,
            health_check=_http_health_check(ADMIN_PORT),
            deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
            tags=tags(Role.GATEWAY, "admin"),
            opts=child,
        )
        signaling_targets = aws.lb.TargetGroup(
            f"{prefix}-signaling",
            port=CLIENT_SIGNALING_PORT,
            protocol="HTTP",
            target_type="instance",
            vpc_id=args.vpc_id,
            health_check=_http_health_check(CLIENT_SIGNALING_PORT, REGISTRATION_READINESS_PATH),
            deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
            tags=tags(Role.GATEWAY, "signaling"),
            opts=child,
        )
        self.gateway_target_groups = [client_targets, admin_targets, signaling_targets]

        self.client = aws.lb.LoadBalancer(
            f"{prefix}-client",
            load_balancer_type="application",
            internal=False,
            subnets=args.public_subnet_ids,
            security_groups=[args.client_security_group_id],
            idle_timeout=SIGNALING_IDLE_TIMEOUT_SECONDS,
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            tags=tags(Role.CLIENT_LB, "client"),
            opts=child,
        )
        client_listener = aws.lb.Listener(
            f"{prefix}-client-https",
            load_balancer_arn=self.client.arn,
            port=HTTPS_PORT,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=args.certificate_arn,
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="forward", target_group_arn=client_targets.arn
                )
            ],
            opts=child,
        )
        # Media-node registration lives under the internal prefix: only the private LB may reach it.
        aws.lb.ListenerRule(
            f"{prefix}-client-no-internal",
            listener_arn=client_listener.arn,
            priority=1,
            conditions=[
                aws.lb.ListenerRuleConditionArgs(
                    path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(
                        values=[f"{INTERNAL_PATH_PREFIX}*"]
                    )
                )
            ],
            actions=[
                aws.lb.ListenerRuleActionArgs(
                    type="fixed-response",
                    fixed_response=aws.lb.ListenerRuleActionFixedResponseArgs(
                        content_type="text/plain", status_code="404", message_body="not found"
                    ),
                )
            ],
            opts=child,
        )

        self.admin = aws.lb.LoadBalancer(
            f"{prefix}-admin",
            load_balancer_type="application",
            internal=False,
            subnets=args.public_subnet_ids,
            security_groups=[args.admin_security_group_id],
            idle_timeout=ADMIN_IDLE_TIMEOUT_SECONDS,
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            tags=tags(Role.ADMIN_LB, "admin"),
            opts=child,
        )
        aws.lb.Listener(
            f"{prefix}-admin-https",
            load_balancer_arn=self.admin.arn,
            port=HTTPS_PORT,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=args.admin_certificate_arn,
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=admin_targets.arn)
            ],
            opts=child,
        )

        self.signaling = aws.lb.LoadBalancer(
            f"{prefix}-signaling",
            load_balancer_type="application",
            internal=True,
            subnets=args.private_subnet_ids,
            security_groups=[args.signaling_security_group_id],
            idle_timeout=SIGNALING_IDLE_TIMEOUT_SECONDS,
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            tags=tags(Role.SIGNALING_LB, "signaling"),
            opts=child,
        )
        aws.lb.Listener(
            f"{prefix}-signaling-http",
            load_balancer_arn=self.signaling.arn,
            port=CLIENT_SIGNALING_PORT,
            protocol="HTTP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="forward", target_group_arn=signaling_targets.arn
                )
            ],
            opts=child,
        )

        self.register_outputs(
            {
                "clientDnsName": self.client.dns_name,
                "adminDnsName": self.admin.dns_name,
                "signalingDnsName": self.signaling.dns_name,
            }
        )
