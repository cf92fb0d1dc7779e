"""Recording storage, spot media nodes and certificates on Azure, read back from plans."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from infra.azure import arm_rules
from infra.outputs import MEDIA_SPOT_SCALE_SET_ID, RECORDING_CONTAINER_URL
from infra.plan.runner import Planner, StackConfigs, StackFiles, StackPlan
from infra.settings_errors import SettingsError

STORAGE = "azure-native:storage:"
VMSS = "azure-native:compute:VirtualMachineScaleSet"
AUTOSCALE = "azure-native:monitor:AutoscaleSetting"
SECRET = "azure-native:keyvault:Secret"
AGW = "azure-native:network:ApplicationGateway"
ROLE_DEF = "azure-native:authorization:RoleDefinition"
ASSIGNMENT = "azure-native:authorization:RoleAssignment"
HOME = "prod-azure-westeurope"


def test_storage_account_admits_the_media_subnet_alone(weu_plan, neu_plan) -> None:
    for plan, prefix in ((weu_plan, "prod-weu"), (neu_plan, "prod-neu")):
        [account] = plan.of_type(f"{STORAGE}StorageAccount")
        media = plan.named("azure-native:network:Subnet", f"{prefix}-media")
        assert account.inputs["networkRuleSet"] == {
            "defaultAction": "Deny",
            "bypass": "None",
            "virtualNetworkRules": [
                {"virtualNetworkResourceId": media.id, "action": "Allow"},
            ],
        }
        # the rule rides on the subnet's Microsoft.Storage service endpoint
        endpoints = {e["service"] for e in media.inputs["serviceEndpoints"]}
        assert endpoints == {"Microsoft.KeyVault", "Microsoft.Storage"}
        gateway = plan.named("azure-native:network:Subnet", f"{prefix}-gateway")
        assert {e["service"] for e in gateway.inputs["serviceEndpoints"]} == {"Microsoft.KeyVault"}
        assert media.urn in account.dependencies


def test_storage_account_is_private_tls12_identity_only(weu_plan) -> None:
    [account] = weu_plan.of_type(f"{STORAGE}StorageAccount")
    i = account.inputs
    assert i["accountName"].startswith("recprodweu") and len(i["accountName"]) <= 24
    assert i["allowBlobPublicAccess"] is False and i["allowSharedKeyAccess"] is False
    assert i["minimumTlsVersion"] == "TLS1_2" and i["enableHttpsTrafficOnly"] is True
    assert i["sku"]["name"] == "Standard_ZRS"
    assert i["encryption"]["services"]["blob"]["enabled"] is True
    assert i["encryption"]["requireInfrastructureEncryption"] is True
    [container] = weu_plan.of_type(f"{STORAGE}BlobContainer")
    assert container.inputs["publicAccess"] == "None"
    assert container.inputs["accountName"] == i["accountName"]
    [service] = weu_plan.of_type(f"{STORAGE}BlobServiceProperties")
    assert service.inputs["isVersioningEnabled"] is True
    assert service.inputs["deleteRetentionPolicy"] == {"enabled": True, "days": 14}
    assert not weu_plan.violations


def test_lifecycle_tiers_to_cold_and_deletes(weu_plan) -> None:
    [policy] = weu_plan.of_type(f"{STORAGE}ManagementPolicy")
    [rule] = policy.inputs["policy"]["rules"]
    definition = rule["definition"]
    assert definition["filters"]["prefixMatch"] == ["recordings/recordings/"]
    base = definition["actions"]["baseBlob"]
    assert base["tierToCold"] == {"daysAfterModificationGreaterThan": 30}
    assert base["delete"] == {"daysAfterModificationGreaterThan": 365}
    assert definition["actions"]["version"]["delete"] == {"daysAfterCreationGreaterThan": 30}


def test_media_identity_writes_the_container_only(weu_plan) -> None:
    [container] = weu_plan.of_type(f"{STORAGE}BlobContainer")
    role = weu_plan.named(ROLE_DEF, "prod-weu-recordings-writer")
    [permission] = role.inputs["permissions"]
    assert permission["dataActions"] == [
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
    ]
    assert "actions" not in permission
    grant = weu_plan.named(ASSIGNMENT, "prod-weu-recordings-media-writes")
    identity = weu_plan.named("azure-native:managedidentity:UserAssignedIdentity", "prod-weu-media")
    assert grant.inputs["scope"] == container.id
    assert grant.inputs["roleDefinitionId"] == role.id
    assert grant.inputs["principalId"] == identity.outputs["principalId"]


def test_media_settings_name_the_container(weu_plan) -> None:
    [account] = weu_plan.of_type(f"{STORAGE}StorageAccount")
    url = f"https://{account.inputs['accountName']}.blob.core.windows.net/recordings"
    settings = next(
        r for r in weu_plan.of_type(SECRET) if r.inputs.get("secretName") == "media-settings"
    )
    document = json.loads(settings.inputs["properties"]["value"])
    assert document["recording"] == {
        "store": "azure-blob",
        "containerUrl": url,
        "prefix": "recordings/",
    }
    assert weu_plan.exports[RECORDING_CONTAINER_URL] == url


def test_spot_scale_set_beside_the_regular_one(weu_plan) -> None:
    regular = weu_plan.named(VMSS, "prod-weu-media")
    spot = weu_plan.named(VMSS, "prod-weu-spot-media")
    assert "priority" not in regular.inputs["virtualMachineProfile"]
    profile = spot.inputs["virtualMachineProfile"]
    assert (profile["priority"], profile["evictionPolicy"]) == ("Spot", "Delete")
    assert profile["billingProfile"] == {"maxPrice": -1}
    assert spot.inputs["sku"]["name"] == "Standard_F8s_v2"
    assert spot.inputs["orchestrationMode"] == "Uniform" and "priorityMixPolicy" not in spot.inputs
    assert profile["scheduledEventsProfile"]["terminateNotificationProfile"]["enable"] is True
    [capacity] = weu_plan.named(AUTOSCALE, "prod-weu-spot-media-cpu").inputs["profiles"]
    assert capacity["capacity"] == {"minimum": "0", "maximum": "29", "default": "0"}
    # the spot nodes protect themselves from scale-in like the regular ones
    weu_plan.named(ROLE_DEF, "prod-weu-spot-media-scale-in-protection")
    assert weu_plan.exports[MEDIA_SPOT_SCALE_SET_ID] == spot.id
    gateways = weu_plan.named(VMSS, "prod-weu-gateway")
    assert "priority" not in gateways.inputs["virtualMachineProfile"]


def test_azure_refuses_a_priority_mix_on_a_uniform_scale_set(weu_plan) -> None:
    spot = weu_plan.named(VMSS, "prod-weu-spot-media")
    mixed = {**spot.inputs, "priorityMixPolicy": {"baseRegularPriorityCount": 3}}
    assert arm_rules.refusals(VMSS, mixed) == [
        "priorityMixPolicy is for Flexible orchestration only"
    ]
    assert arm_rules.refusals(VMSS, {**mixed, "orchestrationMode": "Flexible"}) == []


@pytest.mark.parametrize(
    ("spot", "message"),
    [
        (
            {"onDemandBase": 3, "instanceTypes": ["Standard_F8s_v2", "Standard_F4s_v2"]},
            "list one instanceType",
        ),
        ({"onDemandBase": 3, "instanceTypes": ["c6i.xlarge"]}, "not Azure VM sizes"),
    ],
)
def test_bad_azure_spot_settings_name_the_key(plan_with, spot, message) -> None:
    with pytest.raises(SettingsError) as caught:
        plan_with(HOME, mediaSpot=spot)
    assert set(caught.value.keys) == {"rtcfleet:mediaSpot"}
    assert message in str(caught.value)


def test_issued_certificates_come_from_the_certificate_vault(weu_plan) -> None:
    vault = "https://rtcfleet-prod-certs.vault.azure.net/secrets/"
    client = weu_plan.named(AGW, "prod-weu-client").inputs["sslCertificates"][0]
    admin = weu_plan.named(AGW, "prod-weu-admin").inputs["sslCertificates"][0]
    assert client["keyVaultSecretId"] == vault + "rtcfleet-client-tls"
    assert admin["keyVaultSecretId"] == vault + "rtcfleet-admin-tls"
    with pytest.raises(SettingsError) as caught:
        Planner(
            StackConfigs(
                {HOME: {**_home_values(), "rtcfleet:certificates": {"client": {"mode": "issued"}}}}
            )
        ).plan(HOME)
    assert caught.value.keys == ["rtcfleet:certificates.client"]
    assert "keyVaultCertificate" in str(caught.value)


def _home_values() -> dict:
    values = dict(StackFiles().load(HOME).values)
    values.pop("rtcfleet:writerStack")
    values.pop("rtcfleet:peerStacks")  # westeurope alone, as its own environment
    return values


def _pkcs12_of(plan: StackPlan, name: str):
    secret = plan.named(SECRET, name)
    assert secret.inputs["properties"]["contentType"] == "application/x-pkcs12"
    assert "properties" in secret.secret_inputs
    bundle = base64.b64decode(secret.inputs["properties"]["value"])
    key, certificate, _ = pkcs12.load_key_and_certificates(bundle, None)
    assert key is not None and certificate is not None
    return secret, key, certificate


def test_self_signed_in_a_dev_stack() -> None:
    values = {
        **_home_values(),
        "rtcfleet:certificates": {
            "client": {"mode": "self-signed", "names": ["api.dev.rtc.example.com"]}
        },
    }
    plan = Planner(StackConfigs({"dev-azure-westeurope": values})).plan("dev-azure-westeurope")
    secret, _, certificate = _pkcs12_of(plan, "dev-weu-client-tls")
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["api.dev.rtc.example.com"]
    assert secret.inputs["vaultName"] == "rtcfleet-prod-certs"
    assert secret.inputs["tags"]["rtcfleet:certificate-mode"] == "self-signed"
    url = "https://rtcfleet-prod-certs.vault.azure.net/secrets/dev-weu-client-tls"
    for gateway in ("dev-weu-client", "dev-weu-admin"):
        assert plan.named(AGW, gateway).inputs["sslCertificates"][0]["keyVaultSecretId"] == url
    assert not plan.violations


def test_imported_from_stack_secrets() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.rtc.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    values = {
        **_home_values(),
        "rtcfleet:certificates": {"client": {"mode": "imported"}},
        "rtcfleet:clientCertificatePem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "rtcfleet:clientPrivateKeyPem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }
    plan = Planner(StackConfigs({HOME: values})).plan(HOME)
    _, bundled_key, bundled = _pkcs12_of(plan, "prod-weu-client-tls")
    assert bundled == cert
    assert bundled_key.public_key() == key.public_key()
    assert not plan.violations
