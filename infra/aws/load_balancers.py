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
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)

        client_targets = self._target_group(
            "client",
            CLIENT_SIGNALING_PORT,
            stickiness=aws.lb.TargetGroupStickinessArgs(
                enabled=True, type="lb_cookie", cookie_duration=STICKINESS_SECONDS
            ),
        )
        admin_targets = self._target_group("admin", ADMIN_PORT)
        signaling_targets = self._target_group(
            "signaling", CLIENT_SIGNALING_PORT, REGISTRATION_READINESS_PATH
        )
        self.gateway_target_groups = [client_targets, admin_targets, signaling_targets]

        self.client, client_listener = self._application_lb(
            "client",
            Role.CLIENT_LB,
            internal=False,
            security_group_id=args.client_security_group_id,
            idle_timeout=SIGNALING_IDLE_TIMEOUT_SECONDS,
            targets=client_targets,
            certificate_arn=args.certificate_arn,
        )
        self._refuse_internal_paths(client_listener)
        self.admin, _ = self._application_lb(
            "admin",
            Role.ADMIN_LB,
            internal=False,
            security_group_id=args.admin_security_group_id,
            idle_timeout=ADMIN_IDLE_TIMEOUT_SECONDS,
            targets=admin_targets,
            certificate_arn=args.admin_certificate_arn,
        )
        self.signaling, _ = self._application_lb(
            "signaling",
            Role.SIGNALING_LB,
            internal=True,
            security_group_id=args.signaling_security_group_id,
            idle_timeout=SIGNALING_IDLE_TIMEOUT_SECONDS,
            targets=signaling_targets,
            certificate_arn=None,
        )

        self.register_outputs(
            {
                "clientDnsName": self.client.dns_name,
                "adminDnsName": self.admin.dns_name,
                "signalingDnsName": self.signaling.dns_name,
            }
        )

    def _tags(self, role: Role, name: str) -> dict[str, str]:
        return {**self._args.tags, ROLE_TAG: role.value, "Name": f"{self._args.prefix}-{name}"}

    def _target_group(
        self,
        name: str,
        port: int,
        health_path: str = READINESS_PATH,
        stickiness: aws.lb.TargetGroupStickinessArgs | None = None,
    ) -> aws.lb.TargetGroup:
        """The gateways behind one load balancer, probed on ``health_path`` at ``port``."""
        return aws.lb.TargetGroup(
            f"{self._args.prefix}-{name}",
            port=port,
            protocol="HTTP",
            target_type="instance",
            vpc_id=self._args.vpc_id,
            health_check=_http_health_check(port, health_path),
            stickiness=stickiness,
            deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
            tags=self._tags(Role.GATEWAY, name),
            opts=self._child,
        )

    def _application_lb(
        self,
        name: str,
        role: Role,
        internal: bool,
        security_group_id: pulumi.Input[str],
        idle_timeout: int,
        targets: aws.lb.TargetGroup,
        certificate_arn: pulumi.Input[str] | None,
    ) -> tuple[aws.lb.LoadBalancer, aws.lb.Listener]:
        """An ALB and its one listener: HTTPS on 443 with a certificate, else HTTP on the
        signaling port (the internal one), forwarding to ``targets``."""
        args = self._args
        balancer = aws.lb.LoadBalancer(
            f"{args.prefix}-{name}",
            load_balancer_type="application",
            internal=internal,
            subnets=args.private_subnet_ids if internal else args.public_subnet_ids,
            security_groups=[security_group_id],
            idle_timeout=idle_timeout,
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            tags=self._tags(role, name),
            opts=self._child,
        )
        forward = [aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=targets.arn)]
        if certificate_arn is None:
            listener = aws.lb.Listener(
                f"{args.prefix}-{name}-http",
                load_balancer_arn=balancer.arn,
                port=CLIENT_SIGNALING_PORT,
                protocol="HTTP",
                default_actions=forward,
                opts=self._child,
            )
        else:
            listener = aws.lb.Listener(
                f"{args.prefix}-{name}-https",
                load_balancer_arn=balancer.arn,
                port=HTTPS_PORT,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=certificate_arn,
                default_actions=forward,
                opts=self._child,
            )
        return balancer, listener

    def _refuse_internal_paths(self, listener: aws.lb.Listener) -> None:
        # Media-node registration lives under the internal prefix: only the private LB may reach it.
        aws.lb.ListenerRule(
            f"{self._args.prefix}-client-no-internal",
            listener_arn=listener.arn,
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
            opts=self._child,
        )
