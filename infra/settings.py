"""Typed settings of one region stack, read from the stack's Pulumi config.

Every error names the config key as written in ``stacks/Pulumi.<stack>.yaml`` (for example
``rtcfleet:adminAllowList``) so an operator can fix the file without reading the code. The
cloud-neutral fields sit in ``RegionSettings``; each cloud subclasses it with its own terms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from infra import spec
from infra.aws.regions import AWS_REGIONS
from infra.azure.regions import AZURE_REGIONS
from infra.certificates import (
    CERTIFICATE_SECRET_NAMES,
    CertificateSettings,
    acm_arn_problem,
    certificate_problems,
)
from infra.recordings import RecordingSettings
from infra.spot import SpotSettings, spot_problems

NAMESPACE = "rtcfleet"
CLOUDS = ("aws", "azure")
# Read from the stack name, never from the file: one source of truth for where a stack deploys.
DERIVED_KEYS = ("env", "cloud", "region")
_ENV = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_PRIVATE_RANGES = tuple(IPv4Network(cidr) for cidr in spec.PRIVATE_RANGES)


def config_key(name: str) -> str:
    """The fully qualified config key (``rtcfleet:adminAllowList``) of a setting."""
    return f"{NAMESPACE}:{name}"


class SettingsError(ValueError):
    """Stack settings that cannot be deployed; each problem names its config key."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"{key}: {message}" for key, message in self.problems))

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.problems]

    @classmethod
    def one(cls, key: str, message: str) -> SettingsError:
        return cls([(key, message)])


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


class RegionSettings(BaseModel):
    """What every cloud's region stack needs to know, in cloud-neutral terms."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

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
        return self.image_stack or f"{self.env}-image"

    @property
    def production(self) -> bool:
        return self.env == "prod"

    @property
    def private_cidrs(self) -> list[str]:
        """This VPC and the peered regions: the only sources of media-node signaling."""
        return [str(self.vpc_cidr), *(str(cidr) for cidr in self.peered_cidrs)]

    def referenced_stacks(self) -> list[str]:
        """Stacks whose outputs this one reads (for the offline plan to provide)."""
        refs: list[str] = []
        if self.subscribes and self.writer_stack is not None:
            refs.append(self.writer_stack)
        elif not self.is_home:
            refs.append(self.home_stack)
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


_ACM_ARN = re.compile(r"^arn:aws:acm:(?P<region>[a-z0-9-]+):\d{12}:certificate/[A-Za-z0-9-]+$")
_AMI = re.compile(r"^ami-[0-9a-f]{8,17}$")


class AwsRegionSettings(RegionSettings):
    """A region on AWS: the neutral settings plus AWS names and instance-type overrides."""

    gateway_instance_type: str | None = None
    media_instance_type: str | None = None
    redis_node_type: str | None = None
    postgres_instance_class: str | None = None
    nat_per_az: bool = True
    redis_engine_version: str = "7.1"
    postgres_engine_version: str = "16"

    cloud_regions: ClassVar[Mapping[str, tuple[str, ...]]] = AWS_REGIONS

    @field_validator("certificate", "admin_certificate")
    @classmethod
    def _acm_arn(cls, value: str | None) -> str | None:
        problem = None if value is None else acm_arn_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("image_id")
    @classmethod
    def _ami(cls, value: str | None) -> str | None:
        if value is not None and not _AMI.match(value):
            raise ValueError("must be an AMI id (ami-...)")
        return value

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        for key, arn in (
            ("certificate", self.certificate),
            ("adminCertificate", self.admin_certificate),
        ):
            match = _ACM_ARN.match(arn or "")
            if match and match["region"] != self.region:
                problems.append(
                    (config_key(key), f"certificate is in {match['region']}, not {self.region}")
                )
        return problems


_KEY_VAULT_SECRET = re.compile(
    r"^https://(?P<vault>[a-z0-9-]{3,24})\.vault\.azure\.net/secrets/[A-Za-z0-9-]+(/[0-9a-f]{32})?$"
)
_KEY_VAULT_ID = re.compile(
    r"^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.KeyVault/vaults/"
    r"(?P<vault>[A-Za-z0-9-]{3,24})$",
    re.IGNORECASE,
)
_GALLERY_IMAGE_VERSION = re.compile(
    r"^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.Compute/galleries/"
    r"[^/]+/images/[^/]+/versions/[^/]+$",
    re.IGNORECASE,
)


AZURE_POSTGRES_MIN_BACKUP_DAYS = 7
AZURE_SSH_MIN_RSA_BITS = 2048


def ssh_rsa_problem(key: str) -> str | None:
    """Why Azure would refuse ``key`` as a VM's SSH key: it takes ssh-rsa of 2048 bits or more."""
    import base64
    import binascii

    words = key.split()
    if len(words) < 2 or words[0] != "ssh-rsa":
        return "must be an OpenSSH public key starting with ssh-rsa (Azure VMs take RSA keys)"
    try:
        blob = base64.b64decode(words[1], validate=True)
    except (binascii.Error, ValueError):
        return "the key's base64 body does not decode"
    fields: list[bytes] = []
    offset = 0
    while offset + 4 <= len(blob) and len(fields) < 3:
        size = int.from_bytes(blob[offset : offset + 4], "big")
        fields.append(blob[offset + 4 : offset + 4 + size])
        offset += 4 + size
    if len(fields) != 3 or fields[0] != b"ssh-rsa":
        return "the key's body is not an ssh-rsa public key"
    bits = int.from_bytes(fields[2], "big").bit_length()
    if bits < AZURE_SSH_MIN_RSA_BITS:
        return f"a {bits}-bit RSA key; Azure needs at least {AZURE_SSH_MIN_RSA_BITS} bits"
    return None


