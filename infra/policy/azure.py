"""CrossGuard policies for an Azure region: the firewall of ``infra.spec`` and the HA minimums.

The NSG check reads ``infra.azure.firewall.nsg_ingress`` (the spec's rules with Azure's two
documented translations) and ``PLATFORM_RULES``, so the spec stays the one definition. Like
the AWS policies, each function reads the engine's camelCase properties, so the same code runs
under ``pulumi preview --policy-pack policy`` and in the offline ``rtcfleet plan``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.azure import arm_rules
from infra.azure.firewall_rules import (
    APP_GATEWAY_ROLES,
    AZURE_LOAD_BALANCER,
    DENY_ALL_NAME,
    GATEWAY_MANAGER,
    NSG_ROLES,
    OWN_SUBNET,
    PEERED_NETWORKS,
    PLATFORM_RULES,
    nsg_ingress,
    port_range,
)
from infra.azure.rbac import KEY_VAULT_SECRETS_USER
from infra.policy.props import (
    Report,
    integral,
    ipv4_network,
    resource_policy,
    stack_policy,
    tags_of,
    truthy,
)
from infra.spec import (
    ENV_TAG,
    KEY_VAULT_TAG,
    LIVENESS_PATH,
    MIN_AVAILABILITY_ZONES,
    MIN_GATEWAYS,
    MIN_REDIS_REPLICAS,
    OPTIONAL_SOURCES,
    PRIVATE_RANGES,
    READINESS_PATH,
    REGISTRATION_READINESS_PATH,
    ROLE_TAG,
    SSH_PORT,
    SUBSCRIBER_TAG,
    Ingress,
    Role,
    Source,
)

NSG = "azure-native:network:NetworkSecurityGroup"
SECURITY_RULE = "azure-native:network:SecurityRule"
SCALE_SET = "azure-native:compute:VirtualMachineScaleSet"
VIRTUAL_MACHINE = "azure-native:compute:VirtualMachine"
REDIS = "azure-native:redis:Redis"
POSTGRES = "azure-native:dbforpostgresql:Server"
VAULT = "azure-native:keyvault:Vault"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
LOAD_BALANCER = "azure-native:network:LoadBalancer"
APPLICATION_GATEWAY = "azure-native:network:ApplicationGateway"
HEALTH_EXTENSIONS = ("ApplicationHealthLinux", "ApplicationHealthWindows")
FAIL_OPEN = "AllProbedUp"
APPLICATION_GATEWAY = "azure-native:network:ApplicationGateway"
NAT_GATEWAY = "azure-native:network:NatGateway"
PUBLIC_IP = "azure-native:network:PublicIPAddress"
SLEEP = "time:index/sleep:Sleep"
# Azure documents RBAC changes taking minutes to apply; a shorter wait is no wait.
MIN_ROLE_PROPAGATION_SECONDS = 120

ANYWHERE = ("*", "0.0.0.0/0", "Internet")
MAX_TERMINATE_NOTICE_MINUTES = 15
_DURATION = re.compile(r"^PT(?:(\d+)M)?(?:(\d+)S)?$")
_ROLES = {role.value for role in NSG_ROLES}
_SINGLE_SUBNET_SOURCES = (Source.CLIENT_LB, Source.ADMIN_LB, Source.GATEWAYS, Source.MEDIA_NODES)


def _private(cidr: Any) -> bool:
    network = ipv4_network(cidr)
    return network is not None and any(
        network.subnet_of(private)
        for private in (ipv4_network(r) for r in PRIVATE_RANGES)
        if private is not None
    )


def _sources(rule: Mapping[str, Any]) -> list[str]:
    prefixes = list(rule.get("sourceAddressPrefixes") or [])
    if rule.get("sourceAddressPrefix"):
        prefixes.append(rule["sourceAddressPrefix"])
    return [str(p) for p in prefixes]


def _ports(rule: Mapping[str, Any]) -> list[str]:
    ports = list(rule.get("destinationPortRanges") or [])
    if rule.get("destinationPortRange"):
        ports.append(rule["destinationPortRange"])
    return [str(p) for p in ports]


def _covers(rule: Mapping[str, Any], port: int) -> bool:
    for text in _ports(rule):
        if text == "*":
            return True
        low, _, high = text.partition("-")
        if low.isdigit() and int(low) <= port <= int(high or low):
            return True
    return False


def _inbound(props: Mapping[str, Any], access: str) -> list[Mapping[str, Any]]:
    return [
        rule
        for rule in props.get("securityRules") or []
        if isinstance(rule, Mapping)
        and rule.get("direction") == "Inbound"
        and rule.get("access") == access
    ]


def _describe(rule: Mapping[str, Any]) -> str:
    ports = ",".join(_ports(rule))
    return f"{rule.get('name')} {rule.get('protocol')} {ports} from {', '.join(_sources(rule))}"


def _source_matches(source: Source, sources: list[str]) -> bool:
    if any(s.startswith("0.0.0.0/0") for s in sources) and source is not Source.ANYWHERE:
        return False
    if source is Source.ANYWHERE:
        return len(sources) == 1 and sources[0] in ANYWHERE
    networks = [ipv4_network(s) for s in sources]
    if not networks or any(n is None or n.prefixlen == 0 for n in networks):
        return False
    if source is Source.ADMIN_ALLOW_LIST:
        return True
    if source in _SINGLE_SUBNET_SOURCES:
        return len(sources) == 1 and _private(sources[0])
    return all(_private(s) for s in sources)


def _allowed(spec: Ingress, rule: Mapping[str, Any]) -> bool:
    return (
        str(rule.get("protocol", "")).lower() == spec.protocol
        and _ports(rule) == [port_range(spec.from_port, spec.to_port)]
        and _source_matches(spec.source, _sources(rule))
    )


def _platform(role: Role, rule: Mapping[str, Any]) -> bool:
    for platform in PLATFORM_RULES.get(role, ()):
        if rule.get("name") != f"platform-{platform.name}":
            continue
        protocol = str(rule.get("protocol", "")).lower()
        if protocol != platform.protocol or _ports(rule) != [
            port_range(platform.from_port, platform.to_port)
        ]:
            return False
        sources = _sources(rule)
        if platform.source in (GATEWAY_MANAGER, AZURE_LOAD_BALANCER):
            return sources == [platform.source]
        if platform.source in (OWN_SUBNET, PEERED_NETWORKS):
            return bool(sources) and all(_private(s) for s in sources)
    return False


def nsg_matches_spec(args: ResourceValidationArgs, report: Report) -> None:
    """A role's NSG opens exactly what FIREWALL says (as Azure enforces it), then denies all."""
    if args.resource_type == SECURITY_RULE:
        report("security rules must be inline in their role's NSG, where they are checked")
        return
    if args.resource_type != NSG:
        return
    role_name = tags_of(args.props).get(ROLE_TAG)
    if role_name not in _ROLES:
        report(f"NSG has no {ROLE_TAG} tag naming a role with a subnet in infra.spec")
        return
    role = Role(role_name)
    expected = nsg_ingress(role)
    allows = _inbound(args.props, "Allow")
    for rule in allows:
        if not any(_allowed(spec, rule) for spec in expected) and not _platform(role, rule):
            report(f"{role_name}: inbound {_describe(rule)} is not allowed by FIREWALL")
    for spec in expected:
        if spec.source in OPTIONAL_SOURCES:
            continue
        if not any(_allowed(spec, rule) for rule in allows):
            report(
                f"{role_name}: missing {spec.protocol} {port_range(spec.from_port, spec.to_port)}"
                f" from {spec.source.value} ({spec.description})"
            )
    last_allow = max((int(r.get("priority") or 0) for r in allows), default=0)
    deny_all = [
        rule
        for rule in _inbound(args.props, "Deny")
        if rule.get("protocol") == "*"
        and _sources(rule) == ["*"]
        and _ports(rule) == ["*"]
        and int(rule.get("priority") or 0) > last_allow
    ]
    if not deny_all:
        report(
            f"{role_name}: no inbound deny-all ({DENY_ALL_NAME}) after the allow rules, so "
            "Azure's AllowVnetInBound and AllowAzureLoadBalancerInBound would admit more"
        )


