"""One region of the platform on Azure, composed from the blocks of ``infra.azure``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

import pulumi
import pulumi_azure_native as azure_native

from infra import spec
from infra.azure.certificates import Certificates, CertificatesArgs
from infra.azure.firewall import Firewall, FirewallArgs
from infra.azure.key_vault import KeyVault, KeyVaultArgs, secret_name, settings_name
from infra.azure.load_balancers import LoadBalancers, LoadBalancersArgs
from infra.azure.network import Network, NetworkArgs, subnet_cidrs
from infra.azure.node_groups import CpuAutoscale, NodeGroup, NodeGroupArgs
from infra.azure.postgres import ADMIN_USER, DATABASE, Postgres, PostgresArgs
from infra.azure.recordings import RecordingStore, RecordingStoreArgs
from infra.azure.redis import Redis, RedisArgs
from infra.azure.regions import AZURE_SHORT_NAMES
from infra.azure.sizes import vm_size
from infra.azure.spot import SPOT_PREFIX_SUFFIX, media_capacity
from infra.recordings import RECORDING_DOCUMENT, azure_blob_document
from infra.references import stack_reference_name
from infra.secret_values import configured_secrets, secret_values
from infra.settings import AzureRegionSettings, SettingsError, config_key
from infra.spec import Role, settings_subscription

# Outputs of the home region's stack that the other regions read.
HOME_SERVER_ID = "postgresServerId"
HOME_WRITE_ENDPOINT = "postgresWriteEndpoint"
HOME_DB_PASSWORD = "dbPassword"
# The private DNS zone holding the writer's name, and its resource group.
HOME_DNS_ZONE = "postgresDnsZoneName"
HOME_RESOURCE_GROUP = "resourceGroupName"
# Output of the image stack: the Compute Gallery image version the nodes boot.
IMAGE_VERSION_ID = "azureImageVersionId"
# Azure generates the cache's access key; the region reads it instead of setting one.
REDIS_KEY = "redisAuthToken"
# Where the region's media nodes upload recordings; the spot media scale set, if any.
RECORDING_CONTAINER_URL = "recordingContainerUrl"
MEDIA_SPOT_SCALE_SET_ID = "mediaSpotScaleSetId"


def region_prefix(env: str, region: str) -> str:
    """``prod`` + ``westeurope`` -> ``prod-weu``: keeps names inside Azure's limits."""
    return f"{env}-{AZURE_SHORT_NAMES[region]}"


def signaling_address(gateway_cidr: str) -> str:
    """The signaling LB's static address: the gateway subnet's last usable one."""
    return str(IPv4Network(gateway_cidr).broadcast_address - 1)


@dataclass
class HomeDatabase:
    """What a non-home region needs from the home region's stack (or, for a subscriber, from
    the environment's writer stack in another cloud: no server id)."""

    server_id: pulumi.Input[str] | None
    write_endpoint: pulumi.Input[str]
    password: pulumi.Input[str]
    # The writer's private DNS zone and its resource group (an Azure writer only).
    dns_zone_name: pulumi.Input[str] | None = None
    resource_group_name: pulumi.Input[str] | None = None


@dataclass
class AzureRegionArgs:
    settings: AzureRegionSettings
    image_id: pulumi.Input[str]
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    home: HomeDatabase | None = None


