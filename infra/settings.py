"""The cloud-neutral settings of one region stack, read from the stack's Pulumi config.

Every error names the config key as written in ``stacks/Pulumi.<stack>.yaml`` (for example
``rtcfleet:adminAllowList``) so an operator can fix the file without reading the code. The
cloud-neutral fields sit in ``RegionSettings``; each cloud subclasses it with its own terms
(``infra.aws.settings``, ``infra.azure.settings``), and ``infra.stack_settings`` picks the
model a stack's name calls for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from typing import ClassVar

from pydantic import Field, field_validator

from infra import spec
from infra.certificates import CertificateSettings, certificate_problems
from infra.peers import peer_stack_problems, signaling_url_problem
from infra.recordings import RecordingSettings
from infra.settings_errors import SettingsError, config_key
from infra.spot import SpotSettings, spot_problems
from infra.stack_config import StackConfigModel
from infra.stack_names import image_stack_name
from infra.traces import endpoint_problem

CLOUDS = ("aws", "azure")
# Read from the stack name, never from the file: one source of truth for where a stack deploys.
DERIVED_KEYS = ("env", "cloud", "region")
_ENV = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_PRIVATE_RANGES = tuple(IPv4Network(cidr) for cidr in spec.PRIVATE_RANGES)


@dataclass(frozen=True)
class StackName:
    """A region stack's name, ``<env>-<cloud>-<region>``, split into its parts."""

    env: str
    cloud: str
    region: str

    @classmethod
    def parse(cls, stack: str) -> StackName:
        parts = stack.split("-", 2)
        if len(parts) != 3 or not _ENV.match(parts[0]) or not parts[2]:
            raise SettingsError.one(
                "stack", f"{stack!r} is not a region stack name <env>-<cloud>-<region>"
            )
        if parts[1] not in CLOUDS:
            raise SettingsError.one(
                "stack", f"{stack!r}: unknown cloud {parts[1]!r} (one of {', '.join(CLOUDS)})"
            )
        return cls(parts[0], parts[1], parts[2])

    def __str__(self) -> str:
        return f"{self.env}-{self.cloud}-{self.region}"


def _private(network: IPv4Network) -> bool:
    return any(network.subnet_of(private) for private in _PRIVATE_RANGES)