def no_ssh(args: ResourceValidationArgs, report: Report) -> None:
    """No port 22 from anywhere; machines log in with an SSH key, never a password."""
    if args.resource_type == NSG:
        for rule in _inbound(args.props, "Allow"):
            # The AzureLoadBalancer tag is only the platform's probe address (168.63.129.16).
            if _sources(rule) == [AZURE_LOAD_BALANCER]:
                continue
            if _covers(rule, SSH_PORT) and str(rule.get("protocol")).lower() in ("tcp", "*"):
                report(f"inbound {_describe(rule)} opens SSH (port {SSH_PORT})")
    elif args.resource_type == SECURITY_RULE:
        if args.props.get("access") == "Allow" and _covers(args.props, SSH_PORT):
            report(f"security rule opens SSH (port {SSH_PORT})")
    elif args.resource_type in (SCALE_SET, VIRTUAL_MACHINE):
        profile = args.props.get("virtualMachineProfile") or args.props
        os_profile = profile.get("osProfile") or {}
        linux = os_profile.get("linuxConfiguration") or {}
        if os_profile.get("adminPassword") or not truthy(
            linux.get("disablePasswordAuthentication")
        ):
            report("logins must take an SSH key only: no admin password, password logins off")
        if not (linux.get("ssh") or {}).get("publicKeys"):
            report("machines need the operators' SSH public key (osProfile.linuxConfiguration)")


