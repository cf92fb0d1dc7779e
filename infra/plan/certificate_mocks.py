"""What ACM and the TLS provider would return, for the offline plan.

The TLS provider's key and certificate are real ones (made with ``cryptography``), so what the
program does with them (Azure's PKCS#12 bundle) runs on real PEM text under the mocks too.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ACM_CERTIFICATE = "aws:acm/certificate:Certificate"
ACM_VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
TLS_PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
TLS_SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
TYPES = (ACM_CERTIFICATE, ACM_VALIDATION, TLS_PRIVATE_KEY, TLS_SELF_SIGNED)


def _digest(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()


def _uuid(seed: str) -> str:
    d = _digest(seed)
    return f"{d[:8]}-{d[8:12]}-4{d[13:16]}-a{d[17:20]}-{d[20:32]}"


def validation_options(names: list[str]) -> list[dict[str, str]]:
    """One CNAME per name, shaped as ACM describes them."""
    return [
        {
            "domainName": name,
            "resourceRecordName": f"_{_digest(name)[:32]}.{name.removeprefix('*.')}.",
            "resourceRecordType": "CNAME",
            "resourceRecordValue": f"_{_digest('value', name)[:32]}.acm-validations.aws.",
        }
        for name in names
    ]


def _self_signed(key_pem: str, inputs: Mapping[str, Any]) -> str:
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    subject = inputs.get("subject") or {}
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, str(subject.get("commonName") or "rtcfleet"))]
    )
    now = datetime.datetime.now(datetime.UTC)
    hours = int(inputs.get("validityPeriodHours") or 24)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=hours))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(str(n)) for n in inputs.get("dnsNames") or []]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def outputs(
    typ: str, name: str, inputs: Mapping[str, Any], region: str, account: str
) -> dict[str, Any]:
    """Computed properties of a certificate resource."""
    if typ == ACM_CERTIFICATE:
        names = [str(inputs.get("domainName") or "")] if inputs.get("domainName") else []
        names += [str(n) for n in inputs.get("subjectAlternativeNames") or []]
        return {
            "arn": f"arn:aws:acm:{region}:{account}:certificate/{_uuid(name)}",
            "domainValidationOptions": validation_options(names),
        }
    if typ == ACM_VALIDATION:
        return {"certificateArn": inputs.get("certificateArn")}
    if typ == TLS_PRIVATE_KEY:
        key = ec.derive_private_key(int(_digest(typ, name), 16), ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {"privateKeyPem": pem, "algorithm": inputs.get("algorithm")}
    if typ == TLS_SELF_SIGNED:
        key_pem = inputs.get("privateKeyPem")
        return {"certPem": _self_signed(str(key_pem), inputs)} if key_pem else {}
    return {}