AZURE_REDIS_MAX_REPLICAS = 3


class AzureRegionSettings(RegionSettings):
    """A region on Azure: the neutral settings plus Azure names and size overrides.

    ``vpcCidr`` is the region's VNet range, ``availabilityZones`` are Azure's zone numbers
    ("1", "2", "3"), ``certificate`` is the Key Vault secret id of the TLS certificate the
    Application Gateways present, and ``imageId`` a Compute Gallery image version id.
    """

    certificate_vault_id: str
    # The operators' break-glass login on every node (password logins are off).
    node_ssh_public_key: str
    gateway_vm_size: str | None = None
    media_vm_size: str | None = None
    redis_capacity: int | None = Field(None, ge=1, le=5)
    postgres_sku: str | None = None
    redis_version: str = "6"
    postgres_version: str = "16"

    cloud_regions: ClassVar[Mapping[str, tuple[str, ...]]] = AZURE_REGIONS

    @field_validator("certificate", "admin_certificate")
    @classmethod
    def _key_vault_secret(cls, value: str | None) -> str | None:
        if value is not None and not _KEY_VAULT_SECRET.match(value):
            raise ValueError(
                "must be a Key Vault secret id (https://<vault>.vault.azure.net/secrets/<name>)"
            )
        return value

    @field_validator("node_ssh_public_key")
    @classmethod
    def _ssh_key(cls, value: str) -> str:
        problem = ssh_rsa_problem(value)
        if problem:
            raise ValueError(problem)
        return value.strip()

    @field_validator("certificate_vault_id")
    @classmethod
    def _vault_id(cls, value: str) -> str:
        if not _KEY_VAULT_ID.match(value):
            raise ValueError(
                "must be a Key Vault resource id (/subscriptions/.../Microsoft.KeyVault/vaults/...)"
            )
        return value

    @field_validator("image_id")
    @classmethod
    def _gallery_image(cls, value: str | None) -> str | None:
        if value is not None and not _GALLERY_IMAGE_VERSION.match(value):
            raise ValueError("must be a Compute Gallery image version id (.../versions/<version>)")
        return value

    def check(self) -> list[tuple[str, str]]:
        problems = super().check()
        vault = _KEY_VAULT_ID.match(self.certificate_vault_id)
        for key, secret in (
            ("certificate", self.certificate),
            ("adminCertificate", self.admin_certificate),
        ):
            match = _KEY_VAULT_SECRET.match(secret or "")
            if match and vault and match["vault"] != vault["vault"].lower():
                problems.append(
                    (
                        config_key(key),
                        f"is in vault {match['vault']}, not rtcfleet:certificateVaultId "
                        f"({vault['vault']}): the gateways may read only that vault",
                    )
                )
        if self.postgres_backup_days < AZURE_POSTGRES_MIN_BACKUP_DAYS:
            problems.append(
                (
                    config_key("postgresBackupDays"),
                    f"Azure keeps Postgres backups {AZURE_POSTGRES_MIN_BACKUP_DAYS} to 35 days",
                )
            )
        if self.redis_replicas > AZURE_REDIS_MAX_REPLICAS:
            problems.append(
                (
                    config_key("redisReplicas"),
                    f"Azure Cache for Redis has at most {AZURE_REDIS_MAX_REPLICAS} replicas",
                )
            )
        return problems