def no_public_data_stores(args: ResourceValidationArgs, report: Report) -> None:
    """Redis, Postgres and Key Vault refuse the public network."""
    props = args.props
    if args.resource_type == REDIS and props.get("publicNetworkAccess") != "Disabled":
        report("Redis publicNetworkAccess must be Disabled (reach it by private endpoint)")
    elif args.resource_type == POSTGRES:
        network = props.get("network") or {}
        if network.get("publicNetworkAccess") != "Disabled":
            report("Postgres network.publicNetworkAccess must be Disabled")
        if not network.get("delegatedSubnetResourceId"):
            report("Postgres must live in its delegated subnet (VNet integration)")
    elif args.resource_type == VAULT:
        acls = (props.get("properties") or {}).get("networkAcls") or {}
        public = (props.get("properties") or {}).get("publicNetworkAccess")
        if public != "Disabled" and acls.get("defaultAction") != "Deny":
            report("Key Vault must deny the network by default (networkAcls.defaultAction)")


def redis_tls_only(args: ResourceValidationArgs, report: Report) -> None:
    """Redis carries session state and its key: TLS 1.2+, never the plain-text port."""
    if args.resource_type != REDIS:
        return
    if truthy(args.props.get("enableNonSslPort")):
        report("enableNonSslPort must be false")
    if str(args.props.get("minimumTlsVersion")) not in ("1.2", "1.3"):
        report("minimumTlsVersion must be 1.2 or later")


def gateways_span_zones(args: ResourceValidationArgs, report: Report) -> None:
    """Any gateway serves any client, so at least two, in at least two zones."""
    if args.resource_type != SCALE_SET or tags_of(args.props).get(ROLE_TAG) != Role.GATEWAY.value:
        return
    zones = set(args.props.get("zones") or [])
    if len(zones) < MIN_AVAILABILITY_ZONES:
        report(f"gateways span {len(zones)} zone(s); at least {MIN_AVAILABILITY_ZONES}")
    capacity = integral((args.props.get("sku") or {}).get("capacity") or 0)
    if capacity < MIN_GATEWAYS:
        report(f"gateway scale set capacity {capacity} is below {MIN_GATEWAYS}")


def redis_zone_replicas(args: ResourceValidationArgs, report: Report) -> None:
    """A primary and replicas in other zones, which Azure promotes on failure."""
    if args.resource_type != REDIS:
        return
    if (args.props.get("sku") or {}).get("name") != "Premium":
        report("Redis must be Premium: the tier with zones and replicas")
    replicas = integral(
        args.props.get("replicasPerPrimary") or args.props.get("replicasPerMaster") or 0
    )
    if replicas < MIN_REDIS_REPLICAS:
        report(f"{replicas} replica(s); at least {MIN_REDIS_REPLICAS}")
    zones = set(args.props.get("zones") or [])
    if len(zones) < MIN_AVAILABILITY_ZONES:
        report(f"cache placed in {len(zones)} zone(s); at least {MIN_AVAILABILITY_ZONES}")


