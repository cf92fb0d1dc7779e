"""The region's TLS certificates in ACM, one per public name, in the mode its settings name.

Issued certificates are validated by DNS in the global stack's Route 53 zone; ACM renews them
on its own for as long as the validation records stay. Every region that covers a name asks
for the same validation record, so the records are shared (``allow_overwrite``) and outlive
the stack that wrote them (``retain_on_delete``): destroying one region must not break the
next renewal of another. A load balancer presents an issued certificate only once ACM has
validated it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.certificates import (
    ENV_TAG,
    MODE_TAG,
    CertificateMode,
    CertificateSettings,
    NameCertificate,
    secret_names,
)
from infra.self_signed import self_signed
from infra.settings_errors import NAMESPACE


def validation_record(options: Sequence[Mapping[str, Any]], name: str) -> dict[str, str]:
    """The CNAME ACM asks for to validate ``name`` (a wildcard shares its base name's)."""
    for option in options:
        if str(option.get("domain_name") or option.get("domainName")) == name:
            return {
                "name": str(option.get("resource_record_name") or option.get("resourceRecordName")),
                "type": str(option.get("resource_record_type") or option.get("resourceRecordType")),
                "value": str(
                    option.get("resource_record_value") or option.get("resourceRecordValue")
                ),
            }
    raise ValueError(f"ACM gave no validation record for {name}")


def _record_of(name: str, options: Sequence[Any]) -> dict[str, str]:
    return validation_record([o if isinstance(o, Mapping) else vars(o) for o in options], name)


@dataclass
class CertificatesArgs:
    prefix: str
    env: str
    settings: CertificateSettings
    tags: dict[str, str] = field(default_factory=dict)


class Certificates(pulumi.ComponentResource):
    """One ACM certificate per public name; ``arns`` are what the listeners present."""

    arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: CertificatesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:aws:Certificates", name, None, opts)
        self._args = args
        self.arns = {}
        for public, wanted in args.settings.by_name().items():
            base = f"{args.prefix}-{public}-tls"
            tags = {**args.tags, ENV_TAG: args.env, MODE_TAG: wanted.mode.value, "Name": base}
            if wanted.mode is CertificateMode.ISSUED:
                self.arns[public] = self._issued(base, wanted, tags)
            elif wanted.mode is CertificateMode.IMPORTED:
                self.arns[public] = self._imported(base, public, tags)
            else:
                self.arns[public] = self._self_signed(base, wanted, tags)
        self.register_outputs(dict(self.arns))

    def arn(self, public: str) -> pulumi.Output[str]:
        """The certificate of a public name; the admin name falls back to the client's."""
        return self.arns.get(public) or self.arns["client"]

    def _issued(
        self, base: str, wanted: NameCertificate, tags: dict[str, str]
    ) -> pulumi.Output[str]:
        zone_id = self._args.settings.zone_id
        certificate = aws.acm.Certificate(
            base,
            domain_name=wanted.names[0],
            subject_alternative_names=wanted.names[1:] or None,
            validation_method="DNS",
            key_algorithm="EC_prime256v1",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        records = []
        # a wildcard and its base name share one record
        for index, name in enumerate(dict.fromkeys(n.removeprefix("*.") for n in wanted.names)):
            record = certificate.domain_validation_options.apply(
                functools.partial(_record_of, name)
            )
            records.append(
                aws.route53.Record(
                    f"{base}-validation-{index}",
                    zone_id=zone_id,
                    name=record["name"],
                    type=record["type"],
                    records=[record["value"]],
                    ttl=300,
                    allow_overwrite=True,
                    opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
                )
            )
        validation = aws.acm.CertificateValidation(
            base,
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn for record in records],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return validation.certificate_arn

    def _imported(self, base: str, public: str, tags: dict[str, str]) -> pulumi.Output[str]:
        config = pulumi.Config(NAMESPACE)
        body, key, chain = secret_names(public)
        certificate = aws.acm.Certificate(
            base,
            certificate_body=config.require_secret(body),
            private_key=config.require_secret(key),
            certificate_chain=config.get_secret(chain),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return certificate.arn

    def _self_signed(
        self, base: str, wanted: NameCertificate, tags: dict[str, str]
    ) -> pulumi.Output[str]:
        key, cert = self_signed(base, wanted.names, self)
        certificate = aws.acm.Certificate(
            base,
            certificate_body=cert.cert_pem,
            private_key=key.private_key_pem,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return certificate.arn
