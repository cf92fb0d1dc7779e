"""CrossGuard policies for TLS certificates: self-signed ones only in dev stacks, and an
issued ACM certificate is presented only once validated."""

from __future__ import annotations

from collections.abc import Sequence

from pulumi_policy import StackValidationArgs, StackValidationPolicy

from infra.certificates import ENV_TAG, MODE_TAG, SELF_SIGNED_ENV, CertificateMode
from infra.policy.props import Report, stack_policy, tags_of

SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
ACM_CERTIFICATE = "aws:acm/certificate:Certificate"
ACM_VALIDATION = "aws:acm/certificateValidation:CertificateValidation"


def self_signed_only_in_dev(args: StackValidationArgs, report: Report) -> None:
    """A stack of any environment but dev presents no self-signed certificate."""
    envs = {str(env) for r in args.resources if (env := tags_of(r.props).get(ENV_TAG))}
    if not envs or envs == {SELF_SIGNED_ENV}:
        return
    for resource in args.resources:
        tagged = tags_of(resource.props).get(MODE_TAG) == CertificateMode.SELF_SIGNED.value
        if resource.resource_type == SELF_SIGNED_CERT or tagged:
            report(
                f"{resource.name}: a self-signed certificate in a {'/'.join(sorted(envs))} "
                "stack; use an issued or imported one"
            )


def issued_certificates_validated(args: StackValidationArgs, report: Report) -> None:
    """Every DNS-validated ACM certificate has a validation that waits for its records, so
    no listener presents a certificate that is still pending."""
    validated = {
        dependency.urn
        for r in args.resources
        if r.resource_type == ACM_VALIDATION
        for dependency in r.dependencies
    }
    for resource in args.resources:
        if resource.resource_type != ACM_CERTIFICATE:
            continue
        if resource.props.get("validationMethod") == "DNS" and resource.urn not in validated:
            report(f"{resource.name}: DNS-validated certificate without a CertificateValidation")


CERTIFICATE_POLICIES: Sequence[StackValidationPolicy] = (
    stack_policy("rtcfleet-self-signed-only-in-dev", self_signed_only_in_dev),
    stack_policy("rtcfleet-issued-certificates-validated", issued_certificates_validated),
)

__all__ = ["CERTIFICATE_POLICIES"]
