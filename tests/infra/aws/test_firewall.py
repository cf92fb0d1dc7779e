"""Security groups: each rule of each group, as the issue states them."""

from __future__ import annotations

from infra.aws.firewall import Firewall, FirewallArgs, creation_order
from infra.spec import FIREWALL, SSH_PORT, Role
from tests.infra.aws.helpers import SECURITY_GROUP, by_role, rule_set

ANY = ("0.0.0.0/0",)


def _firewall(admin: list[str]):
    def program(stack: str):
        Firewall(
            "fw",
            FirewallArgs(
                prefix="t",
                vpc_id="vpc-1",
                vpc_cidr="10.0.0.0/16",
                admin_allow_list=admin,
                private_cidrs=["10.0.0.0/16", "10.1.0.0/16"],
            ),
        )
        return {}

    return program


def test_each_group_says_exactly_the_issue_rules(run_component) -> None:
    run = run_component(_firewall(["203.0.113.0/24"]))
    groups = by_role(run.resources, SECURITY_GROUP)
    sg = {role: group.id for role, group in groups.items()}
    assert rule_set(groups["client-lb"]) == {("tcp", 443, 443, ANY, ())}
    assert rule_set(groups["admin-lb"]) == {("tcp", 443, 443, ("203.0.113.0/24",), ())}
    assert rule_set(groups["signaling-lb"]) == {
        ("tcp", 8080, 8080, ("10.0.0.0/16", "10.1.0.0/16"), ())
    }
    assert rule_set(groups["gateway"]) == {
        ("tcp", 8080, 8080, (), (sg["client-lb"],)),
        ("tcp", 8080, 8080, (), (sg["signaling-lb"],)),
        ("tcp", 9090, 9090, (), (sg["admin-lb"],)),
    }
    assert rule_set(groups["media"]) == {
        ("udp", 3478, 3478, ANY, ()),
        ("udp", 49152, 65535, ANY, ()),
        ("tcp", 3478, 3478, ANY, ()),
    }
    for store, port in (("redis", 6379), ("postgres", 5432)):
        peered = {("tcp", port, port, ("10.1.0.0/16",), ())} if store == "postgres" else set()
        assert rule_set(groups[store]) == {
            ("tcp", port, port, (), (sg["gateway"],)),
            ("tcp", port, port, (), (sg["media"],)),
            *peered,
        }


def test_load_balancers_send_only_to_their_target_ports(run_component) -> None:
    groups = by_role(run_component(_firewall([])).resources, SECURITY_GROUP)
    vpc = ("10.0.0.0/16",)
    assert rule_set(groups["client-lb"], "egress") == {("tcp", 8080, 8080, vpc, ())}
    assert rule_set(groups["admin-lb"], "egress") == {("tcp", 9090, 9090, vpc, ())}
    assert rule_set(groups["signaling-lb"], "egress") == {("tcp", 8080, 8080, vpc, ())}
    assert rule_set(groups["redis"], "egress") == set()
    assert rule_set(groups["postgres"], "egress") == set()


def test_empty_allow_list_means_no_admin_access(run_component) -> None:
    groups = by_role(run_component(_firewall([])).resources, SECURITY_GROUP)
    assert groups["admin-lb"].inputs.get("ingress") in (None, [])


def test_no_group_admits_ssh(run_component) -> None:
    groups = by_role(run_component(_firewall(["203.0.113.0/24"])).resources, SECURITY_GROUP)
    for group in groups.values():
        for rule in group.inputs.get("ingress") or []:
            assert not rule["fromPort"] <= SSH_PORT <= rule["toPort"], group.name
            assert rule["protocol"] in ("tcp", "udp")


def test_groups_exist_before_the_groups_that_name_them() -> None:
    order = creation_order()
    assert set(order) == set(FIREWALL)
    assert order.index(Role.GATEWAY) > order.index(Role.CLIENT_LB)
    assert order.index(Role.REDIS) > order.index(Role.MEDIA_NODE)


def test_example_stack_admin_group_uses_its_allow_list(home_plan) -> None:
    admin = by_role(home_plan.resources, SECURITY_GROUP)["admin-lb"]
    assert rule_set(admin) == {("tcp", 443, 443, ("198.51.100.0/26", "203.0.113.10/32"), ())}
    signaling = by_role(home_plan.resources, SECURITY_GROUP)["signaling-lb"]
    private = ("10.10.0.0/16", "10.11.0.0/16", "10.30.0.0/16", "10.31.0.0/16")
    assert rule_set(signaling) == {("tcp", 8080, 8080, private, ())}