def postgres_ha_with_backups(args: ResourceValidationArgs, report: Report) -> None:
    """The writer survives a zone (zone-redundant HA) and keeps backups."""
    if args.resource_type != POSTGRES:
        return
    if args.props.get("createMode") == "Replica":
        if not args.props.get("sourceServerResourceId"):
            report("a replica needs its source server")
        return
    if tags_of(args.props).get(SUBSCRIBER_TAG):
        # a copy of another cloud's writer: a new server copies it again, nothing to back up
        return
    ha = args.props.get("highAvailability") or {}
    if ha.get("mode") != "ZoneRedundant":
        report("the writer must use zone-redundant HA (highAvailability.mode)")
    elif ha.get("standbyAvailabilityZone") == args.props.get("availabilityZone"):
        report("the HA standby must be in another zone than the writer")
    days = integral((args.props.get("backup") or {}).get("backupRetentionDays") or 0)
    if days < 7:
        report(f"backups kept {days} day(s); at least 7")


def _minutes(duration: Any) -> float | None:
    match = _DURATION.match(str(duration or ""))
    if not match or not any(match.groups()):
        return None
    return int(match[1] or 0) + int(match[2] or 0) / 60


def media_graceful_scale_in(args: ResourceValidationArgs, report: Report) -> None:
    """Media nodes get a terminate notice, are removed oldest first, and keep a public IP."""
    if (
        args.resource_type != SCALE_SET
        or tags_of(args.props).get(ROLE_TAG) != Role.MEDIA_NODE.value
    ):
        return
    profile = args.props.get("virtualMachineProfile") or {}
    events = (profile.get("scheduledEventsProfile") or {}).get("terminateNotificationProfile")
    notice = _minutes((events or {}).get("notBeforeTimeout"))
    if not events or not truthy(events.get("enable")) or notice is None:
        report("media nodes need a terminate notification (scheduledEventsProfile)")
    elif not 5 <= notice <= MAX_TERMINATE_NOTICE_MINUTES:
        report(f"terminate notice of {notice:g} min; 5 to {MAX_TERMINATE_NOTICE_MINUTES}")
    policy = args.props.get("scaleInPolicy") or {}
    if not policy.get("rules") or truthy(policy.get("forceDeletion")):
        report("media scale-in needs a scale-in policy without force deletion")
    configurations = (profile.get("networkProfile") or {}).get("networkInterfaceConfigurations")
    public = [
        ip.get("publicIPAddressConfiguration")
        for nic in configurations or []
        for ip in nic.get("ipConfigurations") or []
    ]
    if not any(public):
        report("media nodes need a public IP each (1:1 NAT for ICE candidates)")


def key_vault_rbac(args: ResourceValidationArgs, report: Report) -> None:
    """Secrets are read through RBAC, on the vault or a secret, never a wider scope."""
    if args.resource_type == VAULT:
        properties = args.props.get("properties") or {}
        if not truthy(properties.get("enableRbacAuthorization")):
            report("Key Vault must use RBAC (enableRbacAuthorization), not access policies")
        if properties.get("accessPolicies"):
            report("Key Vault access policies bypass the per-secret role assignments")
    elif args.resource_type == ROLE_ASSIGNMENT:
        role = str(args.props.get("roleDefinitionId") or "")
        scope = str(args.props.get("scope") or "")
        if role.endswith(
            KEY_VAULT_SECRETS_USER
        ) and "/providers/Microsoft.KeyVault/vaults/" not in (scope):
            report(f"Key Vault Secrets User granted on {scope}: scope it to a vault or a secret")


def repairs_act_on_liveness(args: ResourceValidationArgs, report: Report) -> None:
    """A scale set's health extension, and so its automatic repairs, probe liveness only."""
    if args.resource_type != SCALE_SET:
        return
    profile = args.props.get("virtualMachineProfile") or {}
    extensions = (profile.get("extensionProfile") or {}).get("extensions") or []
    health = [e for e in extensions if e.get("type") in HEALTH_EXTENSIONS]
    for extension in health:
        path = (extension.get("settings") or {}).get("requestPath")
        if path != LIVENESS_PATH:
            report(f"health extension probes {path!r}; it must probe liveness {LIVENESS_PATH}")
    repairs = args.props.get("automaticRepairsPolicy") or {}
    if truthy(repairs.get("enabled")) and not health:
        report("automatic repairs without a health extension act on no liveness signal")