class AzureRegion(pulumi.ComponentResource):
    """Resource group, network, NSGs, entry points, data stores, Key Vault and scale sets."""

    exports: dict[str, pulumi.Output[Any]]

    def __init__(
        self, name: str, args: AzureRegionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:Region", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        prefix = region_prefix(s.env, s.region)
        tags = {"rtcfleet:env": s.env, "rtcfleet:region": s.region, "rtcfleet:stack": s.stack}
        zones = list(s.availability_zones)
        client = azure_native.authorization.get_client_config_output(
            opts=pulumi.InvokeOptions(parent=self)
        )
        subscription_id = client.subscription_id

        group = azure_native.resources.ResourceGroup(
            f"{prefix}-rg",
            resource_group_name=f"rtcfleet-{s.env}-{s.region}",
            location=s.region,
            tags=tags,
            opts=child,
        )
        rg = group.name
        cidrs, _ = subnet_cidrs(str(s.vpc_cidr))
        firewall = Firewall(
            f"{prefix}-firewall",
            FirewallArgs(
                prefix=prefix,
                resource_group_name=rg,
                location=s.region,
                subnet_cidrs=cidrs,
                admin_allow_list=[str(cidr) for cidr in s.admin_allow_list],
                private_cidrs=s.private_cidrs,
                peered_cidrs=[str(cidr) for cidr in s.peered_cidrs],
                tags=tags,
            ),
            opts=child,
        )
        network = Network(
            f"{prefix}-network",
            NetworkArgs(
                prefix=prefix,
                resource_group_name=rg,
                location=s.region,
                cidr=str(s.vpc_cidr),
                nsg_ids={role: firewall.group_id(role) for role in firewall.groups},
                nat_zone=zones[0],
                tags=tags,
            ),
            opts=child,
        )
        identities = {
            role: azure_native.managedidentity.UserAssignedIdentity(
                f"{prefix}-{role.value}",
                resource_name_=f"{prefix}-{role.value}",
                resource_group_name=rg,
                location=s.region,
                tags={**tags, spec.ROLE_TAG: role.value},
                opts=child,
            )
            for role in (Role.GATEWAY, Role.MEDIA_NODE)
        }
        certificates = (
            Certificates(
                f"{prefix}-certificates",
                CertificatesArgs(
                    prefix=prefix,
                    env=s.env,
                    settings=s.certificates,
                    vault_id=s.certificate_vault_id,
                    tags=tags,
                ),
                opts=child,
            )
            if s.certificates is not None
            else None
        )
        lbs = LoadBalancers(
            f"{prefix}-lb",
            LoadBalancersArgs(
                prefix=prefix,
                resource_group_name=rg,
                location=s.region,
                subscription_id=subscription_id,
                zones=zones,
                client_subnet_id=network.subnet_id(Role.CLIENT_LB),
                admin_subnet_id=network.subnet_id(Role.ADMIN_LB),
                gateway_subnet_id=network.subnet_id(Role.GATEWAY),
                signaling_address=signaling_address(cidrs[Role.GATEWAY]),
                certificate=certificates.secret_id("client")
                if certificates
                else str(s.certificate),
                admin_certificate=(
                    certificates.secret_id("admin")
                    if certificates
                    else str(s.admin_certificate or s.certificate)
                ),
                certificate_vault_id=s.certificate_vault_id,
                dns_label=f"rtcfleet-{prefix}",
                tags=tags,
            ),
            opts=child,
        )
        redis = Redis(
            f"{prefix}-redis",
            RedisArgs(
                prefix=prefix,
                stack=s.stack,
                resource_group_name=rg,
                location=s.region,
                capacity=s.redis_capacity or int(vm_size(Role.REDIS, s.redis_size)),
                replicas=s.redis_replicas,
                zones=zones,
                subnet_id=network.subnet_id(Role.REDIS),
                vnet_id=network.vnet.id,
                redis_version=s.redis_version,
                tags=tags,
            ),
            opts=child,
        )
        provided = dict(args.secrets)
        if args.home is not None:
            provided[HOME_DB_PASSWORD] = args.home.password
        values = secret_values(
            prefix,
            provided,
            parent=self,
            names=[n for n in spec.SECRET_NAMES if n != REDIS_KEY],
        )
        values[REDIS_KEY] = redis.access_key
        postgres = Postgres(
            f"{prefix}-postgres",
            PostgresArgs(
                prefix=prefix,
                stack=s.stack,
                resource_group_name=rg,
                location=s.region,
                home=s.is_home,
                subscriber=s.subscribes,
                writer_stack=s.writer_stack,
                sku=vm_size(Role.POSTGRES, s.postgres_size, s.postgres_sku),
                zones=zones,
                subnet_id=network.subnet_id(Role.POSTGRES),
                vnet_id=network.vnet.id,
                storage_gb=s.postgres_storage_gb,
                backup_days=s.postgres_backup_days,
                version=s.postgres_version,
                production=s.production,
                password=values["dbPassword"] if s.is_home or s.subscribes else None,
                source_server_id=args.home.server_id if args.home else None,
                source_endpoint=args.home.write_endpoint if args.home else None,
                source_dns_zone=(
                    (args.home.dns_zone_name, args.home.resource_group_name)
                    if args.home is not None
                    and args.home.dns_zone_name is not None
                    and args.home.resource_group_name is not None
                    else None
                ),
                tags=tags,
            ),
            opts=child,
        )

        recordings = RecordingStore(
            f"{prefix}-recordings",
            RecordingStoreArgs(
                prefix=prefix,
                stack=s.stack,
                resource_group_name=rg,
                location=s.region,
                subscription_id=subscription_id,
                settings=s.recordings,
                writer_principal_id=identities[Role.MEDIA_NODE].principal_id,
                retain=s.production,
                tags=tags,
            ),
            opts=child,
        )
        redis_doc = {"host": redis.host, "port": 6380, "tls": True}
        postgres_doc = {
            "readHost": postgres.read_endpoint,
            "port": spec.POSTGRES_PORT,
            "database": DATABASE,
            "user": ADMIN_USER,
        }
        signaling_url = (
            f"http://{signaling_address(cidrs[Role.GATEWAY])}:"
            f"{spec.CLIENT_SIGNALING_PORT}{spec.INTERNAL_PATH_PREFIX}"
        )
        vault = KeyVault(
            f"{prefix}-vault",
            KeyVaultArgs(
                prefix=prefix,
                stack=s.stack,
                resource_group_name=rg,
                location=s.region,
                tenant_id=client.tenant_id,
                subscription_id=subscription_id,
                subnet_ids=[network.subnet_id(Role.GATEWAY), network.subnet_id(Role.MEDIA_NODE)],
                values=values,
                documents={
                    Role.GATEWAY: {
                        "env": s.env,
                        "region": s.region,
                        "homeRegion": s.home_region,
                        "redis": redis_doc,
                        "postgres": {
                            **postgres_doc,
                            "writeHost": postgres.write_endpoint,
                            # the subscription the gateways keep following the writer
                            **(
                                {"subscription": settings_subscription(s.region)}
                                if s.subscribes
                                else {}
                            ),
                        },
                        "signalingPort": spec.CLIENT_SIGNALING_PORT,
                        "adminPort": spec.ADMIN_PORT,
                        # sessions get STUN/TURN on their media node's coturn at this port
                        "turnPort": spec.TURN_PORT,
                    },
                    Role.MEDIA_NODE: {
                        "env": s.env,
                        "region": s.region,
                        "redis": redis_doc,
                        "postgres": postgres_doc,
                        "signalingUrl": signaling_url,
                        "mediaPorts": [spec.MEDIA_PORT_MIN, spec.MEDIA_PORT_MAX],
                        "turnPort": spec.TURN_PORT,
                        "drainTimeoutSeconds": s.drain_timeout_seconds,
                        RECORDING_DOCUMENT: azure_blob_document(recordings.container_url),
                    },
                },
                readers={role: identity.principal_id for role, identity in identities.items()},
                production=s.production,
                tags=tags,
            ),
            opts=child,
        )

        def group_args(role: Role, **kwargs: Any) -> NodeGroupArgs:
            return NodeGroupArgs(
                prefix=prefix,
                role=role,
                env=s.env,
                region=s.region,
                resource_group_name=rg,
                location=s.region,
                subscription_id=subscription_id,
                zones=zones,
                subnet_id=network.subnet_id(role),
                image_id=args.image_id,
                identity_id=identities[role].id,
                identity_client_id=identities[role].client_id,
                identity_principal_id=identities[role].principal_id,
                vault_uri=vault.uri,
                vault_name=vault.name,
                secret_name=secret_name(role),
                settings_name=settings_name(role),
                ssh_public_key=s.node_ssh_public_key,
                tags=tags,
                **kwargs,
            )

        gateways = NodeGroup(
            f"{prefix}-gateways",
            group_args(
                Role.GATEWAY,
                vm_size=vm_size(Role.GATEWAY, s.gateway_size, s.gateway_vm_size),
                capacity=s.gateway_count,
                app_gateway_pools=lbs.gateway_app_pools,
                load_balancer_pools=lbs.gateway_lb_pools,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[lbs]),
        )
        regular, spot = media_capacity(s.media_min, s.media_max, s.media_spot)
        media = NodeGroup(
            f"{prefix}-media",
            group_args(
                Role.MEDIA_NODE,
                vm_size=vm_size(Role.MEDIA_NODE, s.media_size, s.media_vm_size),
                capacity=regular.minimum,
                public_ip=True,
                autoscale=CpuAutoscale(
                    target_percent=s.media_cpu_target,
                    cooldown_seconds=s.media_warmup_seconds,
                    minimum=regular.minimum,
                    maximum=regular.maximum,
                ),
                drain=True,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[lbs]),
        )
        media_spot = None
        if spot is not None and s.media_spot is not None:
            media_spot = NodeGroup(
                f"{prefix}-media-{SPOT_PREFIX_SUFFIX}",
                dataclasses.replace(
                    group_args(
                        Role.MEDIA_NODE,
                        vm_size=s.media_spot.instance_types[0],
                        capacity=spot.minimum,
                        public_ip=True,
                        autoscale=CpuAutoscale(
                            target_percent=s.media_cpu_target,
                            cooldown_seconds=s.media_warmup_seconds,
                            minimum=spot.minimum,
                            maximum=spot.maximum,
                        ),
                        drain=True,
                        spot=True,
                    ),
                    prefix=f"{prefix}-{SPOT_PREFIX_SUFFIX}",
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[lbs]),
            )

        self.exports = {
            "region": pulumi.Output.from_input(s.region),
            "location": pulumi.Output.from_input(s.region),
            HOME_RESOURCE_GROUP: rg,
            "vnetId": network.vnet.id,
            "vnetCidr": pulumi.Output.from_input(str(s.vpc_cidr)),
            "gatewaySubnetId": network.vpn_subnet.id,
            "clientLbDnsName": lbs.client_dns_name,
            "adminLbAddress": lbs.admin_public_ip.ip_address,
            "signalingAddress": pulumi.Output.from_input(signaling_address(cidrs[Role.GATEWAY])),
            "redisHost": redis.host,
            HOME_WRITE_ENDPOINT: postgres.write_endpoint,
            "postgresReadEndpoint": postgres.read_endpoint,
            "postgresReplicaId": postgres.replica.id,
            "keyVaultUri": vault.uri,
            "gatewayScaleSetId": gateways.scale_set.id,
            "mediaScaleSetId": media.scale_set.id,
            RECORDING_CONTAINER_URL: pulumi.Output.from_input(recordings.container_url),
        }
        if media_spot is not None:
            self.exports[MEDIA_SPOT_SCALE_SET_ID] = media_spot.scale_set.id
        if postgres.primary is not None:
            self.exports[HOME_SERVER_ID] = postgres.primary.id
            self.exports[HOME_DNS_ZONE] = postgres.dns_zone_name
            self.exports[HOME_DB_PASSWORD] = pulumi.Output.secret(values["dbPassword"])
        self.register_outputs(self.exports)


def azure_region_program(settings: AzureRegionSettings) -> dict[str, pulumi.Output[Any]]:
    """Declare the region's resources with its own provider; return the stack outputs."""
    secrets = configured_secrets()
    if REDIS_KEY in secrets:
        raise SettingsError.one(
            config_key(REDIS_KEY),
            "Azure Cache for Redis generates its own access key; remove this secret",
        )
    provider = azure_native.Provider(f"azure-native-{settings.region}", location=settings.region)
    home = None
    if settings.subscribes and settings.writer_stack is not None:
        writer = pulumi.StackReference(stack_reference_name(settings.writer_stack))
        home = HomeDatabase(
            server_id=None,
            write_endpoint=writer.require_output(HOME_WRITE_ENDPOINT),
            password=writer.require_output(HOME_DB_PASSWORD),
        )
    elif not settings.is_home:
        reference = pulumi.StackReference(stack_reference_name(settings.home_stack))
        home = HomeDatabase(
            server_id=reference.require_output(HOME_SERVER_ID),
            write_endpoint=reference.require_output(HOME_WRITE_ENDPOINT),
            dns_zone_name=reference.require_output(HOME_DNS_ZONE),
            resource_group_name=reference.require_output(HOME_RESOURCE_GROUP),
            password=reference.require_output(HOME_DB_PASSWORD),
        )
    image_id: pulumi.Input[str]
    if settings.image_id is not None:
        image_id = settings.image_id
    else:
        images = pulumi.StackReference(stack_reference_name(settings.image_stack_name))
        image_id = images.require_output(IMAGE_VERSION_ID).apply(str)
    declared = AzureRegion(
        settings.stack,
        AzureRegionArgs(settings=settings, image_id=image_id, secrets=secrets, home=home),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    return declared.exports
