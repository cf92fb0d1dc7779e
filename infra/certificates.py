"""TLS certificates of the region's public names, cloud-neutral: the ``rtcfleet:certificates``
setting, its modes, and the checks that refuse a certificate reference that cannot exist.

Each public name (``client``: the signaling names clients dial; ``admin``: the admin console)
takes one of three modes:

- ``issued``: the cloud's own CA issues and renews it (AWS: ACM, validated by DNS records in
  the global stack's Route 53 zone; Azure: a Key Vault certificate from the vault's CA issuer,
  which the stack references by name, since Key Vault certificates are not Resource Manager
  resources);
- ``imported``: the operator's certificate and key, from stack secrets
  (``rtcfleet:<name>CertificatePem``, ``rtcfleet:<name>PrivateKeyPem`` and optionally
  ``rtcfleet:<name>CertificateChainPem``), imported into ACM or Key Vault;
- ``self-signed``: made by the stack (``pulumi-tls``), for ``dev`` stacks only.

Provider-free, so the settings and the policy pack import it without the Pulumi SDKs.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from infra.settings import RegionSettings

KEY = "rtcfleet:certificates"
# the environment whose stacks may present self-signed certificates
SELF_SIGNED_ENV = "dev"
# tags every certificate the stack creates carries, for the policy pack to read
MODE_TAG = "rtcfleet:certificate-mode"
ENV_TAG = "rtcfleet:env"
PUBLIC_NAMES = ("client", "admin")
SELF_SIGNED_VALIDITY_HOURS = 90 * 24
# renewed on the first `pulumi up` in its last 30 days
SELF_SIGNED_EARLY_RENEWAL_HOURS = 30 * 24

_DNS_NAME = re.compile(r"^(\*\.)?(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")
_KEY_VAULT_OBJECT = re.compile(r"^[A-Za-z0-9-]{1,127}$")
ACM_ARN = re.compile(
    r"^arn:aws:acm:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>[^:]*):certificate/(?P<id>.+)$"
)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Account ids that AWS's own documentation uses as examples: never a real account.
DOCUMENTATION_ACCOUNTS = frozenset({"123456789012", "111122223333", "444455556666", "210987654321"})


class CertificateMode(StrEnum):
    ISSUED = "issued"
    IMPORTED = "imported"
    SELF_SIGNED = "self-signed"


def secret_names(public_name: str) -> tuple[str, str, str]:
    """The stack secrets of an imported certificate: certificate, private key, chain."""
    return (
        f"{public_name}CertificatePem",
        f"{public_name}PrivateKeyPem",
        f"{public_name}CertificateChainPem",
    )


# every stack secret a certificate may come from (not settings: never validated as such)
CERTIFICATE_SECRET_NAMES = tuple(name for public in PUBLIC_NAMES for name in secret_names(public))


def placeholder_account(account: str) -> str | None:
    """Why an account id cannot be a real one, or None."""
    if not re.fullmatch(r"\d{12}", account):
        return f"account id {account!r} is not 12 digits"
    if account in DOCUMENTATION_ACCOUNTS:
        return f"account id {account} is AWS's documentation example, not an account"
    if len(set(account)) == 1:
        return f"account id {account} is a placeholder (one digit repeated)"
    return None


def acm_arn_problem(arn: str, region: str | None = None) -> str | None:
    """Why ``arn`` cannot be an ACM certificate of ``region``, or None."""
    match = ACM_ARN.match(arn)
    if match is None:
        return "must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)"
    if problem := placeholder_account(match["account"]):
        return problem
    if not _UUID.match(match["id"]):
        return f"certificate id {match['id']!r} is not the UUID ACM gives every certificate"
    if region is not None and match["region"] != region:
        return (
            f"certificate is in {match['region']}, not {region}: a load balancer presents "
            "certificates of its own region only"
        )
    return None


class NameCertificate(BaseModel):
    """How one public name gets its certificate."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    mode: CertificateMode
    # the DNS names it covers, first as the subject (issued, self-signed)
    names: list[str] = Field(default_factory=list, max_length=10)
    # Azure, issued: the Key Vault certificate's name in rtcfleet:certificateVaultId
    key_vault_certificate: str | None = None

    @field_validator("names")
    @classmethod
    def _dns_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not _DNS_NAME.match(name)]
        if bad:
            raise ValueError(f"{bad} are not DNS names (lower case, like api.rtc.example.com)")
        if len(set(value)) != len(value):
            raise ValueError("lists a name twice")
        return value

    @field_validator("key_vault_certificate")
    @classmethod
    def _object_name(cls, value: str | None) -> str | None:
        if value is not None and not _KEY_VAULT_OBJECT.match(value):
            raise ValueError("a Key Vault certificate name is 1-127 letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _names_when_made_here(self) -> NameCertificate:
        if self.mode is CertificateMode.SELF_SIGNED and not self.names:
            raise ValueError("a self-signed certificate needs names")
        return self


class CertificateSettings(BaseModel):
    """``rtcfleet:certificates``: the client and admin names' certificates."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    client: NameCertificate
    # absent: the admin load balancer presents the client certificate
    admin: NameCertificate | None = None
    # AWS, issued: the Route 53 hosted zone of the global stack (rtcfleet:hostedZoneId there),
    # where the DNS validation records go
    zone_id: str | None = None

    @field_validator("zone_id")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not _ZONE_ID.match(value):
            raise ValueError(f"{value!r} is not a Route 53 hosted zone id (Z...)")
        return value

    def by_name(self) -> dict[str, NameCertificate]:
        named = {"client": self.client}
        if self.admin is not None:
            named["admin"] = self.admin
        return named


def certificate_problems(settings: RegionSettings) -> list[tuple[str, str]]:
    """Cross-field problems of the region's certificate settings."""
    certificates = getattr(settings, "certificates", None)
    legacy = getattr(settings, "certificate", None)
    if certificates is None:
        if legacy is None:
            return [(KEY, "required: set rtcfleet:certificates (or rtcfleet:certificate)")]
        return []
    if not isinstance(certificates, CertificateSettings):
        return []
    problems: list[tuple[str, str]] = []
    if legacy is not None or getattr(settings, "admin_certificate", None) is not None:
        problems.append(
            (KEY, "set either rtcfleet:certificates or rtcfleet:certificate/adminCertificate")
        )
    for public, wanted in certificates.by_name().items():
        where = f"{KEY}.{public}"
        if wanted.mode is CertificateMode.SELF_SIGNED and settings.env != SELF_SIGNED_ENV:
            problems.append(
                (
                    where,
                    f"self-signed certificates are for {SELF_SIGNED_ENV} stacks only; "
                    f"{settings.stack} needs issued or imported",
                )
            )
        if wanted.mode is CertificateMode.ISSUED:
            problems += _issued_problems(settings, certificates, wanted, where)
        elif wanted.key_vault_certificate is not None:
            problems.append((where, "keyVaultCertificate is for issued certificates on Azure"))
    return problems


def _issued_problems(
    settings: RegionSettings,
    certificates: CertificateSettings,
    wanted: NameCertificate,
    where: str,
) -> list[tuple[str, str]]:
    if settings.cloud == "aws":
        problems = []
        if not wanted.names:
            problems.append((where, "an issued certificate needs names"))
        if certificates.zone_id is None:
            problems.append(
                (
                    f"{KEY}.zoneId",
                    "issued certificates are validated in a Route 53 zone: set "
                    "the global stack's rtcfleet:hostedZoneId",
                )
            )
        return problems
    if wanted.key_vault_certificate is None:
        return [
            (
                where,
                "on Azure, name the Key Vault certificate its issuer renews "
                "(keyVaultCertificate), in rtcfleet:certificateVaultId",
            )
        ]
    return []
