"""One settings writer per environment across clouds: the example ``prod`` as planned."""

from __future__ import annotations

from typing import Any

import pytest

from infra.plan.runner import Planner, StackConfigs, StackFiles
from infra.settings_errors import SettingsError
from infra.spec import SUBSCRIBER_TAG
from tests.infra.conftest import AZURE_EXAMPLE_STACKS

PROD = ("prod-aws-us-east-1", "prod-aws-eu-west-1", *AZURE_EXAMPLE_STACKS)
RDS = "aws:rds/instance:Instance"
FLEXIBLE = "azure-native:dbforpostgresql:Server"
CONFIGURATION = "azure-native:dbforpostgresql:Configuration"


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner(StackFiles())


def writers(planner: Planner, stack: str) -> list[str]:
    plan = planner.plan(stack)
    rds = [r.name for r in plan.of_type(RDS) if not r.inputs.get("replicateSourceDb")]
    flexible = [
        r.name
        for r in plan.of_type(FLEXIBLE)
        if r.inputs.get("createMode") == "Create"
        and SUBSCRIBER_TAG not in (r.inputs.get("tags") or {})
    ]
    return rds + flexible


def test_prod_has_one_writer_that_publishes(planner: Planner) -> None:
    found = {stack: writers(planner, stack) for stack in PROD}
    assert found == {
        "prod-aws-us-east-1": ["prod-use1-postgres"],
        "prod-aws-eu-west-1": [],
        "prod-azure-westeurope": [],
        "prod-azure-northeurope": [],
    }
    home = planner.plan("prod-aws-us-east-1")
    primary = home.named(RDS, "prod-use1-postgres")
    groups = [g for g in home.of_type("aws:rds/parameterGroup:ParameterGroup")]
    assert len(groups) == 1 and groups[0].inputs["family"] == "postgres16"
    parameters = {p["name"]: p for p in groups[0].inputs["parameters"]}
    assert parameters["rds.logical_replication"]["value"] == "1"
    assert parameters["rds.logical_replication"]["applyMethod"] == "pending-reboot"
    assert primary.inputs["parameterGroupName"] == groups[0].outputs.get(
        "name", primary.inputs["parameterGroupName"]
    )


@pytest.mark.parametrize("stack", AZURE_EXAMPLE_STACKS)
def test_azure_regions_subscribe_to_the_aws_writer(planner: Planner, stack: str) -> None:
    plan = planner.plan(stack)
    assert plan.passed, plan.violations
    assert plan.references == ["prod-aws-us-east-1"]
    (server,) = plan.of_type(FLEXIBLE)
    assert server.inputs["createMode"] == "Create"
    assert server.inputs["tags"][SUBSCRIBER_TAG] == "prod-aws-us-east-1"
    assert server.inputs["network"]["publicNetworkAccess"] == "Disabled"
    # admin writes go to the one writer, across the VPN
    assert (
        plan.exports["postgresWriteEndpoint"]
        == planner.plan("prod-aws-us-east-1").exports["postgresWriteEndpoint"]
    )


def _prod_configs(**changes: dict[str, Any]) -> StackConfigs:
    configs = {}
    for stack in PROD:
        values = dict(StackFiles().load(stack).values)
        values.update(changes.get(stack, {}))
        configs[stack] = {k: v for k, v in values.items() if v is not None}
    return StackConfigs(configs)


def test_an_azure_writer_runs_with_logical_wal() -> None:
    planner = Planner(
        _prod_configs(
            **{
                stack: {"rtcfleet:writerStack": "prod-azure-westeurope"}
                for stack in AZURE_EXAMPLE_STACKS
            }
        )
    )
    plan = planner.plan("prod-azure-westeurope")
    assert plan.passed, plan.violations
    settings = {r.inputs["configurationName"]: r.inputs for r in plan.of_type(CONFIGURATION)}
    assert settings["wal_level"]["value"] == "logical"
    assert settings["wal_level"]["source"] == "user-override"


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        ("staging-aws-us-east-1", "is not a stack of environment 'prod'"),
        ("prod-aws-eu-west-1", "must be the home region"),
        ("prod-gcp-x", "unknown cloud"),
    ],
)
def test_a_bad_writer_stack_is_refused_naming_the_key(writer: str, message: str) -> None:
    planner = Planner(_prod_configs(**{"prod-aws-us-east-1": {"rtcfleet:writerStack": writer}}))
    with pytest.raises(SettingsError) as refused:
        planner.plan("prod-aws-us-east-1")
    assert refused.value.keys == ["rtcfleet:writerStack"]
    assert message in str(refused.value)
