"""The Azure policies pass the example stacks and fail on deliberately broken copies."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.azure import firewall
from infra.plan.checks import evaluate
from infra.plan.mocks import RecordedResource
from infra.policy import POLICIES
from infra.policy.azure import AZURE_POLICIES
from infra.spec import SSH_PORT, Ingress, Role, Source
from rtcfleet.cli import app
from tests.infra.conftest import AZURE_EXAMPLE_STACKS

STACKS = Path(__file__).resolve().parents[3] / "stacks"
Breakage = Callable[[list[RecordedResource]], None]


def _find(resources, kind: str, name: str) -> RecordedResource:
    return next(r for r in resources if r.type.endswith(kind) and r.name == name)


def _rules(rs, role: str) -> list[dict]:
    return _find(rs, ":NetworkSecurityGroup", f"prod-weu-{role}").inputs["securityRules"]


def open_admin(rs):
    rule = next(r for r in _rules(rs, "admin-lb") if r["destinationPortRange"] == "443")
    rule.pop("sourceAddressPrefixes")
    rule["sourceAddressPrefix"] = "*"


def extra_media_port(rs):
    _rules(rs, "media").insert(
        0,
        {
            "name": "extra",
            "priority": 90,
            "direction": "Inbound",
            "access": "Allow",
            "protocol": "Tcp",
            "sourceAddressPrefix": "*",
            "destinationPortRange": "8080",
        },
    )


def no_deny_all(rs):
    rules = _rules(rs, "redis")
    rules[:] = [r for r in rules if r["access"] != "Deny"]


def redis_from_anywhere(rs):
    _rules(rs, "redis")[0]["sourceAddressPrefix"] = "*"


def ssh_from_vnet(rs):
    _rules(rs, "gateway").insert(
        0,
        {
            "name": "ssh",
            "priority": 95,
            "direction": "Inbound",
            "access": "Allow",
            "protocol": "Tcp",
            "sourceAddressPrefix": "VirtualNetwork",
            "destinationPortRange": "22",
        },
    )


def password_login(rs):
    profile = _find(rs, ":VirtualMachineScaleSet", "prod-weu-gateway").inputs
    os_profile = profile["virtualMachineProfile"]["osProfile"]
    os_profile["adminPassword"] = "not-a-key"
    os_profile["linuxConfiguration"]["disablePasswordAuthentication"] = False


def no_ssh_key(rs):
    profile = _find(rs, ":VirtualMachineScaleSet", "prod-weu-media").inputs
    profile["virtualMachineProfile"]["osProfile"]["linuxConfiguration"].pop("ssh")


def flexible_only_on_uniform(rs):
    profile = _find(rs, ":VirtualMachineScaleSet", "prod-weu-media").inputs["virtualMachineProfile"]
    profile["networkProfile"]["networkApiVersion"] = "2020-11-01"


def public_ip_sku_on_uniform(rs):
    profile = _find(rs, ":VirtualMachineScaleSet", "prod-weu-media").inputs["virtualMachineProfile"]
    nic = profile["networkProfile"]["networkInterfaceConfigurations"][0]
    nic["ipConfigurations"][0]["publicIPAddressConfiguration"]["sku"] = {"name": "Standard"}


def role_assignable_at_scale_set(rs):
    role = _find(rs, ":RoleDefinition", "prod-weu-media-scale-in-protection").inputs
    media = _find(rs, ":VirtualMachineScaleSet", "prod-weu-media")
    role["assignableScopes"] = [media.id]


def redis_more_zones_than_nodes(rs):
    _find(rs, "redis:Redis", "prod-weu-redis").inputs["replicasPerPrimary"] = 1.0


def app_gateway_rule_to_its_subnet(rs):
    rule = next(r for r in _rules(rs, "client-lb") if r["name"].endswith("infrastructure"))
    rule["destinationAddressPrefix"] = "10.30.0.0/20"


def no_vault_tag(rs):
    _find(rs, ":VirtualMachineScaleSet", "prod-weu-media").inputs["tags"].pop("rtcfleet:keyVault")


def certificate_read_at_once(rs):
    gateway = _find(rs, ":ApplicationGateway", "prod-weu-client")
    gateway.dependencies = [d for d in gateway.dependencies if "time:index/sleep" not in d]


def nat_without_zone(rs):
    _find(rs, ":NatGateway", "prod-weu-nat").inputs.pop("zones")


def nat_address_elsewhere(rs):
    _find(rs, ":PublicIPAddress", "prod-weu-nat").inputs["zones"] = ["2"]


def shared_computer_names(rs):
    for role in ("gateway", "media"):
        scale_set = _find(rs, ":VirtualMachineScaleSet", f"prod-weu-{role}").inputs
        scale_set["virtualMachineProfile"]["osProfile"]["computerNamePrefix"] = "prod-weu-"


def public_redis(rs):
    _find(rs, "redis:Redis", "prod-weu-redis").inputs["publicNetworkAccess"] = "Enabled"


def public_postgres(rs):
    server = _find(rs, ":Server", "prod-weu-postgres").inputs
    server["network"]["publicNetworkAccess"] = "Enabled"


def plain_redis(rs):
    _find(rs, "redis:Redis", "prod-weu-redis").inputs["enableNonSslPort"] = True


def one_zone_gateways(rs):
    _find(rs, ":VirtualMachineScaleSet", "prod-weu-gateway").inputs["zones"] = ["1"]


def one_gateway(rs):
    _find(rs, ":VirtualMachineScaleSet", "prod-weu-gateway").inputs["sku"]["capacity"] = 1.0


def redis_without_replica(rs):
    _find(rs, "redis:Redis", "prod-weu-redis").inputs["replicasPerPrimary"] = 0.0


def postgres_without_ha(rs):
    _find(rs, ":Server", "prod-weu-postgres").inputs["highAvailability"] = {"mode": "Disabled"}


def postgres_short_backups(rs):
    _find(rs, ":Server", "prod-weu-postgres").inputs["backup"]["backupRetentionDays"] = 1.0


def media_without_notice(rs):
    profile = _find(rs, ":VirtualMachineScaleSet", "prod-weu-media").inputs
    profile["virtualMachineProfile"].pop("scheduledEventsProfile")


def media_notice_too_long(rs):
    profile = _find(rs, ":VirtualMachineScaleSet", "prod-weu-media").inputs
    events = profile["virtualMachineProfile"]["scheduledEventsProfile"]
    events["terminateNotificationProfile"]["notBeforeTimeout"] = "PT20M"


def vault_access_policies(rs):
    _find(rs, ":Vault", "prod-weu-kv").inputs["properties"]["enableRbacAuthorization"] = False


def secrets_user_on_the_group(rs):
    grant = _find(rs, ":RoleAssignment", "prod-weu-media-reads-secrets")
    grant.inputs["scope"] = grant.inputs["scope"].split("/providers/")[0]


def repairs_on_readiness(rs):
    scale_set = _find(rs, ":VirtualMachineScaleSet", "prod-weu-gateway").inputs
    [health] = scale_set["virtualMachineProfile"]["extensionProfile"]["extensions"]
    health["settings"]["requestPath"] = "/readyz"


def repairs_without_health(rs):
    scale_set = _find(rs, ":VirtualMachineScaleSet", "prod-weu-media").inputs
    scale_set["virtualMachineProfile"].pop("extensionProfile")


def signaling_probe_join_readiness(rs):
    # today's deadlock: media nodes register through a probe that needs a registered node
    [probe] = _find(rs, ":LoadBalancer", "prod-weu-signaling").inputs["probes"]
    probe["requestPath"] = "/readyz"


def signaling_probe_fails_closed(rs):
    [probe] = _find(rs, ":LoadBalancer", "prod-weu-signaling").inputs["probes"]
    probe["noHealthyBackendsBehavior"] = "AllProbedDown"


def client_probe_liveness(rs):
    [probe] = _find(rs, ":ApplicationGateway", "prod-weu-client").inputs["probes"]
    probe["path"] = "/healthz"


CASES: list[tuple[str, Breakage, str]] = [
    ("rtcfleet-azure-nsg-matches-spec", open_admin, "admin-lb: inbound allow-tcp-443"),
    ("rtcfleet-azure-nsg-matches-spec", extra_media_port, "media: inbound extra Tcp 8080"),
    ("rtcfleet-azure-nsg-matches-spec", no_deny_all, "AllowVnetInBound"),
    ("rtcfleet-azure-nsg-matches-spec", redis_from_anywhere, "Tcp 6380 from * is not allowed"),
    ("rtcfleet-azure-no-ssh", ssh_from_vnet, "opens SSH"),
    ("rtcfleet-azure-no-ssh", password_login, "SSH key only"),
    ("rtcfleet-azure-no-ssh", no_ssh_key, "need the operators' SSH public key"),
    ("rtcfleet-azure-resource-manager-accepts", flexible_only_on_uniform, "networkApiVersion"),
    ("rtcfleet-azure-resource-manager-accepts", public_ip_sku_on_uniform, "public IP sku"),
    ("rtcfleet-azure-resource-manager-accepts", role_assignable_at_scale_set, "resource group"),
    ("rtcfleet-azure-resource-manager-accepts", redis_more_zones_than_nodes, "3 zones for 2"),
    ("rtcfleet-azure-resource-manager-accepts", app_gateway_rule_to_its_subnet, "must be Any"),
    ("rtcfleet-azure-nodes-name-themselves", no_vault_tag, "rtcfleet:keyVault"),
    ("rtcfleet-azure-certificates-read-after-propagation", certificate_read_at_once, "waiting"),
    ("rtcfleet-azure-nat-gateways-zonal", nat_without_zone, "pin it to one zone"),
    ("rtcfleet-azure-nat-gateways-zonal", nat_address_elsewhere, "must be ['1']"),
    ("rtcfleet-azure-distinct-computer-names", shared_computer_names, "share computerNamePrefix"),
    ("rtcfleet-azure-no-public-data-stores", public_redis, "publicNetworkAccess"),
    ("rtcfleet-azure-no-public-data-stores", public_postgres, "Postgres network"),
    ("rtcfleet-azure-redis-tls-only", plain_redis, "enableNonSslPort"),
    ("rtcfleet-azure-gateways-span-zones", one_zone_gateways, "span 1 zone"),
    ("rtcfleet-azure-gateways-span-zones", one_gateway, "capacity 1"),
    ("rtcfleet-azure-redis-zone-replicas", redis_without_replica, "0 replica"),
    ("rtcfleet-azure-postgres-ha-with-backups", postgres_without_ha, "zone-redundant"),
    ("rtcfleet-azure-postgres-ha-with-backups", postgres_short_backups, "1 day"),
    ("rtcfleet-azure-media-graceful-scale-in", media_without_notice, "terminate notification"),
    ("rtcfleet-azure-media-graceful-scale-in", media_notice_too_long, "20 min"),
    ("rtcfleet-azure-key-vault-rbac", vault_access_policies, "RBAC"),
    ("rtcfleet-azure-key-vault-rbac", secrets_user_on_the_group, "scope it to a vault"),
    ("rtcfleet-azure-repairs-act-on-liveness", repairs_on_readiness, "must probe liveness"),
    ("rtcfleet-azure-repairs-act-on-liveness", repairs_without_health, "no liveness signal"),
    (
        "rtcfleet-azure-load-balancers-route-on-readiness",
        signaling_probe_join_readiness,
        "must probe /readyz/registration",
    ),
    (
        "rtcfleet-azure-load-balancers-route-on-readiness",
        signaling_probe_fails_closed,
        "must fail open",
    ),
    (
        "rtcfleet-azure-load-balancers-route-on-readiness",
        client_probe_liveness,
        "must probe /readyz",
    ),
]


def test_every_azure_policy_has_a_failing_case() -> None:
    # the image stack's policy has its failing cases with the image stack (test_image.py)
    image = {"rtcfleet-azure-image-builder-can-build"}
    assert {p.name for p in AZURE_POLICIES} == {name for name, _, _ in CASES} | image
    assert {p.name for p in AZURE_POLICIES} <= {p.name for p in POLICIES}


def test_azure_example_stacks_pass_every_policy(weu_plan, neu_plan) -> None:
    assert evaluate(weu_plan.resources, POLICIES) == []
    assert evaluate(neu_plan.resources, POLICIES) == []


@pytest.mark.parametrize(
    ("policy", "breakage", "message"), CASES, ids=[c[1].__name__ for c in CASES]
)
def test_policy_fails_on_a_broken_resource_set(weu_plan, policy, breakage, message) -> None:
    resources = copy.deepcopy(weu_plan.resources)
    breakage(resources)
    violations = evaluate(resources, POLICIES)
    assert any(v.policy == policy and message in v.message for v in violations), violations


def test_plan_command_passes_the_example_stack() -> None:
    result = CliRunner().invoke(app, ["plan", "--stack", "prod-azure-westeurope", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["passed"] is True and document["violations"] == []
    assert "planned-random-" not in result.stdout and "planned-redis-key-" not in result.stdout


def test_plan_command_fails_a_program_that_opens_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    real = firewall.nsg_ingress

    def with_ssh(role: Role) -> tuple[Ingress, ...]:
        extra = Ingress("tcp", SSH_PORT, SSH_PORT, Source.ANYWHERE, "ssh")
        return (*real(role), extra) if role is Role.MEDIA_NODE else real(role)

    monkeypatch.setattr(firewall, "nsg_ingress", with_ssh)
    result = CliRunner().invoke(app, ["plan", "--stack", "prod-azure-westeurope"])
    assert result.exit_code == 1, result.output
    assert "rtcfleet-azure-no-ssh" in result.output and "FAILED" in result.output
    assert "rtcfleet-azure-nsg-matches-spec" in result.output


def test_plan_command_refuses_an_open_admin_console(tmp_path: Path) -> None:
    for stack in AZURE_EXAMPLE_STACKS:
        text = (STACKS / f"Pulumi.{stack}.yaml").read_text()
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(
            text.replace("    - 203.0.113.10/32", "    - 0.0.0.0/0")
        )
    result = CliRunner().invoke(
        app, ["plan", "--stack", "prod-azure-westeurope", "--stacks-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "rtcfleet:adminAllowList" in result.output and "nothing planned" in result.output
