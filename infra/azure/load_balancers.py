"""The region's entry points: client and admin Application Gateways, the internal signaling LB.

Why Application Gateway (v2) for clients and admins, not a Standard Load Balancer with TLS on
the nodes: the gateways speak plain HTTP on 8080/9090 behind a TLS-terminating proxy on AWS,
and the same node image must run on both clouds. Application Gateway terminates TLS with the
certificate from Key Vault (read by its own managed identity), keeps WebSockets open, pins a
client to its gateway with a cookie, spreads over zones and probes ``/readyz``; its WAF refuses
the media nodes' internal paths on the public side. Each gateway has its own subnet, so the
admin one is closed by its NSG to everything but the allow list.

Media nodes register through an internal Standard Load Balancer on 8080 (L4, private frontend
in the gateway subnet). Clients reach media nodes at their own public addresses: no load
balancer stands in front of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native
import pulumiverse_time as time

from infra.azure.identities import KEY_VAULT_SECRETS_USER, grant, role_definition_id
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

TLS_POLICY = "AppGwSslPolicy20220101S"
AFFINITY_COOKIE = "rtcfleet-gateway"
# Azure's longest idle timeout on a Standard Load Balancer rule is 100 minutes.
SIGNALING_IDLE_MINUTES = min(SIGNALING_IDLE_TIMEOUT_SECONDS // 60, 100)
PROBE_INTERVAL_SECONDS = 10
# Application Gateway v2 autoscaling: two instances keep a zone's loss invisible.
MIN_GATEWAY_INSTANCES = 2
MAX_GATEWAY_INSTANCES = 10
# Azure RBAC takes up to several minutes to honour a new role assignment; an Application
# Gateway created sooner cannot read its certificate and its first create fails.
ROLE_PROPAGATION = "300s"


@dataclass
class LoadBalancersArgs:
    prefix: str
    resource_group_name: pulumi.Input[str]
    location: str
    subscription_id: pulumi.Input[str]
    zones: Sequence[str]
    client_subnet_id: pulumi.Input[str]
    admin_subnet_id: pulumi.Input[str]
    gateway_subnet_id: pulumi.Input[str]
    # A static private address in the gateway subnet for the signaling LB.
    signaling_address: str
    certificate: pulumi.Input[str]
    admin_certificate: pulumi.Input[str]
    certificate_vault_id: str
    dns_label: str
    tags: dict[str, str] = field(default_factory=dict)


class SubResourceIds:
    """Ids of a resource's own sub-resources, which Azure wants before the resource exists."""

    def __init__(self, args: LoadBalancersArgs, kind: str, name: str) -> None:
        self._base = pulumi.Output.concat(
            "/subscriptions/",
            args.subscription_id,
            "/resourceGroups/",
            args.resource_group_name,
            f"/providers/Microsoft.Network/{kind}/{name}",
        )

    def __call__(self, collection: str, name: str) -> pulumi.Output[str]:
        return pulumi.Output.concat(self._base, f"/{collection}/{name}")


