"""One region of the platform on Azure, composed from the blocks of ``infra.azure``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

import pulumi
import pulumi_azure_native as azure_native

from infra import outputs, spec
from infra.azure.certificates import Certificates, CertificatesArgs
from infra.azure.firewall import Firewall, FirewallArgs
from infra.azure.firewall_rules import AZURE_REDIS_TLS_PORT
from infra.azure.key_vault import KeyVault, KeyVaultArgs, secret_name, settings_name
from infra.azure.load_balancers import LoadBalancers, LoadBalancersArgs
from infra.azure.network import Network, NetworkArgs, subnet_cidrs
from infra.azure.node_groups import NodeGroup, NodeGroupArgs
from infra.azure.postgres import ADMIN_USER, DATABASE, Postgres, PostgresArgs
from infra.azure.recordings import RecordingStore, RecordingStoreArgs
from infra.azure.redis import Redis, RedisArgs
from infra.azure.regions import AZURE_SHORT_NAMES
from infra.azure.settings import AzureRegionSettings
from infra.azure.sizes import vm_size
from infra.azure.spot import SPOT_PREFIX_SUFFIX, media_capacity
from infra.peers import room_lookup_url
from infra.recordings import azure_blob_document
from infra.region_program import (
    database_source,
    node_documents,
    node_image,
    peer_gateways,
    region_tags,
    shared_secrets,
)
from infra.scaling import CpuScaling, Drain
from infra.secret_values import configured_secrets, secret_values
from infra.settings_errors import SettingsError, config_key
from infra.spec import Role

# Azure generates the cache's access key; the region reads it instead of setting one.
REDIS_KEY = "redisAuthToken"


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
    # the other regions' gateways, for the gateways' settings (infra.region_program)
    peers: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class DataStores:
    """The region's Redis and Postgres, and the secret values (some come from Redis)."""

    redis: Redis
    postgres: Postgres
    secrets: dict[str, pulumi.Output[str]]


@dataclass
class NodeGroups:
    """The region's gateway and media-node scale sets."""

    gateways: NodeGroup
    media: NodeGroup
    # the spot share of the media nodes (rtcfleet:mediaSpot)
    media_spot: NodeGroup | None = None