SETTINGS_MODELS: dict[str, type[RegionSettings]] = {
    "aws": AwsRegionSettings,
    "azure": AzureRegionSettings,
}


def _describe(error: Mapping[str, Any]) -> tuple[str, str]:
    loc = error["loc"]
    key = config_key(str(loc[0])) if loc else "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = f"required: set it with `pulumi config set {key} ...`"
    elif error["type"] == "extra_forbidden":
        message = "unknown setting"
    if len(loc) > 1:
        message = f"item {loc[1]}: {message}"
    return key, message


def _decode(value: Any) -> Any:
    """Pulumi hands structured config to programs as JSON text."""
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def settings_from_values(stack: str, values: Mapping[str, Any]) -> RegionSettings:
    """Validate a stack's ``rtcfleet:`` config values; other namespaces are ignored."""
    name = StackName.parse(stack)
    model = SETTINGS_MODELS.get(name.cloud)
    if model is None:
        raise SettingsError.one("stack", f"{stack}: no {name.cloud} region stack exists")
    fields: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in values.items():
        namespace, _, short = key.rpartition(":")
        if namespace != NAMESPACE or short in (*spec.SECRET_NAMES, *CERTIFICATE_SECRET_NAMES):
            continue
        if short in DERIVED_KEYS:
            problems.append((key, f"comes from the stack name ({stack}); remove it"))
            continue
        fields[short] = _decode(value)
    if problems:
        raise SettingsError(problems)
    try:
        settings = model.model_validate(
            {**fields, "env": name.env, "cloud": name.cloud, "region": name.region}
        )
    except ValidationError as exc:
        raise SettingsError(_describe(error) for error in exc.errors()) from None
    problems = settings.check()
    if problems:
        raise SettingsError(problems)
    return settings


def setting_names(model: type[RegionSettings]) -> list[str]:
    """The camelCase names a stack file may set for a cloud's model."""
    return [
        field.alias or name
        for name, field in model.model_fields.items()
        if name not in DERIVED_KEYS
    ]


def settings_from_pulumi_config(stack: str) -> RegionSettings:
    """The settings of the running Pulumi program, from ``pulumi.Config("rtcfleet")``."""
    import pulumi

    name = StackName.parse(stack)
    model = SETTINGS_MODELS.get(name.cloud, RegionSettings)
    config = pulumi.Config(NAMESPACE)
    values = {
        config_key(key): value
        for key in setting_names(model)
        if (value := config.get(key)) is not None
    }
    return settings_from_values(stack, values)


@dataclass(frozen=True)
class StackFile:
    """A stack file's config: plain values and the keys Pulumi stores encrypted."""

    stack: str
    values: dict[str, Any]
    secure_keys: frozenset[str]


def load_stack_file(path: Path) -> StackFile:
    """Read ``Pulumi.<stack>.yaml``; keys without a namespace belong to the project."""
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    document = yaml.safe_load(path.read_text()) or {}
    raw = document.get("config") or {}
    if not isinstance(raw, dict):
        raise SettingsError.one("config", f"{path}: `config` must be a mapping")
    values: dict[str, Any] = {}
    secure: set[str] = set()
    for key, value in raw.items():
        full = key if ":" in key else config_key(key)
        if isinstance(value, dict) and set(value) == {"secure"}:
            secure.add(full)
            value = None
        elif full.startswith(f"{NAMESPACE}:") and full.split(":", 1)[1] in (
            *spec.SECRET_NAMES,
            *CERTIFICATE_SECRET_NAMES,
        ):
            raise SettingsError.one(full, f"must be a secret: `pulumi config set --secret {full}`")
        values[full] = value
    return StackFile(stack, values, frozenset(secure))


def is_private_cidr(cidr: str) -> bool:
    """Whether a CIDR lies inside the private ranges of ``infra.spec``."""
    try:
        network = ip_network(cidr, strict=False)
    except ValueError:
        return False
    return isinstance(network, IPv4Network) and _private(network)