def load_balancers_route_on_readiness(args: ResourceValidationArgs, report: Report) -> None:
    """Load balancer probes use readiness; the media-signaling one uses registration readiness
    and fails open (AllProbedUp), so media nodes can register in a region that has none yet."""
    if args.resource_type == APPLICATION_GATEWAY:
        for probe in args.props.get("probes") or []:
            if probe.get("path") != READINESS_PATH:
                report(f"probe {probe.get('name')} must probe {READINESS_PATH}")
    elif args.resource_type == LOAD_BALANCER:
        signaling = tags_of(args.props).get(ROLE_TAG) == Role.SIGNALING_LB.value
        for probe in args.props.get("probes") or []:
            if str(probe.get("protocol")).lower() not in ("http", "https"):
                continue
            expected = REGISTRATION_READINESS_PATH if signaling else READINESS_PATH
            if probe.get("requestPath") != expected:
                report(f"probe {probe.get('name')} must probe {expected}")
            if signaling and probe.get("noHealthyBackendsBehavior") != FAIL_OPEN:
                report(
                    f"probe {probe.get('name')}: with every gateway probed down the signaling "
                    f"load balancer must fail open (noHealthyBackendsBehavior {FAIL_OPEN})"
                )


def resource_manager_accepts(args: ResourceValidationArgs, report: Report) -> None:
    """Nothing Azure Resource Manager documents it refuses (``infra.azure.arm_rules``)."""
    for message in arm_rules.refusals(args.resource_type, args.props):
        report(message)
    if args.resource_type == NSG and tags_of(args.props).get(ROLE_TAG) in {
        role.value for role in APP_GATEWAY_ROLES
    }:
        for message in arm_rules.app_gateway_nsg_refusals(args.props):
            report(message)


def nodes_name_themselves(args: ResourceValidationArgs, report: Report) -> None:
    """Scale sets carry the tags first boot falls back to: role, env and the Key Vault."""
    if args.resource_type != SCALE_SET:
        return
    tags = tags_of(args.props)
    for key in (ROLE_TAG, ENV_TAG, KEY_VAULT_TAG):
        if not tags.get(key):
            report(f"scale set has no {key} tag (first boot reads it when custom data is lost)")


def _seconds(duration: Any) -> float:
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", str(duration or ""))
    if not match or not any(match.groups()):
        return 0.0
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _depends_on(resource: Any, type_token: str) -> list[Any]:
    return [d for d in resource.dependencies or () if d.resource_type == type_token]


def certificates_read_after_propagation(args: StackValidationArgs, report: Report) -> None:
    """An Application Gateway reading Key Vault waits for its identity's role to apply."""
    for gateway in (r for r in args.resources if r.resource_type == APPLICATION_GATEWAY):
        vaulted = [
            c
            for c in gateway.props.get("sslCertificates") or []
            if isinstance(c, Mapping) and c.get("keyVaultSecretId")
        ]
        if not vaulted:
            continue
        waits = [
            sleep
            for sleep in _depends_on(gateway, SLEEP)
            if _seconds(sleep.props.get("createDuration")) >= MIN_ROLE_PROPAGATION_SECONDS
            and _depends_on(sleep, ROLE_ASSIGNMENT)
        ]
        if not waits:
            report(
                f"{gateway.name} reads its certificate from Key Vault without waiting "
                f"{MIN_ROLE_PROPAGATION_SECONDS} s or more after its role assignment "
                "(RBAC propagation fails the first create)",
                gateway.urn,
            )


def nat_gateways_zonal(args: StackValidationArgs, report: Report) -> None:
    """Each NAT gateway is pinned to a zone and its addresses are in that zone."""
    ips = {
        str(ip.props.get("publicIpAddressName")): ip.props
        for ip in args.resources
        if ip.resource_type == PUBLIC_IP
    }
    for nat in (r for r in args.resources if r.resource_type == NAT_GATEWAY):
        ids = [str(a.get("id")) for a in nat.props.get("publicIpAddresses") or []]
        own = [props for name, props in ips.items() if any(i.endswith(f"/{name}") for i in ids)]
        for problem in arm_rules.nat_zone_problems(nat.props, own):
            report(f"{nat.name}: {problem}", nat.urn)


