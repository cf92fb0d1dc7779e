"""Plans of the example Azure stacks as an environment whose writer is in Azure: the home
region and the region replicating from it. (The example ``prod`` has its writer in AWS and
its Azure regions subscribe to it: tests/infra/test_one_writer.py.)"""

from __future__ import annotations

import pytest

from infra.plan.runner import Planner, StackConfigs, StackFiles, StackPlan

HOME = "prod-azure-westeurope"
REPLICA = "prod-azure-northeurope"


@pytest.fixture(scope="session")
def azure_planner() -> Planner:
    files = StackFiles()
    configs = {}
    for stack in (HOME, REPLICA):
        values = dict(files.load(stack).values)
        values.pop("rtcfleet:writerStack", None)
        configs[stack] = values
    return Planner(StackConfigs(configs))


@pytest.fixture(scope="session")
def weu_plan(azure_planner: Planner) -> StackPlan:
    return azure_planner.plan(HOME)


@pytest.fixture(scope="session")
def neu_plan(azure_planner: Planner) -> StackPlan:
    return azure_planner.plan(REPLICA)
