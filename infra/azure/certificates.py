"""The region's TLS certificates in Key Vault, one per public name, for the Application Gateways.

Issued: a Key Vault certificate from the vault's certificate issuer (a CA Key Vault is
integrated with, such as DigiCert or GlobalSign), which Key Vault renews before expiry. The
Application Gateway reads it by its versionless secret id and picks up each renewal within
four hours. App Service managed certificates were the other candidate: they are free, but
bound to an App Service app and cannot be exported, so an Application Gateway cannot present
them. Key Vault certificates are data-plane objects that Resource Manager (and so
``pulumi-azure-native``) cannot create; the stack references the certificate by name and
docs/certificates.md gives the one command that creates it.

Imported and self-signed: the PEM certificate and key become a PKCS#12 bundle stored as a
Key Vault secret (content type ``application/x-pkcs12``), which is what an Application
Gateway reads from a vault.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from infra.certificates import (
    ENV_TAG,
    MODE_TAG,
    CertificateMode,
    CertificateSettings,
    NameCertificate,
    secret_names,
)
from infra.self_signed import self_signed
from infra.settings_errors import NAMESPACE, SettingsError, config_key

PKCS12 = "application/x-pkcs12"
# the key types a PKCS#12 bundle (and an Application Gateway) takes
PKCS12_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
_VAULT_ID = re.compile(
    r"/resourceGroups/(?P<group>[^/]+)/providers/Microsoft\.KeyVault/vaults/(?P<vault>[^/]+)$",
    re.IGNORECASE,
)


def secret_url(vault: str, name: str) -> str:
    """Versionless: the Application Gateway follows the latest version."""
    return f"https://{vault}.vault.azure.net/secrets/{name}"


def pkcs12_bundle(certificate_pem: str, key_pem: str, chain_pem: str | None, key: str) -> str:
    """Base64 PKCS#12 of a PEM certificate, its key and chain (``key`` names the setting)."""
    from infra.plan.runner import placeholder

    if certificate_pem == placeholder(config_key(key)):
        # an offline plan of a stack whose certificate is an encrypted secret it cannot read
        return certificate_pem
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        private_key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        chain = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem else []
    except ValueError as exc:
        raise SettingsError.one(config_key(key), f"not a PEM certificate and key: {exc}") from None
    if not isinstance(private_key, PKCS12_KEYS):
        raise SettingsError.one(config_key(key), "an RSA, EC or EdDSA private key is needed")
    bundle = pkcs12.serialize_key_and_certificates(
        None, private_key, certificate, chain or None, serialization.NoEncryption()
    )
    return base64.b64encode(bundle).decode()


@dataclass
class CertificatesArgs:
    prefix: str
    env: str
    settings: CertificateSettings
    # rtcfleet:certificateVaultId: the vault the Application Gateways read certificates from
    vault_id: str
    tags: dict[str, str] = field(default_factory=dict)


class Certificates(pulumi.ComponentResource):
    """One Key Vault secret id per public name; ``ids`` are what the gateways present."""

    ids: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: CertificatesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rtcfleet:azure:Certificates", name, None, opts)
        match = _VAULT_ID.search(args.vault_id)
        if match is None:
            raise SettingsError.one(config_key("certificateVaultId"), "not a Key Vault id")
        self._vault, self._group = match["vault"].lower(), match["group"]
        self._args = args
        self.ids = {}
        for public, wanted in args.settings.by_name().items():
            base = f"{args.prefix}-{public}-tls"
            tags = {**args.tags, ENV_TAG: args.env, MODE_TAG: wanted.mode.value}
            if wanted.mode is CertificateMode.ISSUED:
                # a data-plane object: referenced, not declared
                self.ids[public] = pulumi.Output.from_input(
                    secret_url(self._vault, str(wanted.key_vault_certificate))
                )
            elif wanted.mode is CertificateMode.IMPORTED:
                self.ids[public] = self._imported(base, public, tags)
            else:
                self.ids[public] = self._self_signed(base, wanted, tags)
        self.register_outputs(dict(self.ids))

    def secret_id(self, public: str) -> pulumi.Output[str]:
        """The certificate of a public name; the admin name falls back to the client's."""
        return self.ids.get(public) or self.ids["client"]

    def _stored(
        self, base: str, bundle: pulumi.Output[str], tags: dict[str, str]
    ) -> pulumi.Output[str]:
        secret = azure_native.keyvault.Secret(
            base,
            vault_name=self._vault,
            resource_group_name=self._group,
            secret_name=base,
            properties=azure_native.keyvault.SecretPropertiesArgs(
                value=pulumi.Output.secret(bundle), content_type=PKCS12
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return secret.name.apply(lambda name: secret_url(self._vault, name))

    def _imported(self, base: str, public: str, tags: dict[str, str]) -> pulumi.Output[str]:
        config = pulumi.Config(NAMESPACE)
        body, key, chain = secret_names(public)
        bundle = pulumi.Output.all(
            config.require_secret(body), config.require_secret(key), config.get_secret(chain)
        ).apply(lambda values: pkcs12_bundle(values[0], values[1], values[2], body))
        return self._stored(base, bundle, tags)

    def _self_signed(
        self, base: str, wanted: NameCertificate, tags: dict[str, str]
    ) -> pulumi.Output[str]:
        key, cert = self_signed(base, wanted.names, self)
        bundle = pulumi.Output.all(cert.cert_pem, key.private_key_pem).apply(
            lambda values: pkcs12_bundle(values[0], values[1], None, f"certificates.{base}")
        )
        return self._stored(base, bundle, tags)
