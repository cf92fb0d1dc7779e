"""One region of the platform on AWS, composed from the blocks of ``infra.aws``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import outputs, spec
from infra.aws.certificates import Certificates, CertificatesArgs
from infra.aws.firewall import Firewall, FirewallArgs
from infra.aws.load_balancers import LoadBalancers, LoadBalancersArgs
from infra.aws.network import Network, NetworkArgs
from infra.aws.node_groups import NodeGroup, NodeGroupArgs
from infra.aws.node_settings import NodeSettings, NodeSettingsArgs, parameter_name
from infra.aws.postgres import DATABASE, MASTER_USER, Postgres, PostgresArgs
from infra.aws.recordings import RecordingStore, RecordingStoreArgs
from infra.aws.redis import Redis, RedisArgs
from infra.aws.secrets import Secrets, SecretsArgs
from infra.aws.settings import AwsRegionSettings
from infra.aws.sizes import instance_type
from infra.peers import room_lookup_url
from infra.recordings import s3_document
from infra.region_program import (
    database_source,
    node_documents,
    node_image,
    peer_gateways,
    region_tags,
    shared_secrets,
)
from infra.scaling import CpuScaling, Drain
from infra.secret_values import configured_secrets
from infra.spec import Role


def short_region(region: str) -> str:
    """``us-east-1`` -> ``use1``: keeps load balancer and target group names under 32 chars."""
    area, *middle, number = region.split("-")
    return area + "".join(word[0] for word in middle) + number


@dataclass
class HomeDatabase:
    """What a non-home region needs from the home region's stack."""

    primary_arn: pulumi.Input[str]
    write_endpoint: pulumi.Input[str]
    password: pulumi.Input[str]


@dataclass
class AwsRegionArgs:
    settings: AwsRegionSettings
    image_id: pulumi.Input[str]
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    home: HomeDatabase | None = None
    # the other regions' gateways, for the gateways' settings (infra.region_program)
    peers: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class DataStores:
    """The region's Redis and Postgres."""

    redis: Redis
    postgres: Postgres


@dataclass
class NodeGroups:
    """The region's gateway and media-node groups."""

    gateways: NodeGroup
    media: NodeGroup


