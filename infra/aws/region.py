"""One region of the platform on AWS, composed from the blocks of ``infra.aws``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import spec
from infra.aws.certificates import Certificates, CertificatesArgs
from infra.aws.firewall import Firewall, FirewallArgs
from infra.aws.load_balancers import LoadBalancers, LoadBalancersArgs
from infra.aws.network import Network, NetworkArgs
from infra.aws.node_groups import CpuScaling, Drain, NodeGroup, NodeGroupArgs
from infra.aws.node_settings import NodeSettings, NodeSettingsArgs, parameter_name
from infra.aws.postgres import DATABASE, MASTER_USER, Postgres, PostgresArgs
from infra.aws.recordings import RecordingStore, RecordingStoreArgs
from infra.aws.redis import Redis, RedisArgs
from infra.aws.secrets import Secrets, SecretsArgs
from infra.aws.sizes import instance_type
from infra.recordings import RECORDING_DOCUMENT, s3_document
from infra.references import stack_reference_name
from infra.secret_values import configured_secrets
from infra.settings import AwsRegionSettings
from infra.spec import Role

# Outputs of the home region's stack that the other regions read.
HOME_PRIMARY_ARN = "postgresPrimaryArn"
HOME_WRITE_ENDPOINT = "postgresWriteEndpoint"
HOME_DB_PASSWORD = "dbPassword"
# Output of the image stack: AMI id per region.
IMAGE_IDS = "imageIds"
# Outputs the global stack reads: DNS targets and the region's end of the private network.
CLIENT_LB_DNS_NAME = "clientLbDnsName"
VPC_CIDR = "vpcCidr"
PEERED_CIDRS = "peeredCidrs"
TRANSIT_GATEWAY_ID = "transitGatewayId"
TRANSIT_ROUTE_TABLE_ID = "transitGatewayRouteTableId"
# Where the region's media nodes upload recordings.
RECORDING_BUCKET = "recordingBucket"


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


class AwsRegion(pulumi.ComponentResource):
    """Network, firewall, load balancers, data stores, secrets and node groups of one region."""

    exports: dict[str, pulumi.Output[Any]]

    def __init__(
        self, name: str, args: AwsRegionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:Region", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"{s.env}-{short_region(s.region)}"
        tags = {"rtcfleet:env": s.env, "rtcfleet:region": s.region, "rtcfleet:stack": s.stack}

        network = Network(
            f"{prefix}-network",
            NetworkArgs(
                prefix=prefix,
                cidr=str(s.vpc_cidr),
                availability_zones=list(s.availability_zones),
                nat_per_az=s.nat_per_az,
                peer_cidrs=[str(cidr) for cidr in s.peered_cidrs],
                tags=tags,
            ),
            opts=child,
        )
        firewall = Firewall(
            f"{prefix}-firewall",
            FirewallArgs(
                prefix=prefix,
                vpc_id=network.vpc.id,
                vpc_cidr=str(s.vpc_cidr),
                admin_allow_list=[str(cidr) for cidr in s.admin_allow_list],
                private_cidrs=s.private_cidrs,
                tags=tags,
            ),
            opts=child,
        )
        provided = dict(args.secrets)
        if args.home is not None:
            provided[HOME_DB_PASSWORD] = args.home.password
        secrets = Secrets(
            f"{prefix}-secrets",
            SecretsArgs(
                prefix=prefix,
                env=s.env,
                region=s.region,
                provided=provided,
                recovery_window_days=30 if s.production else 0,
                tags=tags,
            ),
            opts=child,
        )
        certificates = (
            Certificates(
                f"{prefix}-certificates",
                CertificatesArgs(prefix=prefix, env=s.env, settings=s.certificates, tags=tags),
                opts=child,
            )
            if s.certificates is not None
            else None
        )
        lbs = LoadBalancers(
            f"{prefix}-lb",
            LoadBalancersArgs(
                prefix=prefix,
                vpc_id=network.vpc.id,
                public_subnet_ids=network.public_subnet_ids,
                private_subnet_ids=network.private_subnet_ids,
                client_security_group_id=firewall.group_id(Role.CLIENT_LB),
                admin_security_group_id=firewall.group_id(Role.ADMIN_LB),
                signaling_security_group_id=firewall.group_id(Role.SIGNALING_LB),
                certificate_arn=certificates.arn("client") if certificates else str(s.certificate),
                admin_certificate_arn=(
                    certificates.arn("admin")
                    if certificates
                    else str(s.admin_certificate or s.certificate)
                ),
                deletion_protection=s.production,
                tags=tags,
            ),
            opts=child,
        )
        redis = Redis(
            f"{prefix}-redis",
            RedisArgs(
                prefix=prefix,
                node_type=instance_type(Role.REDIS, s.redis_size, s.redis_node_type),
                replicas=s.redis_replicas,
                availability_zones=list(s.availability_zones),
                subnet_ids=network.private_subnet_ids,
                security_group_id=firewall.group_id(Role.REDIS),
                auth_token=secrets.values["redisAuthToken"],
                engine_version=s.redis_engine_version,
                snapshot_retention_days=7 if s.production else 1,
                tags=tags,
            ),
            opts=child,
        )
        postgres = Postgres(
            f"{prefix}-postgres",
            PostgresArgs(
                prefix=prefix,
                home=s.is_home,
                instance_class=instance_type(
                    Role.POSTGRES, s.postgres_size, s.postgres_instance_class
                ),
                subnet_ids=network.private_subnet_ids,
                security_group_id=firewall.group_id(Role.POSTGRES),
                storage_gb=s.postgres_storage_gb,
                backup_days=s.postgres_backup_days,
                engine_version=s.postgres_engine_version,
                production=s.production,
                password=secrets.values["dbPassword"] if s.is_home else None,
                source_arn=args.home.primary_arn if args.home else None,
                source_endpoint=args.home.write_endpoint if args.home else None,
                tags=tags,
            ),
            opts=child,
        )

        recordings = RecordingStore(
            f"{prefix}-recordings",
            RecordingStoreArgs(
                prefix=prefix,
                env=s.env,
                region=s.region,
                settings=s.recordings,
                retain=s.production,
                tags=tags,
            ),
            opts=child,
        )
        redis_doc = {"host": redis.endpoint, "port": spec.REDIS_PORT, "tls": True}
        postgres_doc = {
            "readHost": postgres.read_endpoint,
            "port": spec.POSTGRES_PORT,
            "database": DATABASE,
            "user": MASTER_USER,
        }
        signaling_url = pulumi.Output.concat(
            "http://",
            lbs.signaling.dns_name,
            f":{spec.CLIENT_SIGNALING_PORT}{spec.INTERNAL_PATH_PREFIX}",
        )
        node_settings = NodeSettings(
            f"{prefix}-node-settings",
            NodeSettingsArgs(
                prefix=prefix,
                env=s.env,
                region=s.region,
                documents={
                    Role.GATEWAY: {
                        "env": s.env,
                        "region": s.region,
                        "homeRegion": s.home_region,
                        "redis": redis_doc,
                        "postgres": {**postgres_doc, "writeHost": postgres.write_endpoint},
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
                        RECORDING_DOCUMENT: s3_document(recordings.name, s.region),
                    },
                },
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
                image_id=args.image_id,
                security_group_id=firewall.group_id(role),
                secret_arn=secrets.arn(role),
                settings_parameter_arn=node_settings.parameters[role].arn,
                settings_parameter_name=parameter_name(s.env, s.region, role),
                tags=tags,
                **kwargs,
            )

        gateways = NodeGroup(
            f"{prefix}-gateways",
            group_args(
                Role.GATEWAY,
                instance_type=instance_type(Role.GATEWAY, s.gateway_size, s.gateway_instance_type),
                subnet_ids=network.private_subnet_ids,
                min_size=s.gateway_count,
                max_size=s.gateway_max,
                target_group_arns=[tg.arn for tg in lbs.gateway_target_groups],
            ),
            opts=child,
        )
        media = NodeGroup(
            f"{prefix}-media",
            group_args(
                Role.MEDIA_NODE,
                instance_type=instance_type(Role.MEDIA_NODE, s.media_size, s.media_instance_type),
                subnet_ids=network.public_subnet_ids,
                public_ip=True,
                min_size=s.media_min,
                max_size=s.media_max,
                scaling=CpuScaling(s.media_cpu_target, s.media_warmup_seconds),
                drain=Drain(spec.LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS, s.drain_timeout_seconds),
                spot=s.media_spot,
            ),
            opts=child,
        )
        recordings.grant_writer(media.role)

        self.exports = {
            "region": pulumi.Output.from_input(s.region),
            "vpcId": network.vpc.id,
            VPC_CIDR: pulumi.Output.from_input(str(s.vpc_cidr)),
            PEERED_CIDRS: pulumi.Output.from_input([str(cidr) for cidr in s.peered_cidrs]),
            "privateSubnetIds": pulumi.Output.all(*network.private_subnet_ids),
            CLIENT_LB_DNS_NAME: lbs.client.dns_name,
            "adminLbDnsName": lbs.admin.dns_name,
            "signalingLbDnsName": lbs.signaling.dns_name,
            "redisEndpoint": redis.endpoint,
            HOME_WRITE_ENDPOINT: postgres.write_endpoint,
            "postgresReadEndpoint": postgres.read_endpoint,
            "postgresReplicaArn": postgres.replica.arn,
            "gatewayGroupName": gateways.group.name,
            "mediaGroupName": media.group.name,
            RECORDING_BUCKET: recordings.name,
        }
        if network.transit_gateway is not None:
            self.exports[TRANSIT_GATEWAY_ID] = network.transit_gateway.id
            self.exports[TRANSIT_ROUTE_TABLE_ID] = (
                network.transit_gateway.association_default_route_table_id
            )
        if postgres.primary is not None:
            self.exports[HOME_PRIMARY_ARN] = postgres.primary.arn
            self.exports[HOME_DB_PASSWORD] = pulumi.Output.secret(secrets.values["dbPassword"])
        self.register_outputs(self.exports)


def aws_region_program(settings: AwsRegionSettings) -> dict[str, pulumi.Output[Any]]:
    """Declare the region's resources with its own provider; return the stack outputs."""
    provider = aws.Provider(
        f"aws-{settings.region}",
        region=settings.region,
        default_tags=aws.ProviderDefaultTagsArgs(
            tags={"rtcfleet:stack": settings.stack, "rtcfleet:managed-by": "pulumi"}
        ),
    )
    home = None
    if not settings.is_home:
        reference = pulumi.StackReference(stack_reference_name(settings.home_stack))
        home = HomeDatabase(
            primary_arn=reference.require_output(HOME_PRIMARY_ARN),
            write_endpoint=reference.require_output(HOME_WRITE_ENDPOINT),
            password=reference.require_output(HOME_DB_PASSWORD),
        )
    image_id: pulumi.Input[str]
    if settings.image_id is not None:
        image_id = settings.image_id
    else:
        images = pulumi.StackReference(stack_reference_name(settings.image_stack_name))
        region = settings.region
        image_id = images.require_output(IMAGE_IDS).apply(lambda ids: str(ids[region]))
    declared = AwsRegion(
        settings.stack,
        AwsRegionArgs(
            settings=settings, image_id=image_id, secrets=configured_secrets(), home=home
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    return declared.exports
