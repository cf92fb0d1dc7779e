"""The settings of a region stack on Azure: the neutral settings plus Azure names and limits."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field, field_validator

from infra.azure.regions import AZURE_REGIONS
from infra.settings import RegionSettings
from infra.settings_errors import config_key

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