class LoadBalancers(pulumi.ComponentResource):
    """Where clients, admins and media nodes reach the gateways."""

    client: azure_native.network.ApplicationGateway
    admin: azure_native.network.ApplicationGateway
    signaling: azure_native.network.LoadBalancer
    client_public_ip: azure_native.network.PublicIPAddress
    admin_public_ip: azure_native.network.PublicIPAddress
    waf_policy: azure_native.network.WebApplicationFirewallPolicy
    gateway_app_pools: list[pulumi.Output[str]]
    gateway_lb_pools: list[pulumi.Output[str]]

    def __init__(
        self, name: str, args: LoadBalancersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:LoadBalancers", name, None, opts)
        self._args = args
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.prefix
        common = {"resource_group_name": args.resource_group_name, "location": args.location}

        identity = azure_native.managedidentity.UserAssignedIdentity(
            f"{prefix}-app-gateways",
            resource_name_=f"{prefix}-app-gateways",
            tags=args.tags,
            **common,
            opts=child,
        )
        certificate_reader = grant(
            f"{prefix}-app-gateways-read-certificates",
            identity.principal_id,
            role_definition_id(args.subscription_id, KEY_VAULT_SECRETS_USER),
            args.certificate_vault_id,
            "rtcfleet Application Gateways read their TLS certificates",
            parent=self,
        )
        self._identity = identity
        propagated = time.Sleep(
            f"{prefix}-certificate-reader-propagation",
            create_duration=ROLE_PROPAGATION,
            triggers={"assignment": certificate_reader.id},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[certificate_reader]),
        )

        self.waf_policy = azure_native.network.WebApplicationFirewallPolicy(
            f"{prefix}-client-waf",
            policy_name=f"{prefix}-client-waf",
            policy_settings=azure_native.network.PolicySettingsArgs(
                state="Enabled", mode="Prevention", request_body_check=True
            ),
            managed_rules=azure_native.network.ManagedRulesDefinitionArgs(
                managed_rule_sets=[
                    azure_native.network.ManagedRuleSetArgs(
                        rule_set_type="OWASP", rule_set_version="3.2"
                    )
                ]
            ),
            # Media-node registration lives under the internal prefix: only the private LB.
            custom_rules=[
                azure_native.network.WebApplicationFirewallCustomRuleArgs(
                    name="NoInternalPaths",
                    priority=1,
                    rule_type="MatchRule",
                    action="Block",
                    match_conditions=[
                        azure_native.network.MatchConditionArgs(
                            match_variables=[
                                azure_native.network.MatchVariableArgs(variable_name="RequestUri")
                            ],
                            operator="BeginsWith",
                            match_values=[INTERNAL_PATH_PREFIX],
                            transforms=["Lowercase", "UrlDecode"],
                        )
                    ],
                )
            ],
            tags=args.tags,
            **common,
            opts=child,
        )

        self.client_public_ip = self._public_ip("client", args.dns_label)
        self.admin_public_ip = self._public_ip("admin", f"{args.dns_label}-admin")
        deps = pulumi.ResourceOptions(parent=self, depends_on=[propagated])
        self.client = self._app_gateway(
            "client",
            Role.CLIENT_LB,
            args.client_subnet_id,
            self.client_public_ip,
            args.certificate,
            CLIENT_SIGNALING_PORT,
            affinity=True,
            waf_policy=self.waf_policy,
            opts=deps,
        )
        self.admin = self._app_gateway(
            "admin",
            Role.ADMIN_LB,
            args.admin_subnet_id,
            self.admin_public_ip,
            args.admin_certificate,
            ADMIN_PORT,
            affinity=False,
            waf_policy=None,
            opts=deps,
        )
        client_ids = SubResourceIds(args, "applicationGateways", f"{prefix}-client")
        admin_ids = SubResourceIds(args, "applicationGateways", f"{prefix}-admin")
        self.gateway_app_pools = [
            client_ids("backendAddressPools", "gateways"),
            admin_ids("backendAddressPools", "gateways"),
        ]

        self.signaling = self._standard_lb(
            "signaling",
            Role.SIGNALING_LB,
            frontend=azure_native.network.FrontendIPConfigurationArgs(
                name="frontend",
                subnet=azure_native.network.SubnetArgs(id=args.gateway_subnet_id),
                private_ip_address=args.signaling_address,
                private_ip_allocation_method="Static",
                zones=list(args.zones),
            ),
            port=CLIENT_SIGNALING_PORT,
            # Media nodes register through this load balancer, so it routes on registration
            # readiness (the gateway's Redis answers), which needs no registered media node; and
            # when every gateway is probed down it still sends new flows to all of them, as an
            # ALB does, instead of refusing the whole region's signaling.
            probe=azure_native.network.ProbeArgs(
                name="readyz",
                protocol="Http",
                port=CLIENT_SIGNALING_PORT,
                request_path=REGISTRATION_READINESS_PATH,
                interval_in_seconds=PROBE_INTERVAL_SECONDS,
                probe_threshold=2,
                no_healthy_backends_behavior=azure_native.network.ProbeNoHealthyBackendsBehavior.ALL_PROBED_UP,
            ),
            probe_name="readyz",
            idle_minutes=SIGNALING_IDLE_MINUTES,
        )
        self.gateway_lb_pools = [
            SubResourceIds(args, "loadBalancers", f"{prefix}-signaling")(
                "backendAddressPools", "gateways"
            )
        ]

        self.register_outputs(
            {
                "clientAddress": self.client_public_ip.ip_address,
                "adminAddress": self.admin_public_ip.ip_address,
            }
        )

    def _public_ip(self, name: str, label: str) -> azure_native.network.PublicIPAddress:
        args = self._args
        return azure_native.network.PublicIPAddress(
            f"{args.prefix}-{name}",
            public_ip_address_name=f"{args.prefix}-{name}",
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=azure_native.network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"),
            public_ip_allocation_method="Static",
            zones=list(args.zones),
            dns_settings=azure_native.network.PublicIPAddressDnsSettingsArgs(
                domain_name_label=label
            ),
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _app_gateway(
        self,
        name: str,
        role: Role,
        subnet_id: pulumi.Input[str],
        address: azure_native.network.PublicIPAddress,
        certificate: pulumi.Input[str],
        backend_port: int,
        affinity: bool,
        waf_policy: azure_native.network.WebApplicationFirewallPolicy | None,
        opts: pulumi.ResourceOptions,
    ) -> azure_native.network.ApplicationGateway:
        args = self._args
        gateway_name = f"{args.prefix}-{name}"
        ids = SubResourceIds(args, "applicationGateways", gateway_name)
        net = azure_native.network
        return net.ApplicationGateway(
            gateway_name,
            application_gateway_name=gateway_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=net.ApplicationGatewaySkuArgs(
                name="WAF_v2" if waf_policy else "Standard_v2",
                tier="WAF_v2" if waf_policy else "Standard_v2",
            ),
            autoscale_configuration=net.ApplicationGatewayAutoscaleConfigurationArgs(
                min_capacity=MIN_GATEWAY_INSTANCES, max_capacity=MAX_GATEWAY_INSTANCES
            ),
            zones=list(args.zones),
            identity=net.ManagedServiceIdentityArgs(
                type=net.ResourceIdentityType.USER_ASSIGNED,
                user_assigned_identities=[self._identity.id],
            ),
            firewall_policy=net.SubResourceArgs(id=waf_policy.id) if waf_policy else None,
            enable_http2=True,
            gateway_ip_configurations=[
                net.ApplicationGatewayIPConfigurationArgs(
                    name="subnet", subnet=net.SubResourceArgs(id=subnet_id)
                )
            ],
            frontend_ip_configurations=[
                net.ApplicationGatewayFrontendIPConfigurationArgs(
                    name="public", public_ip_address=net.SubResourceArgs(id=address.id)
                )
            ],
            frontend_ports=[net.ApplicationGatewayFrontendPortArgs(name="https", port=HTTPS_PORT)],
            ssl_certificates=[
                net.ApplicationGatewaySslCertificateArgs(
                    name="tls", key_vault_secret_id=certificate
                )
            ],
            ssl_policy=net.ApplicationGatewaySslPolicyArgs(
                policy_type="Predefined", policy_name=TLS_POLICY
            ),
            backend_address_pools=[net.ApplicationGatewayBackendAddressPoolArgs(name="gateways")],
            probes=[
                net.ApplicationGatewayProbeArgs(
                    name="readyz",
                    protocol="Http",
                    host="127.0.0.1",
                    port=backend_port,
                    path=READINESS_PATH,
                    interval=PROBE_INTERVAL_SECONDS,
                    timeout=5,
                    unhealthy_threshold=2,
                    match=net.ApplicationGatewayProbeHealthResponseMatchArgs(status_codes=["200"]),
                )
            ],
            backend_http_settings_collection=[
                net.ApplicationGatewayBackendHttpSettingsArgs(
                    name="gateways",
                    protocol="Http",
                    port=backend_port,
                    cookie_based_affinity="Enabled" if affinity else "Disabled",
                    affinity_cookie_name=AFFINITY_COOKIE if affinity else None,
                    request_timeout=SIGNALING_IDLE_TIMEOUT_SECONDS if affinity else 60,
                    probe=net.SubResourceArgs(id=ids("probes", "readyz")),
                    connection_draining=net.ApplicationGatewayConnectionDrainingArgs(
                        enabled=True, drain_timeout_in_sec=30
                    ),
                )
            ],
            http_listeners=[
                net.ApplicationGatewayHttpListenerArgs(
                    name="https",
                    protocol="Https",
                    frontend_ip_configuration=net.SubResourceArgs(
                        id=ids("frontendIPConfigurations", "public")
                    ),
                    frontend_port=net.SubResourceArgs(id=ids("frontendPorts", "https")),
                    ssl_certificate=net.SubResourceArgs(id=ids("sslCertificates", "tls")),
                )
            ],
            request_routing_rules=[
                net.ApplicationGatewayRequestRoutingRuleArgs(
                    name="gateways",
                    rule_type="Basic",
                    priority=100,
                    http_listener=net.SubResourceArgs(id=ids("httpListeners", "https")),
                    backend_address_pool=net.SubResourceArgs(
                        id=ids("backendAddressPools", "gateways")
                    ),
                    backend_http_settings=net.SubResourceArgs(
                        id=ids("backendHttpSettingsCollection", "gateways")
                    ),
                )
            ],
            tags={**args.tags, ROLE_TAG: role.value},
            opts=opts,
        )

    def _standard_lb(
        self,
        name: str,
        role: Role,
        frontend: azure_native.network.FrontendIPConfigurationArgs,
        port: int,
        probe: azure_native.network.ProbeArgs,
        probe_name: str,
        idle_minutes: int,
        pool: str = "gateways",
    ) -> azure_native.network.LoadBalancer:
        args = self._args
        lb_name = f"{args.prefix}-{name}"
        ids = SubResourceIds(args, "loadBalancers", lb_name)
        net = azure_native.network
        return net.LoadBalancer(
            lb_name,
            load_balancer_name=lb_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=net.LoadBalancerSkuArgs(name="Standard", tier="Regional"),
            frontend_ip_configurations=[frontend],
            backend_address_pools=[net.BackendAddressPoolArgs(name=pool)],
            probes=[probe],
            load_balancing_rules=[
                net.LoadBalancingRuleArgs(
                    name=f"tcp-{port}",
                    protocol="Tcp",
                    frontend_port=port,
                    backend_port=port,
                    frontend_ip_configuration=net.SubResourceArgs(
                        id=ids("frontendIPConfigurations", "frontend")
                    ),
                    backend_address_pool=net.SubResourceArgs(id=ids("backendAddressPools", pool)),
                    probe=net.SubResourceArgs(id=ids("probes", probe_name)),
                    idle_timeout_in_minutes=idle_minutes,
                    enable_tcp_reset=True,
                    disable_outbound_snat=True,
                    load_distribution="Default",
                )
            ],
            tags={**args.tags, ROLE_TAG: role.value},
            opts=pulumi.ResourceOptions(parent=self),
        )

    @property
    def client_dns_name(self) -> pulumi.Output[str]:
        return self.client_public_ip.dns_settings.apply(lambda d: (d.fqdn or "") if d else "")