class AwsRegion(pulumi.ComponentResource):
    """Network, firewall, load balancers, data stores, secrets and node groups of one region."""

    exports: dict[str, pulumi.Output[Any]]

    def __init__(
        self, name: str, args: AwsRegionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:Region", name, None, opts)
        self._settings = args.settings
        self._child = pulumi.ResourceOptions(parent=self)
        self._prefix = f"{args.settings.env}-{short_region(args.settings.region)}"
        self._tags = region_tags(args.settings)
        self._peers = args.peers

        network = self._network()
        firewall = self._firewall(network)
        secrets = self._secrets(args.secrets, args.home)
        load_balancers = self._load_balancers(network, firewall, self._certificates())
        stores = self._data_stores(network, firewall, secrets, args.home)
        recordings = self._recordings()
        node_settings = self._node_settings(stores, load_balancers, recordings)
        groups = self._node_groups(
            args.image_id, network, firewall, secrets, node_settings, load_balancers
        )
        recordings.grant_writer(groups.media.role, network.s3_endpoint.id)
        self.exports = self._exports(network, load_balancers, stores, groups, secrets)
        self.exports[outputs.RECORDING_BUCKET] = recordings.name
        self.register_outputs(self.exports)

    def _network(self) -> Network:
        settings = self._settings
        return Network(
            f"{self._prefix}-network",
            NetworkArgs(
                prefix=self._prefix,
                cidr=str(settings.vpc_cidr),
                availability_zones=list(settings.availability_zones),
                region=settings.region,
                nat_per_az=settings.nat_per_az,
                peer_cidrs=[str(cidr) for cidr in settings.peered_cidrs],
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _firewall(self, network: Network) -> Firewall:
        settings = self._settings
        return Firewall(
            f"{self._prefix}-firewall",
            FirewallArgs(
                prefix=self._prefix,
                vpc_id=network.vpc.id,
                vpc_cidr=str(settings.vpc_cidr),
                admin_allow_list=[str(cidr) for cidr in settings.admin_allow_list],
                private_cidrs=settings.private_cidrs,
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _secrets(
        self, configured: Mapping[str, pulumi.Input[str]], home: HomeDatabase | None
    ) -> Secrets:
        settings = self._settings
        provided = dict(configured)
        if home is not None:
            provided["dbPassword"] = home.password
        return Secrets(
            f"{self._prefix}-secrets",
            SecretsArgs(
                prefix=self._prefix,
                env=settings.env,
                region=settings.region,
                provided=provided,
                recovery_window_days=30 if settings.production else 0,
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _certificates(self) -> Certificates | None:
        """The public names' certificates, unless the stack names an existing ARN."""
        settings = self._settings
        if settings.certificates is None:
            return None
        return Certificates(
            f"{self._prefix}-certificates",
            CertificatesArgs(
                prefix=self._prefix,
                env=settings.env,
                settings=settings.certificates,
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _recordings(self) -> RecordingStore:
        settings = self._settings
        return RecordingStore(
            f"{self._prefix}-recordings",
            RecordingStoreArgs(
                prefix=self._prefix,
                env=settings.env,
                region=settings.region,
                settings=settings.recordings,
                retain=settings.production,
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _load_balancers(
        self, network: Network, firewall: Firewall, certificates: Certificates | None
    ) -> LoadBalancers:
        settings = self._settings
        return LoadBalancers(
            f"{self._prefix}-lb",
            LoadBalancersArgs(
                prefix=self._prefix,
                vpc_id=network.vpc.id,
                public_subnet_ids=network.public_subnet_ids,
                private_subnet_ids=network.private_subnet_ids,
                client_security_group_id=firewall.group_id(Role.CLIENT_LB),
                admin_security_group_id=firewall.group_id(Role.ADMIN_LB),
                signaling_security_group_id=firewall.group_id(Role.SIGNALING_LB),
                certificate_arn=(
                    certificates.arn("client") if certificates else str(settings.certificate)
                ),
                admin_certificate_arn=(
                    certificates.arn("admin")
                    if certificates
                    else str(settings.admin_certificate or settings.certificate)
                ),
                deletion_protection=settings.production,
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _data_stores(
        self, network: Network, firewall: Firewall, secrets: Secrets, home: HomeDatabase | None
    ) -> DataStores:
        settings = self._settings
        redis = Redis(
            f"{self._prefix}-redis",
            RedisArgs(
                prefix=self._prefix,
                node_type=instance_type(Role.REDIS, settings.redis_size, settings.redis_node_type),
                replicas=settings.redis_replicas,
                availability_zones=list(settings.availability_zones),
                subnet_ids=network.private_subnet_ids,
                security_group_id=firewall.group_id(Role.REDIS),
                auth_token=secrets.values["redisAuthToken"],
                engine_version=settings.redis_engine_version,
                snapshot_retention_days=7 if settings.production else 1,
                tags=self._tags,
            ),
            opts=self._child,
        )
        postgres = Postgres(
            f"{self._prefix}-postgres",
            PostgresArgs(
                prefix=self._prefix,
                home=settings.is_home,
                instance_class=instance_type(
                    Role.POSTGRES, settings.postgres_size, settings.postgres_instance_class
                ),
                subnet_ids=network.private_subnet_ids,
                security_group_id=firewall.group_id(Role.POSTGRES),
                storage_gb=settings.postgres_storage_gb,
                backup_days=settings.postgres_backup_days,
                engine_version=settings.postgres_engine_version,
                production=settings.production,
                password=secrets.values["dbPassword"] if settings.is_home else None,
                source_arn=home.primary_arn if home else None,
                source_endpoint=home.write_endpoint if home else None,
                tags=self._tags,
            ),
            opts=self._child,
        )
        return DataStores(redis, postgres)

    def _node_settings(
        self, stores: DataStores, load_balancers: LoadBalancers, recordings: RecordingStore
    ) -> NodeSettings:
        settings = self._settings
        signaling_url = pulumi.Output.concat(
            "http://",
            load_balancers.signaling.dns_name,
            f":{spec.CLIENT_SIGNALING_PORT}{spec.INTERNAL_PATH_PREFIX}",
        )
        documents = node_documents(
            settings,
            redis={"host": stores.redis.endpoint, "port": spec.REDIS_PORT, "tls": True},
            postgres={
                "readHost": stores.postgres.read_endpoint,
                "port": spec.POSTGRES_PORT,
                "database": DATABASE,
                "user": MASTER_USER,
            },
            write_host=stores.postgres.write_endpoint,
            signaling_url=signaling_url,
            recording=s3_document(recordings.name, settings.region),
            peers=self._peers,
        )
        return NodeSettings(
            f"{self._prefix}-node-settings",
            NodeSettingsArgs(
                prefix=self._prefix,
                env=settings.env,
                region=settings.region,
                documents=documents,
                tags=self._tags,
            ),
            opts=self._child,
        )

    def _node_groups(
        self,
        image_id: pulumi.Input[str],
        network: Network,
        firewall: Firewall,
        secrets: Secrets,
        node_settings: NodeSettings,
        load_balancers: LoadBalancers,
    ) -> NodeGroups:
        settings = self._settings

        def group_args(role: Role, **kwargs: Any) -> NodeGroupArgs:
            return NodeGroupArgs(
                prefix=self._prefix,
                role=role,
                env=settings.env,
                region=settings.region,
                image_id=image_id,
                security_group_id=firewall.group_id(role),
                secret_arn=secrets.arn(role),
                settings_parameter_arn=node_settings.parameters[role].arn,
                settings_parameter_name=parameter_name(settings.env, settings.region, role),
                tags=self._tags,
                **kwargs,
            )

        gateways = NodeGroup(
            f"{self._prefix}-gateways",
            group_args(
                Role.GATEWAY,
                instance_type=instance_type(
                    Role.GATEWAY, settings.gateway_size, settings.gateway_instance_type
                ),
                subnet_ids=network.private_subnet_ids,
                min_size=settings.gateway_count,
                max_size=settings.gateway_max,
                target_group_arns=[tg.arn for tg in load_balancers.gateway_target_groups],
            ),
            opts=self._child,
        )
        media = NodeGroup(
            f"{self._prefix}-media",
            group_args(
                Role.MEDIA_NODE,
                instance_type=instance_type(
                    Role.MEDIA_NODE, settings.media_size, settings.media_instance_type
                ),
                subnet_ids=network.public_subnet_ids,
                public_ip=True,
                min_size=settings.media_min,
                max_size=settings.media_max,
                scaling=CpuScaling(settings.media_cpu_target, settings.media_warmup_seconds),
                drain=Drain(settings.drain_timeout_seconds),
                spot=settings.media_spot,
            ),
            opts=self._child,
        )
        return NodeGroups(gateways, media)

    def _exports(
        self,
        network: Network,
        load_balancers: LoadBalancers,
        stores: DataStores,
        groups: NodeGroups,
        secrets: Secrets,
    ) -> dict[str, pulumi.Output[Any]]:
        settings = self._settings
        exports = {
            outputs.REGION: pulumi.Output.from_input(settings.region),
            outputs.VPC_ID: network.vpc.id,
            outputs.VPC_CIDR: pulumi.Output.from_input(str(settings.vpc_cidr)),
            outputs.PEERED_CIDRS: pulumi.Output.from_input(
                [str(cidr) for cidr in settings.peered_cidrs]
            ),
            outputs.PRIVATE_SUBNET_IDS: pulumi.Output.all(*network.private_subnet_ids),
            outputs.CLIENT_LB_DNS_NAME: load_balancers.client.dns_name,
            outputs.ADMIN_LB_DNS_NAME: load_balancers.admin.dns_name,
            outputs.SIGNALING_LB_DNS_NAME: load_balancers.signaling.dns_name,
            outputs.ROOM_LOOKUP_URL: load_balancers.signaling.dns_name.apply(room_lookup_url),
            outputs.REDIS_ENDPOINT: stores.redis.endpoint,
            outputs.POSTGRES_WRITE_ENDPOINT: stores.postgres.write_endpoint,
            outputs.POSTGRES_READ_ENDPOINT: stores.postgres.read_endpoint,
            outputs.POSTGRES_REPLICA_ARN: stores.postgres.replica.arn,
            outputs.GATEWAY_GROUP_NAME: groups.gateways.group.name,
            outputs.MEDIA_GROUP_NAME: groups.media.group.name,
        }
        if network.transit_gateway is not None:
            exports[outputs.TRANSIT_GATEWAY_ID] = network.transit_gateway.id
            exports[outputs.TRANSIT_ROUTE_TABLE_ID] = (
                network.transit_gateway.association_default_route_table_id
            )
        if stores.postgres.primary is not None:
            exports[outputs.POSTGRES_PRIMARY_ARN] = stores.postgres.primary.arn
            exports[outputs.DB_PASSWORD] = pulumi.Output.secret(secrets.values["dbPassword"])
            exports[outputs.CLUSTER_SECRET] = pulumi.Output.secret(
                secrets.values[outputs.CLUSTER_SECRET]
            )
        if settings.signaling_url is not None:
            exports[outputs.SIGNALING_URL] = pulumi.Output.from_input(settings.signaling_url)
        return exports


def aws_region_program(settings: AwsRegionSettings) -> dict[str, pulumi.Output[Any]]:
    """Declare the region's resources with its own provider; return the stack outputs."""
    provider = aws.Provider(
        f"aws-{settings.region}",
        region=settings.region,
        default_tags=aws.ProviderDefaultTagsArgs(
            tags={"rtcfleet:stack": settings.stack, "rtcfleet:managed-by": "pulumi"}
        ),
    )
    source = database_source(settings)
    home = None
    if source is not None:
        home = HomeDatabase(
            primary_arn=source.require_output(outputs.POSTGRES_PRIMARY_ARN),
            write_endpoint=source.require_output(outputs.POSTGRES_WRITE_ENDPOINT),
            password=source.require_output(outputs.DB_PASSWORD),
        )
    region = settings.region
    image_id = node_image(
        settings,
        lambda images: images.require_output(outputs.IMAGE_IDS).apply(lambda ids: str(ids[region])),
    )
    declared = AwsRegion(
        settings.stack,
        AwsRegionArgs(
            settings=settings,
            image_id=image_id,
            secrets={**shared_secrets(source), **configured_secrets()},
            home=home,
            peers=peer_gateways(settings, source),
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    return declared.exports
