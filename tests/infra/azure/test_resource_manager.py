"""The plan's mocks refuse what Azure Resource Manager refuses, so a plan fails where `up` would.

Each case puts one item of the program back the way Azure refused it (a Flexible-only property
on a Uniform scale set, a role assignable at a scale set, more Redis zones than nodes, an
Application Gateway subnet rule aimed at the subnet) and plans the example stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi_azure_native as azure_native
import pytest

from infra.azure import firewall, network, node_groups, redis
from infra.plan.runner import CLOUD_API, Planner, StackConfigs, StackPlan
from tests.infra.azure.conftest import HOME, REPLICA

REDIS = "azure-native:redis:Redis"
VMSS = "azure-native:compute:VirtualMachineScaleSet"


def _refusals(plan: StackPlan) -> list[str]:
    return [f"{v.resource}: {v.message}" for v in plan.violations if v.policy == CLOUD_API]


def test_example_stacks_are_accepted(weu_plan: StackPlan, neu_plan: StackPlan) -> None:
    assert _refusals(weu_plan) == [] and _refusals(neu_plan) == []
    # three zones but one replica: the cache goes to as many zones as it has nodes
    assert neu_plan.named(REDIS, "prod-neu-redis").inputs["zones"] == ["1", "2"]
    assert weu_plan.named(REDIS, "prod-weu-redis").inputs["zones"] == ["1", "2", "3"]


def _flexible_only_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    class WithNetworkApiVersion(azure_native.compute.VirtualMachineScaleSet):
        def __init__(self, name: str, **kwargs: Any) -> None:
            kwargs["virtual_machine_profile"].network_profile.network_api_version = "2020-11-01"
            super().__init__(name, **kwargs)

    monkeypatch.setattr(azure_native.compute, "VirtualMachineScaleSet", WithNetworkApiVersion)


def _role_assignable_at_the_scale_set(monkeypatch: pytest.MonkeyPatch) -> None:
    class AtScaleSet(azure_native.authorization.RoleDefinition):
        def __init__(self, name: str, **kwargs: Any) -> None:
            scale_set = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/"
            kwargs["assignable_scopes"] = [scale_set + "virtualMachineScaleSets/prod-neu-media"]
            super().__init__(name, **kwargs)

    # the module binds the class at import; the component reads it through the package
    monkeypatch.setattr(azure_native.authorization, "RoleDefinition", AtScaleSet)


def _redis_in_every_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis, "cache_zones", lambda zones, replicas: list(zones))


def _app_gateway_rules_to_their_subnet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firewall, "platform_destination", lambda role, source: None)


def _media_subnet_without_storage_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "STORAGE_CLIENTS", ())


CASES: list[tuple[Callable[[pytest.MonkeyPatch], None], str]] = [
    (_flexible_only_properties, "networkApiVersion is for Flexible orchestration only"),
    (_role_assignable_at_the_scale_set, "only a management group, subscription or resource"),
    (_redis_in_every_zone, "3 zones for 2 nodes"),
    (_app_gateway_rules_to_their_subnet, "from GatewayManager the destination must be Any"),
    (_media_subnet_without_storage_endpoint, "media: it has no Microsoft.Storage service"),
]


@pytest.mark.parametrize(("breakage", "message"), CASES, ids=[c[0].__name__ for c in CASES])
def test_a_refused_create_fails_the_plan(
    azure_planner: Planner,
    weu_plan: StackPlan,
    monkeypatch: pytest.MonkeyPatch,
    breakage: Callable[[pytest.MonkeyPatch], None],
    message: str,
) -> None:
    breakage(monkeypatch)
    # northeurope alone (as the Azure tests plan it), reading westeurope's planned outputs
    assert isinstance(azure_planner.source, StackConfigs)
    stacks = StackConfigs(
        {REPLICA: azure_planner.source.configs[REPLICA]}, {HOME: weu_plan.exports}
    )
    plan = Planner(stacks).plan(REPLICA)
    assert not plan.passed
    assert any(message in refusal for refusal in _refusals(plan)), _refusals(plan)


def test_computer_name_prefixes_differ_by_role() -> None:
    prefixes = {
        role: node_groups.computer_name_prefix("prod-weu", role)
        for role in node_groups.COMPUTER_NAME_PREFIXES
    }
    assert sorted(prefixes.values()) == ["prod-weu-gw", "prod-weu-media"]
