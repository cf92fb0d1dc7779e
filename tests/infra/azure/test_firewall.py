"""NSGs: every rule of every role's NSG, the platform flows, and the final deny-all."""

from __future__ import annotations

from infra.azure.network import subnet_cidrs
from infra.spec import SSH_PORT
from tests.infra.helpers import by_role

NSG = "azure-native:network:NetworkSecurityGroup"
SUBNET = "azure-native:network:Subnet"
ALLOW_LIST = ("198.51.100.0/26", "203.0.113.10/32")
PRIVATE = ("10.30.0.0/16", "10.10.0.0/16", "10.11.0.0/16", "10.31.0.0/16")


def _rules(group) -> set[tuple]:
    """Inbound allows as (protocol, ports, sources, destination) for exact comparison."""
    return {
        (
            r["protocol"],
            r["destinationPortRange"],
            tuple(r.get("sourceAddressPrefixes") or [r.get("sourceAddressPrefix")]),
            r["destinationAddressPrefix"],
        )
        for r in group.inputs["securityRules"]
        if r["access"] == "Allow" and r["direction"] == "Inbound"
    }


def _cidrs(plan) -> dict[str, str]:
    cidrs, _ = subnet_cidrs("10.30.0.0/16")
    return {role.value: cidr for role, cidr in cidrs.items()}


def test_each_nsg_says_exactly_the_issue_rules(weu_plan) -> None:
    groups = by_role(weu_plan.resources, NSG)
    c = _cidrs(weu_plan)
    assert _rules(groups["client-lb"]) == {
        ("Tcp", "443", ("*",), c["client-lb"]),
        # Application Gateway v2 accepts only Any as these rules' destination
        ("Tcp", "65200-65535", ("GatewayManager",), "*"),
        ("*", "*", ("AzureLoadBalancer",), "*"),
    }
    assert _rules(groups["admin-lb"]) == {
        ("Tcp", "443", ALLOW_LIST, c["admin-lb"]),
        # Application Gateway v2 accepts only Any as these rules' destination
        ("Tcp", "65200-65535", ("GatewayManager",), "*"),
        ("*", "*", ("AzureLoadBalancer",), "*"),
    }
    assert _rules(groups["gateway"]) == {
        ("Tcp", "8080", (c["client-lb"],), c["gateway"]),
        ("Tcp", "8080", PRIVATE, c["gateway"]),
        ("Tcp", "9090", (c["admin-lb"],), c["gateway"]),
        ("Tcp", "8080", ("AzureLoadBalancer",), c["gateway"]),
    }
    assert _rules(groups["media"]) == {
        ("Udp", "3478", ("*",), c["media"]),
        ("Udp", "49152-65535", ("*",), c["media"]),
        ("Tcp", "3478", ("*",), c["media"]),
    }
    assert _rules(groups["redis"]) == {
        ("Tcp", "6380", (c["gateway"],), c["redis"]),
        ("Tcp", "6380", (c["media"],), c["redis"]),
    }
    assert _rules(groups["postgres"]) == {
        ("Tcp", "5432", (c["gateway"],), c["postgres"]),
        ("Tcp", "5432", (c["media"],), c["postgres"]),
        ("Tcp", "5432", (c["postgres"],), c["postgres"]),
        ("Tcp", "5432", PRIVATE[1:], c["postgres"]),
    }


def test_every_nsg_ends_with_deny_all_after_its_allows(weu_plan) -> None:
    for role, group in by_role(weu_plan.resources, NSG).items():
        rules = group.inputs["securityRules"]
        deny = [r for r in rules if r["access"] == "Deny"]
        assert [(r["name"], r["priority"], r["sourceAddressPrefix"]) for r in deny] == [
            ("deny-all-inbound", 4096, "*")
        ], role
        assert deny[0]["destinationPortRange"] == "*" and deny[0]["protocol"] == "*"
        assert max(r["priority"] for r in rules if r["access"] == "Allow") < 4096
        assert len({r["priority"] for r in rules}) == len(rules), role


def test_no_nsg_admits_ssh_from_a_network(weu_plan) -> None:
    for group in by_role(weu_plan.resources, NSG).values():
        for rule in group.inputs["securityRules"]:
            if rule["access"] != "Allow" or rule.get("sourceAddressPrefix") == "AzureLoadBalancer":
                continue
            low, _, high = rule["destinationPortRange"].partition("-")
            assert not int(low) <= SSH_PORT <= int(high or low), rule["name"]


def test_each_subnet_sits_behind_its_role_nsg(weu_plan) -> None:
    groups = by_role(weu_plan.resources, NSG)
    subnets = {s.inputs["subnetName"]: s for s in weu_plan.of_type(SUBNET)}
    for role, group in groups.items():
        assert subnets[role].inputs["networkSecurityGroup"]["id"] == group.id
        assert subnets[role].inputs["addressPrefix"] == _cidrs(weu_plan)[role]
    assert "networkSecurityGroup" not in subnets["GatewaySubnet"].inputs
    assert subnets["postgres"].inputs["delegations"][0]["serviceName"] == (
        "Microsoft.DBforPostgreSQL/flexibleServers"
    )
    assert subnets["redis"].inputs["privateEndpointNetworkPolicies"] == "Enabled"
    assert subnets["gateway"].inputs["natGateway"]["id"].endswith("/natGateways/prod-weu-nat")
    for private in ("gateway", "media", "redis", "postgres"):
        assert subnets[private].inputs["defaultOutboundAccess"] is False


def test_empty_allow_list_means_no_admin_access(plan_with) -> None:
    plan = plan_with("prod-azure-westeurope", adminAllowList=[])
    admin = by_role(plan.resources, NSG)["admin-lb"]
    assert {r["destinationPortRange"] for r in admin.inputs["securityRules"]} == {
        "65200-65535",
        "*",
    }
    assert plan.passed
