"""Self-signed certificates for dev stacks, made by the stack itself (``pulumi-tls``)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_tls as tls

from infra.certificates import SELF_SIGNED_EARLY_RENEWAL_HOURS, SELF_SIGNED_VALIDITY_HOURS

SELF_SIGNED_USES = ("digital_signature", "key_encipherment", "server_auth")


def self_signed(
    base: str, names: Sequence[str], parent: pulumi.Resource
) -> tuple[tls.PrivateKey, tls.SelfSignedCert]:
    """A P-256 key and a certificate for ``names``, renewed by the first ``pulumi up`` in its
    last month (both clouds' self-signed mode)."""
    child = pulumi.ResourceOptions(parent=parent)
    key = tls.PrivateKey(base, algorithm="ECDSA", ecdsa_curve="P256", opts=child)
    cert = tls.SelfSignedCert(
        base,
        private_key_pem=key.private_key_pem,
        subject=tls.SelfSignedCertSubjectArgs(common_name=names[0], organization="rtcfleet"),
        dns_names=list(names),
        validity_period_hours=SELF_SIGNED_VALIDITY_HOURS,
        early_renewal_hours=SELF_SIGNED_EARLY_RENEWAL_HOURS,
        allowed_uses=list(SELF_SIGNED_USES),
        opts=child,
    )
    return key, cert