def distinct_computer_names(args: StackValidationArgs, report: Report) -> None:
    """No two scale sets share a computer-name prefix: host names say what a machine is."""
    seen: dict[str, str] = {}
    for scale_set in (r for r in args.resources if r.resource_type == SCALE_SET):
        profile = scale_set.props.get("virtualMachineProfile") or {}
        prefix = str((profile.get("osProfile") or {}).get("computerNamePrefix") or "")
        if prefix in seen:
            report(
                f"{scale_set.name} and {seen[prefix]} share computerNamePrefix {prefix!r}",
                scale_set.urn,
            )
        seen[prefix] = scale_set.name


IMAGE_TEMPLATE = "azure-native:virtualmachineimages:VirtualMachineImageTemplate"


def _assignments_before(resource: Any) -> list[Any]:
    """Role assignments a resource waits for, directly or through a propagation wait."""
    found = _depends_on(resource, ROLE_ASSIGNMENT)
    for sleep in _depends_on(resource, SLEEP):
        if _seconds(sleep.props.get("createDuration")) >= MIN_ROLE_PROPAGATION_SECONDS:
            found += _depends_on(sleep, ROLE_ASSIGNMENT)
    return found


def image_builder_can_build(args: StackValidationArgs, report: Report) -> None:
    """An image template runs, after its identity may read the bundle, stage and write versions."""
    for template in (r for r in args.resources if r.resource_type == IMAGE_TEMPLATE):
        props = template.props
        if (props.get("autoRun") or {}).get("state") != "Enabled":
            report(f"{template.name} never runs: set autoRun.state Enabled", template.urn)
        scopes = [str(a.props.get("scope") or "") for a in _assignments_before(template)]
        needs: dict[str, str] = {}
        staging = str(props.get("stagingResourceGroup") or "")
        needs["the staging resource group"] = staging or "(none set)"
        for distributor in props.get("distribute") or []:
            image = str(distributor.get("galleryImageId") or "")
            needs["the gallery"] = image.split("/images/")[0]
            if "/versions/" not in image:
                report(
                    f"{template.name} writes an unnamed version: region stacks need its id",
                    template.urn,
                )
        for customizer in props.get("customize") or []:
            match = re.match(
                r"^https://([a-z0-9]+)\.blob\.core\.windows\.net/([^/]+)/",
                str(customizer.get("sourceUri") or ""),
            )
            if match:
                needs["the bundle's container"] = (
                    f"/storageAccounts/{match[1]}/blobServices/default/containers/{match[2]}"
                )
        for what, scope in needs.items():
            if not scope or not any(s.lower().endswith(scope.lower()) for s in scopes):
                report(
                    f"{template.name}: its identity holds no role on {what} before the build "
                    f"({scope})",
                    template.urn,
                )


AZURE_POLICIES: Sequence[ResourceValidationPolicy | StackValidationPolicy] = (
    resource_policy("rtcfleet-azure-resource-manager-accepts", resource_manager_accepts),
    resource_policy("rtcfleet-azure-nodes-name-themselves", nodes_name_themselves),
    stack_policy(
        "rtcfleet-azure-certificates-read-after-propagation", certificates_read_after_propagation
    ),
    stack_policy("rtcfleet-azure-nat-gateways-zonal", nat_gateways_zonal),
    stack_policy("rtcfleet-azure-distinct-computer-names", distinct_computer_names),
    stack_policy("rtcfleet-azure-image-builder-can-build", image_builder_can_build),
    resource_policy("rtcfleet-azure-nsg-matches-spec", nsg_matches_spec),
    resource_policy("rtcfleet-azure-no-ssh", no_ssh),
    resource_policy("rtcfleet-azure-no-public-data-stores", no_public_data_stores),
    resource_policy("rtcfleet-azure-redis-tls-only", redis_tls_only),
    resource_policy("rtcfleet-azure-gateways-span-zones", gateways_span_zones),
    resource_policy("rtcfleet-azure-redis-zone-replicas", redis_zone_replicas),
    resource_policy("rtcfleet-azure-postgres-ha-with-backups", postgres_ha_with_backups),
    resource_policy("rtcfleet-azure-media-graceful-scale-in", media_graceful_scale_in),
    resource_policy("rtcfleet-azure-key-vault-rbac", key_vault_rbac),
    resource_policy("rtcfleet-azure-repairs-act-on-liveness", repairs_act_on_liveness),
    resource_policy(
        "rtcfleet-azure-load-balancers-route-on-readiness", load_balancers_route_on_readiness
    ),
)

__all__ = ["AZURE_POLICIES"]
