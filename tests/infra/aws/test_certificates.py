"""Certificate modes on AWS, each planned, and the check that refuses an ARN that cannot exist."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.settings_errors import SettingsError

ACM = "aws:acm/certificate:Certificate"
VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
RECORD = "aws:route53/record:Record"
LISTENER = "aws:lb/listener:Listener"
REAL_LOOKING = "arn:aws:acm:us-east-1:402938475610:certificate/6c1d2e3f-9a8b-4a5b-8c9d-0e1f2a3b4c5d"


def test_issued_certificates_validate_in_the_global_zone(home_plan) -> None:
    client = home_plan.named(ACM, "prod-use1-client-tls")
    assert client.inputs["domainName"] == "api.rtc.example.com"
    assert client.inputs["subjectAlternativeNames"] == ["api-backup.rtc.example.com"]
    assert client.inputs["validationMethod"] == "DNS"
    assert client.inputs["tags"]["rtcfleet:certificate-mode"] == "issued"
    options = {o["domainName"]: o for o in client.outputs["domainValidationOptions"]}
    records = [r for r in home_plan.of_type(RECORD) if r.name.startswith("prod-use1-client-tls")]
    assert len(records) == 2
    for record in records:
        assert record.inputs["zoneId"] == "Z0123456789ABCDEFGHIJ"
        assert record.inputs["allowOverwrite"] is True and record.inputs["type"] == "CNAME"
    assert {(r.inputs["name"], r.inputs["records"][0]) for r in records} == {
        (o["resourceRecordName"], o["resourceRecordValue"]) for o in options.values()
    }
    validation = home_plan.named(VALIDATION, "prod-use1-client-tls")
    assert validation.inputs["certificateArn"] == client.outputs["arn"]
    assert len(validation.inputs["validationRecordFqdns"]) == 2
    admin = home_plan.named(ACM, "prod-use1-admin-tls")
    assert admin.inputs["domainName"] == "admin.us-east-1.rtc.example.com"
    listener = next(
        r
        for r in home_plan.of_type(LISTENER)
        if r.inputs.get("certificateArn") == admin.outputs["arn"]
    )
    assert listener.inputs["port"] == 443


def test_self_signed_in_the_dev_stack(dev_plan) -> None:
    [certificate] = dev_plan.of_type(ACM)
    assert certificate.inputs["tags"]["rtcfleet:certificate-mode"] == "self-signed"
    body = x509.load_pem_x509_certificate(certificate.inputs["certificateBody"].encode())
    names = body.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["api.dev.rtc.example.com"]
    assert "privateKey" in certificate.secret_inputs
    signed = dev_plan.named("tls:index/selfSignedCert:SelfSignedCert", "dev-use1-client-tls")
    assert signed.inputs["validityPeriodHours"] == 90 * 24
    assert signed.inputs["earlyRenewalHours"] == 30 * 24
    assert not dev_plan.of_type(RECORD) and not dev_plan.violations


def _pem_pair(name: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


@pytest.fixture(scope="module")
def pem_pair() -> tuple[str, str]:
    return _pem_pair("api.rtc.example.com")


def test_imported_from_stack_secrets(plan_with, pem_pair) -> None:
    certificate_pem, key_pem = pem_pair
    plan = plan_with(
        "prod-aws-us-east-1",
        certificates={"client": {"mode": "imported"}},
        clientCertificatePem=certificate_pem,
        clientPrivateKeyPem=key_pem,
    )
    [imported] = plan.of_type(ACM)
    assert imported.inputs["certificateBody"] == certificate_pem
    assert imported.inputs["privateKey"] == key_pem
    assert {"certificateBody", "privateKey"} <= imported.secret_inputs
    assert not plan.of_type(VALIDATION) and not plan.violations
    arns = {r.inputs.get("certificateArn") for r in plan.of_type(LISTENER)} - {None}
    assert arns == {imported.outputs["arn"]}


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        # the example stacks' old made-up ARNs
        (
            "arn:aws:acm:us-east-1:111122223333:certificate/6c1d2e3f-prod-4a5b-8c9d-0e1f2a3b4c5d",
            "documentation example",
        ),
        (REAL_LOOKING.replace("402938475610", "123456789012"), "documentation example"),
        (REAL_LOOKING.replace("402938475610", "000000000000"), "one digit repeated"),
        (REAL_LOOKING.replace("402938475610", "40293847561"), "not 12 digits"),
        (REAL_LOOKING.replace("6c1d2e3f-9a8b", "6c1d2e3f-prod"), "not the UUID"),
        (REAL_LOOKING.replace("us-east-1", "eu-west-1"), "not us-east-1"),
        ("arn:aws:iam::402938475610:server-certificate/api", "must be an ACM certificate ARN"),
    ],
)
def test_an_arn_that_cannot_exist_is_refused_naming_the_key(plan_with, arn, message) -> None:
    with pytest.raises(SettingsError) as caught:
        plan_with("prod-aws-us-east-1", certificates=None, certificate=arn)
    assert caught.value.keys == ["rtcfleet:certificate"]
    assert message in str(caught.value)


def test_a_plausible_arn_still_works(plan_with) -> None:
    plan = plan_with("prod-aws-us-east-1", certificates=None, certificate=REAL_LOOKING)
    assert {r.inputs.get("certificateArn") for r in plan.of_type(LISTENER)} - {None} == {
        REAL_LOOKING
    }
    assert not plan.of_type(ACM)


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        (
            {"certificates": {"client": {"mode": "self-signed", "names": ["api.rtc.example.com"]}}},
            "rtcfleet:certificates.client",
            "dev stacks only",
        ),
        (
            {"certificates": {"client": {"mode": "issued", "names": ["api.rtc.example.com"]}}},
            "rtcfleet:certificates.zoneId",
            "Route 53 zone",
        ),
        (
            {"certificates": {"client": {"mode": "bought"}}},
            "rtcfleet:certificates",
            "'issued', 'imported' or 'self-signed'",
        ),
        (
            {"certificates": {"client": {"mode": "issued", "names": ["API.example"]}}},
            "rtcfleet:certificates",
            "not DNS names",
        ),
        ({"certificate": REAL_LOOKING}, "rtcfleet:certificates", "set either"),
    ],
)
def test_bad_certificate_settings_name_the_key(plan_with, changes, key, message) -> None:
    with pytest.raises(SettingsError) as caught:
        plan_with("prod-aws-us-east-1", **changes)
    assert caught.value.keys == [key]
    assert message in str(caught.value)