class AzureRegion(pulumi.ComponentResource):
    """Resource group, network, NSGs, entry points, data stores, Key Vault and scale sets."""

    exports: dict[str, pulumi.Output[Any]]

    def __init__(
        self, name: str, args: AzureRegionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:Region", name, None, opts)
        settings = args.settings
        self._settings = settings
        self._peers = args.peers
        self._child = pulumi.ResourceOptions(parent=self)
        self._prefix = region_prefix(settings.env, settings.region)
        self._tags = region_tags(settings)
        self._zones = list(settings.availability_zones)
        self._subnet_cidrs, _ = subnet_cidrs(str(settings.vpc_cidr))
        self._client = azure_native.authorization.get_client_config_output(
            opts=pulumi.InvokeOptions(parent=self)
        )

        group = self._resource_group()
        firewall = self._firewall(group)
        network = self._network(group, firewall)
        identities = self._identities(group)
        load_balancers = self._load_balancers(group, network, self._certificates())
        stores = self._data_stores(group, network, args.secrets, args.home)
        recordings = self._recordings(group, network, identities)
        vault = self._key_vault(group, network, stores, identities, recordings)
        groups = self._node_groups(args.image_id, group, network, identities, vault, load_balancers)
        self.exports = self._exports(group, network, load_balancers, stores, vault, groups)
        self.exports[outputs.RECORDING_CONTAINER_URL] = pulumi.Output.from_input(
            recordings.container_url
        )
        if groups.media_spot is not None:
            self.exports[outputs.MEDIA_SPOT_SCALE_SET_ID] = groups.media_spot.scale_set.id
        self.register_outputs(self.exports)

    def _resource_group(self) -> azure_native.resources.ResourceGroup:
        settings = self._settings
        return azure_native.resources.ResourceGroup(
            f"{self._prefix}-rg",
            resource_group_name=f"rtcfleet-{settings.env}-{settings.region}",
            location=settings.region,
            tags=self._tags,
            opts=self._child,
        )

    def _firewall(self, group: azure_native.resources.ResourceGroup) -> Firewall:
        settings = self._settings
        return Firewall(
            f"{self._prefix}-firewall",
            FirewallArgs(
                prefix=self._prefix,
                resource_group_name=group.name,
                location=settings.region,
                subnet_cidrs=self._subnet_cidrs,
                admin_allow_list=[str(cidr) for cidr in settings.admin_allow_list],
                private_cidrs=settings.private_cidrs,
                peered_cidrs=[str(cidr) for cidr in settings.peered_cidrs],
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _network(self, group: azure_native.resources.ResourceGroup, firewall: Firewall) -> Network:
        settings = self._settings
        return Network(
            f"{self._prefix}-network",
            NetworkArgs(
                prefix=self._prefix,
                resource_group_name=group.name,
                location=settings.region,
                cidr=str(settings.vpc_cidr),
                nsg_ids={role: firewall.group_id(role) for role in firewall.groups},
                nat_zone=self._zones[0],
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _identities(
        self, group: azure_native.resources.ResourceGroup
    ) -> dict[Role, azure_native.managedidentity.UserAssignedIdentity]:
        """Each node role's own identity: what its scale set's machines may read."""
        return {
            role: azure_native.managedidentity.UserAssignedIdentity(
                f"{self._prefix}-{role.value}",
                resource_name_=f"{self._prefix}-{role.value}",
                resource_group_name=group.name,
                location=self._settings.region,
                tags={**self._tags, spec.ROLE_TAG: role.value},
                opts=self._child,
            )
            for role in (Role.GATEWAY, Role.MEDIA_NODE)
        }

    def _certificates(self) -> Certificates | None:
        """The public names' certificates, unless the stack names existing secret ids."""
        settings = self._settings
        if settings.certificates is None:
            return None
        return Certificates(
            f"{self._prefix}-certificates",
            CertificatesArgs(
                prefix=self._prefix,
                env=settings.env,
                settings=settings.certificates,
                vault_id=settings.certificate_vault_id,
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _recordings(
        self,
        group: azure_native.resources.ResourceGroup,
        network: Network,
        identities: Mapping[Role, azure_native.managedidentity.UserAssignedIdentity],
    ) -> RecordingStore:
        settings = self._settings
        return RecordingStore(
            f"{self._prefix}-recordings",
            RecordingStoreArgs(
                prefix=self._prefix,
                stack=settings.stack,
                resource_group_name=group.name,
                location=settings.region,
                subscription_id=self._client.subscription_id,
                settings=settings.recordings,
                writer_principal_id=identities[Role.MEDIA_NODE].principal_id,
                writer_subnet_id=network.subnet_id(Role.MEDIA_NODE),
                retain=settings.production,
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _load_balancers(
        self,
        group: azure_native.resources.ResourceGroup,
        network: Network,
        certificates: Certificates | None,
    ) -> LoadBalancers:
        settings = self._settings
        return LoadBalancers(
            f"{self._prefix}-lb",
            LoadBalancersArgs(
                prefix=self._prefix,
                resource_group_name=group.name,
                location=settings.region,
                subscription_id=self._client.subscription_id,
                zones=self._zones,
                client_subnet_id=network.subnet_id(Role.CLIENT_LB),
                admin_subnet_id=network.subnet_id(Role.ADMIN_LB),
                gateway_subnet_id=network.subnet_id(Role.GATEWAY),
                signaling_address=self._signaling_address,
                certificate=(
                    certificates.secret_id("client") if certificates else str(settings.certificate)
                ),
                admin_certificate=(
                    certificates.secret_id("admin")
                    if certificates
                    else str(settings.admin_certificate or settings.certificate)
                ),
                certificate_vault_id=settings.certificate_vault_id,
                dns_label=f"rtcfleet-{self._prefix}",
                tags=self._tags,
            ),
            opts=self._child,
        )

    @property
    def _signaling_address(self) -> str:
        return signaling_address(self._subnet_cidrs[Role.GATEWAY])

    def _data_stores(
        self,
        group: azure_native.resources.ResourceGroup,
        network: Network,
        configured: Mapping[str, pulumi.Input[str]],
        home: HomeDatabase | None,
    ) -> DataStores:
        settings = self._settings
        redis = Redis(
            f"{self._prefix}-redis",
            RedisArgs(
                prefix=self._prefix,
                stack=settings.stack,
                resource_group_name=group.name,
                location=settings.region,
                capacity=settings.redis_capacity or int(vm_size(Role.REDIS, settings.redis_size)),
                replicas=settings.redis_replicas,
                zones=self._zones,
                subnet_id=network.subnet_id(Role.REDIS),
                vnet_id=network.vnet.id,
                redis_version=settings.redis_version,
                tags=self._tags,
            ),
            opts=self._child,
        )
        provided = dict(configured)
        if home is not None:
            provided["dbPassword"] = home.password
        secrets = secret_values(
            self._prefix,
            provided,
            parent=self,
            names=[n for n in spec.SECRET_NAMES if n != REDIS_KEY],
        )
        secrets[REDIS_KEY] = redis.access_key
        writer = settings.is_home or settings.subscribes
        postgres = Postgres(
            f"{self._prefix}-postgres",
            PostgresArgs(
                prefix=self._prefix,
                stack=settings.stack,
                resource_group_name=group.name,
                location=settings.region,
                home=settings.is_home,
                subscriber=settings.subscribes,
                writer_stack=settings.writer_stack,
                sku=vm_size(Role.POSTGRES, settings.postgres_size, settings.postgres_sku),
                zones=self._zones,
                subnet_id=network.subnet_id(Role.POSTGRES),
                vnet_id=network.vnet.id,
                storage_gb=settings.postgres_storage_gb,
                backup_days=settings.postgres_backup_days,
                version=settings.postgres_version,
                production=settings.production,
                password=secrets["dbPassword"] if writer else None,
                source_server_id=home.server_id if home else None,
                source_endpoint=home.write_endpoint if home else None,
                source_dns_zone=(
                    (home.dns_zone_name, home.resource_group_name)
                    if home is not None
                    and home.dns_zone_name is not None
                    and home.resource_group_name is not None
                    else None
                ),
                tags=self._tags,
            ),
            opts=self._child,
        )
        return DataStores(redis, postgres, secrets)

    def _key_vault(
        self,
        group: azure_native.resources.ResourceGroup,
        network: Network,
        stores: DataStores,
        identities: Mapping[Role, azure_native.managedidentity.UserAssignedIdentity],
        recordings: RecordingStore,
    ) -> KeyVault:
        """The secrets and each role's settings document, readable by that role alone."""
        settings = self._settings
        documents = node_documents(
            settings,
            redis={"host": stores.redis.host, "port": AZURE_REDIS_TLS_PORT, "tls": True},
            postgres={
                "readHost": stores.postgres.read_endpoint,
                "port": spec.POSTGRES_PORT,
                "database": DATABASE,
                "user": ADMIN_USER,
            },
            write_host=stores.postgres.write_endpoint,
            signaling_url=(
                f"http://{self._signaling_address}:"
                f"{spec.CLIENT_SIGNALING_PORT}{spec.INTERNAL_PATH_PREFIX}"
            ),
            recording=azure_blob_document(recordings.container_url),
            peers=self._peers,
        )
        return KeyVault(
            f"{self._prefix}-vault",
            KeyVaultArgs(
                prefix=self._prefix,
                stack=settings.stack,
                resource_group_name=group.name,
                location=settings.region,
                tenant_id=self._client.tenant_id,
                subscription_id=self._client.subscription_id,
                subnet_ids=[network.subnet_id(Role.GATEWAY), network.subnet_id(Role.MEDIA_NODE)],
                values=stores.secrets,
                documents=documents,
                readers={role: identity.principal_id for role, identity in identities.items()},
                production=settings.production,
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _node_groups(
        self,
        image_id: pulumi.Input[str],
        group: azure_native.resources.ResourceGroup,
        network: Network,
        identities: Mapping[Role, azure_native.managedidentity.UserAssignedIdentity],
        vault: KeyVault,
        load_balancers: LoadBalancers,
    ) -> NodeGroups:
        settings = self._settings

        def group_args(role: Role, **kwargs: Any) -> NodeGroupArgs:
            return NodeGroupArgs(
                prefix=self._prefix,
                role=role,
                env=settings.env,
                region=settings.region,
                resource_group_name=group.name,
                location=settings.region,
                subscription_id=self._client.subscription_id,
                zones=self._zones,
                subnet_id=network.subnet_id(role),
                image_id=image_id,
                identity_id=identities[role].id,
                identity_client_id=identities[role].client_id,
                identity_principal_id=identities[role].principal_id,
                vault_uri=vault.uri,
                vault_name=vault.name,
                secret_name=secret_name(role),
                settings_name=settings_name(role),
                ssh_public_key=settings.node_ssh_public_key,
                tags=self._tags,
                **kwargs,
            )

        after_load_balancers = pulumi.ResourceOptions(parent=self, depends_on=[load_balancers])
        gateways = NodeGroup(
            f"{self._prefix}-gateways",
            group_args(
                Role.GATEWAY,
                vm_size=vm_size(Role.GATEWAY, settings.gateway_size, settings.gateway_vm_size),
                min_size=settings.gateway_count,
                max_size=settings.gateway_max,
                app_gateway_pools=load_balancers.gateway_app_pools,
                load_balancer_pools=load_balancers.gateway_lb_pools,
            ),
            opts=after_load_balancers,
        )
        regular, spot = media_capacity(settings.media_min, settings.media_max, settings.media_spot)
        media = NodeGroup(
            f"{self._prefix}-media",
            group_args(
                Role.MEDIA_NODE,
                vm_size=vm_size(Role.MEDIA_NODE, settings.media_size, settings.media_vm_size),
                min_size=regular.minimum,
                max_size=regular.maximum,
                public_ip=True,
                scaling=CpuScaling(settings.media_cpu_target, settings.media_warmup_seconds),
                drain=Drain(settings.drain_timeout_seconds),
            ),
            opts=after_load_balancers,
        )
        media_spot = None
        if spot is not None and settings.media_spot is not None:
            # the spot share: a scale set of its own (infra/azure/spot.py says why)
            media_spot = NodeGroup(
                f"{self._prefix}-media-{SPOT_PREFIX_SUFFIX}",
                dataclasses.replace(
                    group_args(
                        Role.MEDIA_NODE,
                        vm_size=settings.media_spot.instance_types[0],
                        min_size=spot.minimum,
                        max_size=spot.maximum,
                        public_ip=True,
                        scaling=CpuScaling(
                            settings.media_cpu_target, settings.media_warmup_seconds
                        ),
                        drain=Drain(settings.drain_timeout_seconds),
                        spot=True,
                    ),
                    prefix=f"{self._prefix}-{SPOT_PREFIX_SUFFIX}",
                ),
                opts=after_load_balancers,
            )
        return NodeGroups(gateways, media, media_spot)

    def _exports(
        self,
        group: azure_native.resources.ResourceGroup,
        network: Network,
        load_balancers: LoadBalancers,
        stores: DataStores,
        vault: KeyVault,
        groups: NodeGroups,
    ) -> dict[str, pulumi.Output[Any]]:
        settings = self._settings
        exports = {
            outputs.REGION: pulumi.Output.from_input(settings.region),
            outputs.LOCATION: pulumi.Output.from_input(settings.region),
            outputs.RESOURCE_GROUP_NAME: group.name,
            outputs.VNET_ID: network.vnet.id,
            outputs.VNET_CIDR: pulumi.Output.from_input(str(settings.vpc_cidr)),
            outputs.GATEWAY_SUBNET_ID: network.vpn_subnet.id,
            outputs.CLIENT_LB_DNS_NAME: load_balancers.client_dns_name,
            outputs.ADMIN_LB_ADDRESS: load_balancers.admin_public_ip.ip_address,
            outputs.SIGNALING_ADDRESS: pulumi.Output.from_input(self._signaling_address),
            outputs.ROOM_LOOKUP_URL: pulumi.Output.from_input(
                room_lookup_url(self._signaling_address)
            ),
            outputs.REDIS_HOST: stores.redis.host,
            outputs.POSTGRES_WRITE_ENDPOINT: stores.postgres.write_endpoint,
            outputs.POSTGRES_READ_ENDPOINT: stores.postgres.read_endpoint,
            outputs.POSTGRES_REPLICA_ID: stores.postgres.replica.id,
            outputs.KEY_VAULT_URI: vault.uri,
            outputs.GATEWAY_SCALE_SET_ID: groups.gateways.scale_set.id,
            outputs.MEDIA_SCALE_SET_ID: groups.media.scale_set.id,
        }
        if stores.postgres.primary is not None:
            exports[outputs.POSTGRES_SERVER_ID] = stores.postgres.primary.id
            exports[outputs.POSTGRES_DNS_ZONE_NAME] = stores.postgres.dns_zone_name
            exports[outputs.DB_PASSWORD] = pulumi.Output.secret(stores.secrets["dbPassword"])
            exports[outputs.CLUSTER_SECRET] = pulumi.Output.secret(
                stores.secrets[outputs.CLUSTER_SECRET]
            )
        if settings.signaling_url is not None:
            exports[outputs.SIGNALING_URL] = pulumi.Output.from_input(settings.signaling_url)
        return exports


def azure_region_program(settings: AzureRegionSettings) -> dict[str, pulumi.Output[Any]]:
    """Declare the region's resources with its own provider; return the stack outputs."""
    secrets = configured_secrets()
    if REDIS_KEY in secrets:
        raise SettingsError.one(
            config_key(REDIS_KEY),
            "Azure Cache for Redis generates its own access key; remove this secret",
        )
    provider = azure_native.Provider(f"azure-native-{settings.region}", location=settings.region)
    source = database_source(settings)
    home = None
    if source is not None and settings.subscribes:
        # the environment's writer in another cloud: no server to replicate, no zone to link
        home = HomeDatabase(
            server_id=None,
            write_endpoint=source.require_output(outputs.POSTGRES_WRITE_ENDPOINT),
            password=source.require_output(outputs.DB_PASSWORD),
        )
    elif source is not None:
        home = HomeDatabase(
            server_id=source.require_output(outputs.POSTGRES_SERVER_ID),
            write_endpoint=source.require_output(outputs.POSTGRES_WRITE_ENDPOINT),
            dns_zone_name=source.require_output(outputs.POSTGRES_DNS_ZONE_NAME),
            resource_group_name=source.require_output(outputs.RESOURCE_GROUP_NAME),
            password=source.require_output(outputs.DB_PASSWORD),
        )
    image_id = node_image(
        settings, lambda images: images.require_output(outputs.IMAGE_VERSION_ID).apply(str)
    )
    declared = AzureRegion(
        settings.stack,
        AzureRegionArgs(
            settings=settings,
            image_id=image_id,
            secrets={**shared_secrets(source), **secrets},
            home=home,
            peers=peer_gateways(settings, source),
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    return declared.exports