class RegionSettings(StackConfigModel):
    """What every cloud's region stack needs to know, in cloud-neutral terms."""

    env: str
    cloud: str
    region: str
    home_region: str
    # the one settings writer of the whole environment, ``<env>-<cloud>-<region>``; a region
    # of another cloud reads through a logical-replication subscriber of it
    writer_stack: str | None = None
    availability_zones: list[str] = Field(min_length=spec.MIN_AVAILABILITY_ZONES, max_length=6)
    admin_allow_list: list[IPv4Network] = Field(default_factory=list)
    # an existing certificate (ACM ARN / Key Vault secret id); or, instead, ``certificates``
    certificate: str | None = Field(None, min_length=1)
    admin_certificate: str | None = None
    certificates: CertificateSettings | None = None
    recordings: RecordingSettings = Field(default_factory=RecordingSettings)
    media_spot: SpotSettings | None = None
    # the environment's other region stacks, whose gateways this region's gateways ask before
    # placing a new room (infra/peers.py)
    peer_stacks: list[str] = Field(default_factory=list)
    # this region's own client signaling URL (a name of its own, covered by the client
    # certificate): where other regions send a client whose room this region decides
    signaling_url: str | None = None
    # the nodes' OTLP/HTTP receiver and the share of new traces kept (infra/traces.py)
    otlp_endpoint: str | None = Field(None, min_length=1)
    trace_sample_ratio: float | None = Field(None, ge=0.0, le=1.0)
    image_id: str | None = None
    image_stack: str | None = None
    gateway_size: spec.Size = spec.DEFAULT_SIZE
    media_size: spec.Size = spec.DEFAULT_SIZE
    redis_size: spec.Size = spec.DEFAULT_SIZE
    postgres_size: spec.Size = spec.DEFAULT_SIZE
    gateway_count: int = Field(spec.MIN_GATEWAYS, ge=spec.MIN_GATEWAYS)
    gateway_max: int = Field(6, ge=spec.MIN_GATEWAYS)
    media_min: int = Field(spec.DEFAULT_MEDIA_MIN, ge=1)
    media_max: int = Field(spec.DEFAULT_MEDIA_MAX, ge=1)
    media_cpu_target: int = Field(spec.DEFAULT_MEDIA_CPU_TARGET_PERCENT, ge=10, le=90)
    media_warmup_seconds: int = Field(spec.DEFAULT_MEDIA_WARMUP_SECONDS, ge=0, le=3600)
    drain_timeout_seconds: int = Field(
        spec.DEFAULT_DRAIN_TIMEOUT_SECONDS, ge=spec.LIFECYCLE_HEARTBEAT_TIMEOUT_SECONDS
    )
    redis_replicas: int = Field(spec.MIN_REDIS_REPLICAS, ge=spec.MIN_REDIS_REPLICAS, le=5)
    postgres_storage_gb: int = Field(spec.DEFAULT_POSTGRES_STORAGE_GB, ge=20, le=65536)
    postgres_backup_days: int = Field(spec.DEFAULT_POSTGRES_BACKUP_DAYS, ge=1, le=35)
    vpc_cidr: IPv4Network
    peered_cidrs: list[IPv4Network] = Field(default_factory=list)

    cloud_regions: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    @field_validator("admin_allow_list")
    @classmethod
    def _no_open_admin(cls, value: list[IPv4Network]) -> list[IPv4Network]:
        for network in value:
            if network.prefixlen == 0:
                raise ValueError(
                    f"{network} would open the admin console to the whole internet; "
                    "list the operators' CIDRs (an empty list means no admin access)"
                )
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_endpoint(cls, value: str | None) -> str | None:
        problem = None if value is None else endpoint_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("signaling_url")
    @classmethod
    def _signaling_url(cls, value: str | None) -> str | None:
        problem = None if value is None else signaling_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_private(cls, value: IPv4Network) -> IPv4Network:
        if not _private(value):
            raise ValueError(f"{value} is not inside a private range {spec.PRIVATE_RANGES}")
        if not 16 <= value.prefixlen <= 20:
            raise ValueError(f"{value}: use a /16 to /20 so each zone gets its own subnets")
        return value

    @field_validator("peered_cidrs")
    @classmethod
    def _peers_private(cls, value: list[IPv4Network]) -> list[IPv4Network]:
        for network in value:
            if not _private(network):
                raise ValueError(f"{network} is not a private range; peers are reached privately")
        return value

    @property
    def stack(self) -> str:
        return f"{self.env}-{self.cloud}-{self.region}"

    @property
    def subscribes(self) -> bool:
        """The environment's writer is in another cloud: this region's settings server is a
        logical-replication subscriber of it, not a replica of a writer of its own cloud."""
        if self.writer_stack is None:
            return False
        return self.writer_stack.split("-", 2)[1:2] != [self.cloud]

    @property
    def is_home(self) -> bool:
        """The home region holds the Postgres read/write node."""
        return self.region == self.home_region and not self.subscribes

    @property
    def home_stack(self) -> str:
        return f"{self.env}-{self.cloud}-{self.home_region}"

    @property
    def image_stack_name(self) -> str:
        # the image stack bakes and distributes the node images (infra/image_stack.py)
        return self.image_stack or image_stack_name(self.env)

    @property
    def production(self) -> bool:
        return self.env == "prod"

    @property
    def private_cidrs(self) -> list[str]:
        """This VPC and the peered regions: the only sources of media-node signaling."""
        return [str(self.vpc_cidr), *(str(cidr) for cidr in self.peered_cidrs)]

    @property
    def database_source_stack(self) -> str | None:
        """The stack whose database this region replicates (the home region's) or subscribes
        to (the writer's, in another cloud); ``None`` where the writer is."""
        if self.subscribes and self.writer_stack is not None:
            return self.writer_stack
        if not self.is_home:
            return self.home_stack
        return None

    def referenced_stacks(self) -> list[str]:
        """Stacks whose outputs this one reads (for the offline plan to provide)."""
        refs: list[str] = []
        if self.database_source_stack is not None:
            refs.append(self.database_source_stack)
        if self.image_id is None:
            refs.append(self.image_stack_name)
        return refs

    def check(self) -> list[tuple[str, str]]:
        """Cross-field problems that single-field validation cannot see."""
        problems: list[tuple[str, str]] = []
        zones = self.cloud_regions.get(self.region)
        if zones is None:
            problems.append(("stack", f"unknown {self.cloud} region {self.region!r}"))
        elif unknown := [
            z for z in self.availability_zones if z.removeprefix(self.region) not in zones
        ]:
            problems.append(
                (config_key("availabilityZones"), f"{unknown} are not zones of {self.region}")
            )
        if len(set(self.availability_zones)) != len(self.availability_zones):
            problems.append((config_key("availabilityZones"), "lists a zone twice"))
        if self.home_region not in self.cloud_regions:
            problems.append(
                (config_key("homeRegion"), f"unknown {self.cloud} region {self.home_region!r}")
            )
        problems += self._check_writer_stack()
        problems += certificate_problems(self) + spot_problems(self)
        problems += [
            (config_key("peerStacks"), problem)
            for problem in peer_stack_problems(self.stack, self.peer_stacks)
        ]
        if self.trace_sample_ratio is not None and self.otlp_endpoint is None:
            problems.append(
                (
                    config_key("traceSampleRatio"),
                    "has no effect: tracing is off without rtcfleet:otlpEndpoint",
                )
            )
        if self.gateway_max < self.gateway_count:
            problems.append((config_key("gatewayMax"), "is below rtcfleet:gatewayCount"))
        if self.media_max < self.media_min:
            problems.append((config_key("mediaMax"), "is below rtcfleet:mediaMin"))
        for peer in self.peered_cidrs:
            if peer.overlaps(self.vpc_cidr):
                problems.append(
                    (config_key("peeredCidrs"), f"{peer} overlaps rtcfleet:vpcCidr {self.vpc_cidr}")
                )
        return problems

    def _check_writer_stack(self) -> list[tuple[str, str]]:
        if self.writer_stack is None:
            return []
        key = config_key("writerStack")
        try:
            writer = StackName.parse(self.writer_stack)
        except SettingsError as exc:
            return [(key, str(exc.problems[0][1]) if exc.problems else str(exc))]
        if writer.env != self.env:
            return [(key, f"{self.writer_stack} is not a stack of environment {self.env!r}")]
        if writer.cloud != self.cloud and self.cloud != "azure":
            return [(key, f"{self.cloud} regions do not subscribe to a writer in {writer.cloud}")]
        home_known = self.home_region in self.cloud_regions
        if writer.cloud == self.cloud and home_known and writer.region != self.home_region:
            return [
                (
                    key,
                    f"{self.writer_stack} is in this stack's cloud: it must be the home region "
                    f"(rtcfleet:homeRegion {self.home_region}), one writer per environment",
                )
            ]
        return []


def is_private_cidr(cidr: str) -> bool:
    """Whether a CIDR lies inside the private ranges of ``infra.spec``."""
    try:
        network = ip_network(cidr, strict=False)
    except ValueError:
        return False
    return isinstance(network, IPv4Network) and _private(network)
